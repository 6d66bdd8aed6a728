"""onnx_from_torch: trace one graph module to an ONNX file with its declared dynamic axes."""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch

from .graph_spec import GraphSpec

OPSET = 18


def _dynamic_shapes(module: torch.nn.Module, spec: GraphSpec) -> tuple:
    dims: dict[str, torch.export.Dim] = {}

    def dim(name: str) -> torch.export.Dim:
        if name not in dims:
            dims[name] = torch.export.Dim(name, min=1, max=1 << 20)
        return dims[name]

    shapes = [{i: dim(axis) for i, axis in enumerate(t.axes) if isinstance(axis, str)} or None for t in spec.inputs]
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[-1].kind is inspect.Parameter.VAR_POSITIONAL:  # forward(a, b, *rest): rest is one entry
        fixed = len(params) - 1
        return (*shapes[:fixed], tuple(shapes[fixed:]))
    return tuple(shapes)


def onnx_from_torch(module: torch.nn.Module, spec: GraphSpec, path: Path) -> Path:
    """Export `module` (eval mode) to `path`; weights go to one external-data file beside it."""
    module.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    example = spec.example_inputs()
    with torch.no_grad(), warnings.catch_warnings(), open(os.devnull, "w") as null, redirect_stdout(null), \
            redirect_stderr(null):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            example,
            dynamo=True,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_shapes=_dynamic_shapes(module, spec),
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=True)
    return path
