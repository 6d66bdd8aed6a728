"""ONNX Runtime's fused attention (com.microsoft GroupQueryAttention) as a PyTorch op the exporter maps 1:1.

`group_query_attention` is a torch custom op with a plain PyTorch implementation of what the ONNX
Runtime kernel computes (so the fused decoder runs, and can be checked, in PyTorch too), and
`onnx_translation` turns every call into one GroupQueryAttention node (custom_translation_table of
torch.onnx.export). Semantics (ONNX Runtime contrib op, do_rotary=1, rotate-half RoPE):
- query [B, S, heads*D], key/value [B, S, kv_heads*D] (projected and q/k-normed, not yet rotated);
- past_key/past_value [B, kv_heads, capacity, D]: the shared cache buffer; present_* is the same
  buffer with the new keys/values written at each row's own offset (ONNX Runtime writes in place
  when past and present are bound to one buffer);
- seqlens_k [B] int32: each row's total length minus one; total_sequence_length: scalar int32,
  the longest total length. S == total_sequence_length means a first prompt (rows right padded,
  nothing in the cache); otherwise S must be 1 (a decode step) and row b's new token sits at
  position seqlens_k[b];
- cos_cache/sin_cache [max_positions, D/2]: RoPE tables; a token's position is its cache slot.
"""

from __future__ import annotations

import torch

OP = "qasr::group_query_attention"


@torch.library.custom_op(OP, mutates_args=())
def group_query_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, past_key: torch.Tensor,
                          past_value: torch.Tensor, seqlens_k: torch.Tensor, total_sequence_length: torch.Tensor,
                          cos_cache: torch.Tensor, sin_cache: torch.Tensor, num_heads: int, kv_num_heads: int
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, steps, _ = query.shape
    dim = past_key.shape[-1]
    first_prompt = steps == int(total_sequence_length)
    lengths = seqlens_k.long() + 1
    past = torch.zeros_like(lengths) if first_prompt else lengths - steps
    positions = past[:, None] + torch.arange(steps)[None]                      # [B, S]
    q = _rotate(query.reshape(batch, steps, num_heads, dim), positions, cos_cache, sin_cache)
    k = _rotate(key.reshape(batch, steps, kv_num_heads, dim), positions, cos_cache, sin_cache)
    v = value.reshape(batch, steps, kv_num_heads, dim)
    present_key, present_value = past_key.clone(), past_value.clone()
    capacity = past_key.shape[2]
    for b in range(batch):
        slots = positions[b][positions[b] < capacity]
        present_key[b, :, slots] = k[b, : len(slots)].transpose(0, 1).to(past_key.dtype)
        present_value[b, :, slots] = v[b, : len(slots)].transpose(0, 1).to(past_value.dtype)
    groups = num_heads // kv_num_heads
    keys = present_key.float().repeat_interleave(groups, dim=1)                # [B, heads, C, D]
    values = present_value.float().repeat_interleave(groups, dim=1)
    scores = torch.matmul(q.float().transpose(1, 2), keys.transpose(-1, -2)) * dim ** -0.5  # [B, heads, S, C]
    slot = torch.arange(capacity)[None, None, :]
    visible = (slot <= positions[:, :, None]) & (slot < lengths[:, None, None])  # [B, S, C]
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)                      # padded queries see nothing
    out = torch.matmul(probs, values).transpose(1, 2).reshape(batch, steps, num_heads * dim)
    return out.to(query.dtype), present_key, present_value


def _rotate(x: torch.Tensor, positions: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor) -> torch.Tensor:
    cos = cos_cache[positions].float()[:, :, None]                             # [B, S, 1, D/2]
    sin = sin_cache[positions].float()[:, :, None]
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


@group_query_attention.register_fake
def _(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache, num_heads,
      kv_num_heads):
    return torch.empty_like(query), torch.empty_like(past_key), torch.empty_like(past_value)


def _schema():
    """The part of ONNX Runtime's GroupQueryAttention schema we emit (onnx itself knows no contrib ops)."""
    import onnx

    schema = onnx.defs.OpSchema
    param = schema.FormalParameter
    inputs = [param(n, "T") for n in ("query", "key", "value", "past_key", "past_value")]
    inputs += [param("seqlens_k", "M"), param("total_sequence_length", "M"), param("cos_cache", "T"),
               param("sin_cache", "T")]
    outputs = [param(n, "T") for n in ("output", "present_key", "present_value")]
    attributes = [schema.Attribute(n, schema.AttrType.INT, required=n.endswith("heads"))
                  for n in ("num_heads", "kv_num_heads", "do_rotary", "rotary_interleaved")]
    return schema("GroupQueryAttention", "com.microsoft", 1, inputs=inputs, outputs=outputs, attributes=attributes,
                  type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], ""),
                                    ("M", ["tensor(int32)"], "")])


def onnx_translation():
    """{torch op: onnxscript function} for torch.onnx.export(custom_translation_table=...)."""
    from onnxscript.values import Op, Opset

    gqa_op = Op(Opset("com.microsoft", 1), "GroupQueryAttention", _schema())

    def gqa(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache,
            num_heads: int, kv_num_heads: int):
        return gqa_op(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache,
                      num_heads=num_heads, kv_num_heads=kv_num_heads, do_rotary=1, rotary_interleaved=0)

    return {torch.ops.qasr.group_query_attention.default: gqa}


def rope_tables(max_positions: int, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin caches [max_positions, head_dim/2], computed as the reference computes its RoPE (fp32)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (theta ** exponent)
    freqs = torch.arange(max_positions).float()[:, None] * inv_freq[None]
    return freqs.cos().to(dtype), freqs.sin().to(dtype)
