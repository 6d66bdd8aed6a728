"""Fused decoder graph (`--attention gqa`): the Qwen3 text model with ONNX Runtime's GroupQueryAttention.

Beside the portable standard-ops decoder (decoder_graph.py), for ONNX Runtime on GPU (and CPU): each
layer's attention is one GroupQueryAttention node with RoPE inside and a cache buffer shared by
`past_key_values.{i}.*` and `present.{i}.*` (bound to the same memory, it is written in place, so
the runtime never copies keys or values). Rows are right padded; `seqlens_k` gives each row's length
and its write offset, so rows of different lengths share a batch without padding in the cache. The
graph also picks the next token (argmax of the logits plus `logit_bias`), so a GPU decode loop copies
only [batch] token ids to the host per step, and q/k/v and gate/up are one MatMul each (fewer kernels). Everything else (embedding with audio placeholders, norms,
MLP, tied lm_head, fp32 logits) is the standard graph's own code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qasr.runtime import names

from .decoder_graph import DecoderAttention, DecoderGraph, DecoderMLP, cache_specs, token_inputs
from .gqa_op import group_query_attention, rope_tables
from .graph_spec import GraphSpec, TensorSpec, dtype_name
from .spec import TextSpec

# RoPE tables cover this many positions (prompt + new tokens of one segment): a 1200 s segment has
# 15,000 audio tokens and a budget of 14,432 new tokens (runtime/stopping.py), so 32,768 holds it.
DEFAULT_MAX_POSITIONS = 32768


def packed_linear(*linears: nn.Linear) -> nn.Linear:
    """One bias-free Linear whose output is the given Linears' outputs side by side (one MatMul, not several)."""
    weight = torch.cat([linear.weight for linear in linears], dim=0)
    packed = nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    packed.weight = nn.Parameter(weight, requires_grad=False)
    return packed


class FusedDecoderAttention(DecoderAttention):
    packed = False

    def pack(self) -> None:
        """q, k and v projections as one MatMul (split after it), once the weights are loaded."""
        self.qkv = packed_linear(self.q_proj, self.k_proj, self.v_proj)
        del self.q_proj, self.k_proj, self.v_proj
        self.packed = True

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.packed:
            return super().project(x)
        batch, steps, _ = x.shape
        q, k, v = self.qkv(x).split([self.heads * self.head_dim, self.kv_heads * self.head_dim,
                                     self.kv_heads * self.head_dim], dim=-1)
        q = self.q_norm(q.reshape(batch, steps, self.heads, self.head_dim))
        k = self.k_norm(k.reshape(batch, steps, self.kv_heads, self.head_dim))
        return q, k, v.reshape(batch, steps, self.kv_heads, self.head_dim)

    def forward(self, x, past_k, past_v, seqlens_k, total_sequence_length, cos_cache, sin_cache):
        batch, steps, _ = x.shape
        q, k, v = (t.reshape(batch, steps, -1) for t in self.project(x))
        out, present_k, present_v = group_query_attention(q, k, v, past_k, past_v, seqlens_k, total_sequence_length,
                                                          cos_cache, sin_cache, self.heads, self.kv_heads)
        return self.o_proj(out), present_k, present_v


class PackedMLP(nn.Module):
    """SwiGLU with gate and up projections as one MatMul."""

    def __init__(self, mlp: DecoderMLP):
        super().__init__()
        self.gate_up = packed_linear(mlp.gate_proj, mlp.up_proj)
        self.down_proj = mlp.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class FusedDecoderGraph(DecoderGraph):
    def __init__(self, text: TextSpec, audio_token_id: int, dtype: torch.dtype,
                 max_positions: int = DEFAULT_MAX_POSITIONS):
        super().__init__(text, audio_token_id, FusedDecoderAttention)
        cos, sin = rope_tables(max_positions, text.head_dim, text.rope_theta, dtype)
        self.register_buffer("cos_cache", cos, persistent=False)
        self.register_buffer("sin_cache", sin, persistent=False)

    def pack_projections(self) -> None:
        """Fewer, wider MatMuls per layer (3 -> 1 for q/k/v, 2 -> 1 for gate/up): the batch-1 GPU step is
        bound by its number of kernels (../shared/GPU.md). Call after the checkpoint's weights are loaded."""
        for layer in self.layers:
            layer.self_attn.pack()
            layer.mlp = PackedMLP(layer.mlp)

    def forward(self, input_ids, audio_embeds, seqlens_k, total_sequence_length, logit_bias, *past):
        x = self.embed(input_ids, audio_embeds)
        presents = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, past[2 * i], past[2 * i + 1], seqlens_k, total_sequence_length, self.cos_cache,
                            self.sin_cache)
            presents += [k, v]
        # Each row's last real token: seqlens_k in a (right-padded) prompt, position 0 in a step.
        last = torch.clamp(seqlens_k.long(), max=input_ids.shape[1] - 1)
        hidden = torch.gather(x, 1, last[:, None, None].expand(-1, 1, x.shape[-1]))[:, 0]
        logits = self.lm_head(self.norm(hidden)).float()
        next_token = torch.argmax(logits + logit_bias, dim=-1)
        return (logits, next_token, *presents)


def fused_decoder_graph_spec(text: TextSpec, dtype: torch.dtype) -> GraphSpec:
    dt = dtype_name(dtype)
    kv = (text.kv_heads, text.head_dim)

    def example() -> tuple[torch.Tensor, ...]:
        batch, steps, capacity = 2, 3, 5   # a right-padded prompt of lengths 3 and 2
        ids = torch.randint(0, text.vocab_size, (batch, steps))
        audio = torch.randn(batch, steps, text.hidden_size, dtype=dtype)
        seqlens_k = torch.tensor([2, 1], dtype=torch.int32)
        total = torch.tensor([steps], dtype=torch.int32)
        bias = torch.zeros(text.vocab_size)
        past = [torch.zeros(batch, kv[0], capacity, kv[1], dtype=dtype) for _ in range(2 * text.layers)]
        return (ids, audio, seqlens_k, total, bias, *past)

    cache_in, cache_out = cache_specs(text, dt, present_axis="capacity")
    return GraphSpec(
        name=names.DECODER,
        inputs=(
            *token_inputs(text, dt),
            TensorSpec(names.SEQLENS_K, "int32", ("batch",)),
            TensorSpec(names.TOTAL_SEQUENCE_LENGTH, "int32", (1,)),
            TensorSpec(names.LOGIT_BIAS, "float32", (text.vocab_size,)),
            *cache_in,
        ),
        outputs=(TensorSpec(names.LOGITS, "float32", ("batch", text.vocab_size)),
                 TensorSpec(names.NEXT_TOKEN, "int64", ("batch",)), *cache_out),
        example_inputs=example,
    )
