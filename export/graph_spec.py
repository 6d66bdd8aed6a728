"""What every exported graph declares: its tensors, dynamic axes and example inputs (one place each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                 # numpy-style name: float32, float16, int64, bool
    axes: tuple[str | int, ...]  # symbolic names are dynamic, ints are fixed

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.axes)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    example_inputs: Callable[[], tuple[torch.Tensor, ...]] = field(compare=False)

    def to_json(self, file: str) -> dict:
        return {
            "file": file,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }


TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in TORCH_DTYPES.items()}[dtype]


def load_module_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> None:
    """Copy canonical weights under `prefix` into `module` (strict: every parameter must be there)."""
    state = {k[len(prefix):]: v.to(dtype) for k, v in weights.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
    for param in module.parameters():  # load_state_dict keeps the module's dtype; buffers (RoPE) stay fp32
        param.data = param.data.to(dtype)
