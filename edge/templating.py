"""HTML pages rendered with Jinja2 templates (edge/templates/), autoescaped.

Shared by the store report (:mod:`edge.report`) and any other self-contained page (a chain
report): ``base.html.j2`` holds the page frame (title, CSS, bilingual footer), a page template
extends it and fills ``main``. Images are embedded as ``data:`` URIs with the ``png`` filter,
so a page is one file that opens with no network.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


def bi(zh: str, en: str) -> str:
    """One bilingual label: Chinese first, English after."""
    return f"{zh} {en}"


def fmt_s(v: float | None) -> str:
    """A duration for people: seconds under 90 s, minutes above, "> 1 h" beyond; "–" when unknown."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v > 3600:
        return "> 1 h"
    if v >= 90:
        return f"{v / 60:.1f} min"
    return f"{v:.0f} s"


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_env = Environment(
    loader=PackageLoader("edge", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_env.filters["png"] = png_data_uri
_env.globals["bi"] = bi


def render(template: str, **context: Any) -> str:
    """Render ``edge/templates/<template>`` with ``context`` (every value is HTML-escaped unless a
    template marks it safe)."""
    return _env.get_template(template).render(**context)
