"""Decoder graph: the Qwen3 text model for prefill (T = prompt length) and step (T = 1), one graph.

The KV cache belongs to the runtime: it is fed in whole (`past_key_values.{i}.*`, a fixed capacity
of slots with `past_mask` saying which hold real tokens) and never grown here. The graph returns
only the new tokens' keys and values (`present.{i}.*`), which the runtime writes into its cache at
its own offset. New tokens attend to the masked cache plus, causally, to each other; the two score
blocks are joined for one fp32 softmax. Audio embeddings replace the embedding of every
placeholder token (input_ids == audio_token_id) position by position. Only the last position's
logits are computed (float32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qasr.exportformat import names

from .graph_spec import GraphSpec, TensorSpec, dtype_name
from .spec import TextSpec

NEG_INF = -1e9


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DecoderAttention(nn.Module):
    def __init__(self, text: TextSpec):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = text.heads, text.kv_heads, text.head_dim
        self.q_proj = nn.Linear(text.hidden_size, text.heads * text.head_dim, bias=False)
        self.k_proj = nn.Linear(text.hidden_size, text.kv_heads * text.head_dim, bias=False)
        self.v_proj = nn.Linear(text.hidden_size, text.kv_heads * text.head_dim, bias=False)
        self.o_proj = nn.Linear(text.heads * text.head_dim, text.hidden_size, bias=False)
        self.q_norm = RMSNorm(text.head_dim, text.rms_norm_eps)
        self.k_norm = RMSNorm(text.head_dim, text.rms_norm_eps)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys (q/k-normed, not rotated) and values, [B, T, heads, D] each."""
        batch, steps, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(batch, steps, self.heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).reshape(batch, steps, self.kv_heads, self.head_dim))
        v = self.v_proj(x).reshape(batch, steps, self.kv_heads, self.head_dim)
        return q, k, v

    def forward(self, x, past_k, past_v, cos, sin, past_bias, new_bias):
        batch, steps, _ = x.shape
        groups = self.heads // self.kv_heads
        q, k, v = (t.transpose(1, 2) for t in self.project(x))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Grouped-query attention without copying the cache: query heads of one KV head side by side.
        qg = q.reshape(batch, self.kv_heads, groups * steps, self.head_dim)
        scale = self.head_dim ** -0.5
        if past_k is None:   # no cache (the aligner's one pass): the new tokens attend causally to each other
            s_new = torch.matmul(qg, k.transpose(-1, -2)).float() * scale
            s_new = s_new.reshape(batch, self.kv_heads, groups, steps, steps) + new_bias
            probs = torch.softmax(s_new, dim=-1).to(v.dtype).reshape(batch, self.kv_heads, groups * steps, steps)
            out = torch.matmul(probs, v).reshape(batch, self.heads, steps, self.head_dim).transpose(1, 2)
            return self.o_proj(out.reshape(batch, steps, self.heads * self.head_dim)), k, v
        s_past = torch.matmul(qg, past_k.transpose(-1, -2)).float() * scale
        s_new = torch.matmul(qg, k.transpose(-1, -2)).float() * scale
        capacity = past_k.shape[2]
        s_past = s_past.reshape(batch, self.kv_heads, groups, steps, capacity) + past_bias
        s_new = s_new.reshape(batch, self.kv_heads, groups, steps, steps) + new_bias
        probs = torch.softmax(torch.cat([s_past, s_new], dim=-1), dim=-1).to(v.dtype)
        p_past = probs[..., :capacity].reshape(batch, self.kv_heads, groups * steps, capacity)
        p_new = probs[..., capacity:].reshape(batch, self.kv_heads, groups * steps, steps)
        out = torch.matmul(p_past, past_v) + torch.matmul(p_new, v)
        out = out.reshape(batch, self.heads, steps, self.head_dim).transpose(1, 2)
        return self.o_proj(out.reshape(batch, steps, self.heads * self.head_dim)), k, v


class DecoderMLP(nn.Module):
    def __init__(self, text: TextSpec):
        super().__init__()
        self.gate_proj = nn.Linear(text.hidden_size, text.ffn_dim, bias=False)
        self.up_proj = nn.Linear(text.hidden_size, text.ffn_dim, bias=False)
        self.down_proj = nn.Linear(text.ffn_dim, text.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """One Qwen3 layer; `attention` is the standard-ops module or the fused one (fused_decoder_graph.py),
    called as attention(x, past_k, past_v, *context) -> (out, present_k, present_v)."""

    def __init__(self, text: TextSpec, attention: type[nn.Module] = DecoderAttention):
        super().__init__()
        self.input_layernorm = RMSNorm(text.hidden_size, text.rms_norm_eps)
        self.self_attn = attention(text)
        self.post_attention_layernorm = RMSNorm(text.hidden_size, text.rms_norm_eps)
        self.mlp = DecoderMLP(text)

    def forward(self, x, past_k, past_v, *context):
        attn, k, v = self.self_attn(self.input_layernorm(x), past_k, past_v, *context)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class DecoderGraph(nn.Module):
    def __init__(self, text: TextSpec, audio_token_id: int, attention: type[nn.Module] = DecoderAttention):
        super().__init__()
        self.text = text
        self.audio_token_id = audio_token_id
        self.embed_tokens = nn.Embedding(text.vocab_size, text.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(text, attention) for _ in range(text.layers))
        self.norm = RMSNorm(text.hidden_size, text.rms_norm_eps)
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        exponent = torch.arange(0, text.head_dim, 2, dtype=torch.int64).float() / text.head_dim
        self.register_buffer("inv_freq", 1.0 / (text.rope_theta ** exponent), persistent=False)

    def rope(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)[:, None]  # [batch, 1, T, head_dim]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def embed(self, input_ids: torch.Tensor, audio_embeds: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        return torch.where((input_ids == self.audio_token_id)[..., None], audio_embeds.to(x.dtype), x)

    def forward(self, input_ids, audio_embeds, position_ids, past_mask, new_mask, *past):
        x = self.embed(input_ids, audio_embeds)
        cos, sin = self.rope(position_ids, x.dtype)
        steps = input_ids.shape[1]
        causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril()
        new_ok = causal[None, :, :] & new_mask[:, None, :]
        new_bias = torch.where(new_ok, 0.0, NEG_INF)[:, None, None]          # [B, 1, 1, T, T]
        past_bias = torch.where(past_mask, 0.0, NEG_INF)[:, None, None, None]  # [B, 1, 1, 1, P]
        presents = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, past[2 * i], past[2 * i + 1], cos, sin, past_bias, new_bias)
            presents += [k, v]
        logits = self.lm_head(self.norm(x[:, -1])).float()
        return (logits, *presents)


def cache_specs(text: TextSpec, dt: str, present_axis: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """past_key_values.{i}.key|value [batch, kv_heads, capacity, head_dim] in, present.{i}.* out; the
    present's third axis is `steps` (new positions only) or `capacity` (the fused graph's whole buffer)."""
    kv = (text.kv_heads, text.head_dim)
    cache_in, cache_out = [], []
    for i in range(text.layers):
        for past, present in ((names.past_key(i), names.present_key(i)), (names.past_value(i), names.present_value(i))):
            cache_in.append(TensorSpec(past, dt, ("batch", kv[0], "capacity", kv[1])))
            cache_out.append(TensorSpec(present, dt, ("batch", kv[0], present_axis, kv[1])))
    return cache_in, cache_out


def token_inputs(text: TextSpec, dt: str) -> tuple[TensorSpec, TensorSpec]:
    """input_ids [batch, steps] and audio_embeds [batch, steps, hidden]: the first inputs of both decoders."""
    return (TensorSpec(names.INPUT_IDS, "int64", ("batch", "steps")),
            TensorSpec(names.DECODER_AUDIO_EMBEDS, dt, ("batch", "steps", text.hidden_size)))


def decoder_graph_spec(text: TextSpec, dtype: torch.dtype) -> GraphSpec:
    dt = dtype_name(dtype)
    kv = (text.kv_heads, text.head_dim)

    def example() -> tuple[torch.Tensor, ...]:
        batch, steps, capacity = 2, 3, 5
        ids = torch.randint(0, text.vocab_size, (batch, steps))
        audio = torch.randn(batch, steps, text.hidden_size, dtype=dtype)
        positions = torch.arange(steps)[None].repeat(batch, 1) + 2
        past_mask = torch.tensor([[True, True, False, False, False], [False, True, False, False, False]])
        new_mask = torch.tensor([[True, True, True], [False, True, True]])
        past = [torch.randn(batch, kv[0], capacity, kv[1], dtype=dtype) for _ in range(2 * text.layers)]
        return (ids, audio, positions, past_mask, new_mask, *past)

    cache_in, cache_out = cache_specs(text, dt, present_axis="steps")
    return GraphSpec(
        name=names.DECODER,
        inputs=(
            *token_inputs(text, dt),
            TensorSpec(names.POSITION_IDS, "int64", ("batch", "steps")),
            TensorSpec(names.PAST_MASK, "bool", ("batch", "capacity")),
            TensorSpec(names.NEW_MASK, "bool", ("batch", "steps")),
            *cache_in,
        ),
        outputs=(TensorSpec(names.LOGITS, "float32", ("batch", text.vocab_size)), *cache_out),
        example_inputs=example,
    )
