"""The base of every config model (store, zones, calibration, MQTT, HQ): one place for what
"strict" means, so that the five config files refuse the same slips.

Foundation layer: imports only pydantic.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

# the error type of a true/false where a number goes (edge.config places it at its key's line)
BOOL_FOR_NUMBER = "bool_for_number"


def _bool_at(value: Any) -> tuple[int, ...] | None:
    """Where the first true/false is in ``value`` (indices into lists), or None. Lists and tuples
    only: a dict is a nested model, which checks its own fields."""
    if isinstance(value, bool):
        return ()
    if isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            inner = _bool_at(item)
            if inner is not None:
                return (k, *inner)
    return None


def _takes_bool(annotation: Any) -> bool:
    """``bool`` or ``Any`` anywhere in the field's type (``bool | None``, ``dict[str, Any]``...)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(arg) for arg in get_args(annotation))


class Strict(BaseModel):
    """Unknown keys are refused (a misspelt key must not be silently ignored).

    NaN and inf are refused: they pass every gt/lt bound (NaN compares False). And YAML's
    ``true``/``false`` are refused where a number is expected: pydantic reads ``true`` as 1, so
    ``fps: true`` or a calibration point ``[true, 0]`` used to validate as 1.0."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        # a model validator, not a field one: pydantic forbids 'before' validators on the
        # discriminator ('kind') of the zone models
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                at = _bool_at(value) if field is not None else None
                if field is not None and at is not None and not _takes_bool(field.annotation):
                    found = value
                    for k in at:
                        found = found[k]
                    # the config loader puts this at the key's own line: ctx carries where it is
                    raise PydanticCustomError(
                        BOOL_FOR_NUMBER,
                        "expected a number, found {found} (YAML reads true/false as yes/no)",
                        {"found": str(found).lower(), "key": key, "at": list(at)},
                    )
        return data


__all__ = ["BOOL_FOR_NUMBER", "Strict"]
