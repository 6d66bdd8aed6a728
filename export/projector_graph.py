"""Projector graph: encoder states (d_model) to decoder-width audio embeddings (proj1, GELU, proj2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qasr.exportformat import names

from .graph_spec import GraphSpec, TensorSpec, dtype_name
from .spec import AudioSpec


class ProjectorGraph(nn.Module):
    def __init__(self, audio: AudioSpec):
        super().__init__()
        self.linear_1 = nn.Linear(audio.d_model, audio.d_model)
        self.linear_2 = nn.Linear(audio.d_model, audio.output_dim)

    def forward(self, audio_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(audio_hidden_states)))


def projector_graph_spec(audio: AudioSpec, dtype: torch.dtype) -> GraphSpec:
    dt = dtype_name(dtype)
    return GraphSpec(
        name=names.PROJECTOR,
        inputs=(TensorSpec(names.AUDIO_HIDDEN, dt, ("batch", "audio_tokens", audio.d_model)),),
        outputs=(TensorSpec(names.AUDIO_EMBEDS, dt, ("batch", "audio_tokens", audio.output_dim)),),
        example_inputs=lambda: (torch.randn(2, 9, audio.d_model, dtype=dtype),),
    )
