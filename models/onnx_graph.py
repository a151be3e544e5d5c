"""Editing an ONNX graph's input geometry: the one helper the detector (a session per camera
geometry, built in memory) and the int8 quantiser (calibrate at one geometry, ship resizable)
share. Foundation layer: imports only ``onnx``."""

from __future__ import annotations

from typing import Any


def set_input_hw(model: Any, hw: tuple[int, int] | None) -> None:
    """Fix the input height/width of ``model`` (an ``onnx.ModelProto``, edited in place) to ``hw``,
    or with ``None`` free them again (``height``/``width``); the batch dimension is left as it was.

    The inner tensors' shape annotations (``value_info``) and the outputs' non-batch dims were
    inferred for the exported size: they are dropped/freed so ONNX Runtime infers them for the
    new one instead of refusing the graph."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if hw is None:
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    else:
        dims[2].dim_value, dims[3].dim_value = hw
    del model.graph.value_info[:]
    for out in model.graph.output:
        for k, d in enumerate(out.type.tensor_type.shape.dim):
            if k > 0:
                d.dim_param = f"out_{k}"


def with_input_hw(proto: Any, hw: tuple[int, int]) -> bytes:
    """A serialised copy of ``proto`` with the input height/width fixed (see :func:`set_input_hw`)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    set_input_hw(model, hw)
    return bytes(model.SerializeToString())


__all__ = ["set_input_hw", "with_input_hw"]
