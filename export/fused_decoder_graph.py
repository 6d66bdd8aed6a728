"""Fused decoder graph (`--attention gqa`), built node by node from the weights for ONNX Runtime.

Tracing the PyTorch module gave 54 ONNX nodes per layer (RMSNorms decomposed into eight ops each)
and run-time shape arithmetic (Shape -> Gather -> Concat feeding every Reshape), which ONNX Runtime
places on the CPU: CUDA-graph capture was refused and a step launched ~1,500 kernels. So this graph
is written directly, as onnxruntime-genai's model builder writes its decoders (docs/decisions/,
"GPU step graph"). Per layer, 16 nodes:

    SkipSimplifiedLayerNormalization (input norm + the residual add of the layer before)
    MatMul (q, k and v packed)
    Reshape, Split, SimplifiedLayerNormalization x 2 (per-head q/k RMSNorm), Concat, Reshape
    GroupQueryAttention (rotate-half RoPE, in-place KV cache, causal softmax; q, k, v packed)
    MatMul (o_proj)
    SkipSimplifiedLayerNormalization (post-attention norm + residual add)
    MatMul (gate and up packed), Split, QuickGelu (alpha 1: SiLU), Mul, MatMul (down_proj)

Every Reshape target is a constant (0 / -1 dims), nothing reads a tensor's shape at run time, and
positions come from `seqlens_k` (a right-padded prompt writes slots 0..len-1, a step writes slot
seqlens_k). The row's last real token, where logits are taken, is an input (`last_token_index`, an
index into the flattened [batch * steps] tokens). The graph also picks the next token (argmax of the
logits plus `logit_bias`), so a GPU decode loop copies only [batch] ids per step.

Float types: the graph's float type is the export's (fp32 or fp16); norms run in fp32 inside their
kernels (stash_type 1), logits are fp32. GroupQueryAttention has CUDA kernels for fp16/bf16 only, so
an fp32 graph is a CPU graph (the runtime refuses it on CUDA: qasr.runtime.cuda_support).
"""

from __future__ import annotations

import numpy as np
import torch

from qasr.exportformat import names
from qasr.runtime.cuda_support import ONNX_TYPES, tensor_types

from .decoder_graph import cache_specs, token_inputs
from .graph_spec import GraphSpec, TensorSpec, dtype_name
from .spec import TextSpec

# RoPE tables cover this many positions (prompt + new tokens of one segment): a 1200 s segment has
# 15,000 audio tokens and a budget of 14,432 new tokens (runtime/stopping.py), so 32,768 holds it.
DEFAULT_MAX_POSITIONS = 32768
# ONNX Runtime's GroupQueryAttention kernels take head sizes that are multiples of 8 only.
HEAD_DIM_MULTIPLE = 8
OPSET = 18
MS_DOMAIN = "com.microsoft"
# Node metadata naming the layer group of a weight product (qasr.quantize.groups reads it).
SCOPE_KEY = "qasr.scope"   # = qasr.quantize.groups.SCOPE (quantize sits below export)
# The oldest ONNX Runtime this graph was checked with (the GPU machine's onnxruntime-gpu is 1.31.1).
MIN_ONNXRUNTIME = "1.31"


def gqa_support_problem(text: TextSpec) -> str | None:
    """Why this text model cannot have the fused decoder, or None."""
    if text.head_dim % HEAD_DIM_MULTIPLE:
        return (f"--attention gqa needs a head_dim that is a multiple of {HEAD_DIM_MULTIPLE} (ONNX Runtime's "
                f"GroupQueryAttention kernels); this checkpoint has head_dim {text.head_dim}: use --attention standard")
    if text.heads % text.kv_heads:
        return f"--attention gqa needs heads ({text.heads}) divisible by kv_heads ({text.kv_heads})"
    return None


def rope_tables(max_positions: int, head_dim: int, theta: float, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin caches [max_positions, head_dim/2], computed as the reference computes its RoPE (fp32)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (theta ** exponent)
    freqs = torch.arange(max_positions).float()[:, None] * inv_freq[None]
    return freqs.cos().numpy().astype(dtype), freqs.sin().numpy().astype(dtype)


class _Builder:
    """Nodes and initializers of one graph, with unique names. With `data_path`, every initializer of 1 KiB or
    more is written straight to that external-data file and the graph keeps only its location: the weights
    are never held in memory as protobuf bytes (onnx's make_graph / make_model copy every initializer, so an
    in-memory 0.6B decoder peaked at ~4x its 2.4 GB of fp32 weights)."""

    def __init__(self, dtype: np.dtype, data_path=None):
        self.dtype = dtype
        self.nodes: list = []
        self.initializers: list = []
        self.data_path = data_path
        self._data = open(data_path, "wb") if data_path is not None else None

    def weight(self, name: str, array: np.ndarray) -> str:
        from onnx import TensorProto, helper, numpy_helper

        array = np.ascontiguousarray(array)
        if self._data is None or array.nbytes < 1024:
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        offset = self._data.tell()
        self._data.write(array.tobytes())
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape,
                             data_location=TensorProto.EXTERNAL)
        for key, value in (("location", self.data_path.name), ("offset", str(offset)), ("length", str(array.nbytes))):
            tensor.external_data.add(key=key, value=value)
        self.initializers.append(tensor)
        return name

    def close(self) -> None:
        if self._data is not None:
            self._data.close()

    def const(self, name: str, values, dtype=np.int64) -> str:
        return self.weight(name, np.asarray(values, dtype=dtype))

    def node(self, op: str, inputs: list[str], name: str, outputs: int | list[str] = 1, domain: str = "",
             scope: str | None = None, **attrs) -> list[str]:
        from onnx import helper

        outs = [f"{name}/out{i}" for i in range(outputs)] if isinstance(outputs, int) else outputs
        node = helper.make_node(op, inputs, outs, name=name, domain=domain or None, **attrs)
        if scope is not None:
            node.metadata_props.add(key=SCOPE_KEY, value=scope)
        self.nodes.append(node)
        return outs


def _np(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return tensor.detach().to(torch.float32).numpy().astype(dtype)


def build_fused_decoder(text: TextSpec, audio_token_id: int, weights: dict[str, torch.Tensor], dtype: torch.dtype,
                        max_positions: int = DEFAULT_MAX_POSITIONS, data_path=None):
    """The fused decoder as an onnx.ModelProto. `weights`: canonical names (model.language_model.*, lm_head.weight).
    With `data_path` (a Path), the weights go to that file as they are made (save with save_fused_decoder)."""
    from onnx import TensorProto, helper

    np_dtype = np.dtype(dtype_name(dtype))
    onnx_float = helper.np_dtype_to_tensor_dtype(np_dtype)
    spec = fused_decoder_graph_spec(text, dtype)
    g = _Builder(np_dtype, data_path)
    base = "model.language_model."

    def w(name: str) -> np.ndarray:
        return _np(weights[base + name], np_dtype)

    def linear_t(*names_: str) -> np.ndarray:
        """[in, out] weight for MatMul(x, W): the checkpoint's [out, in] Linears stacked along out, transposed."""
        return np.concatenate([w(n) for n in names_], axis=0).T

    eps = float(text.rms_norm_eps)
    embed = g.weight("embed_tokens.weight", w("embed_tokens.weight"))
    cos, sin = rope_tables(max_positions, text.head_dim, text.rope_theta, np_dtype)
    cos_name, sin_name = g.weight("rope.cos_cache", cos), g.weight("rope.sin_cache", sin)

    # Embedding; audio placeholders take the audio embeddings position by position.
    (tokens,) = g.node("Gather", [embed, names.INPUT_IDS], "embed_tokens/Gather")
    (is_audio,) = g.node("Equal", [names.INPUT_IDS, g.const("audio_token_id", audio_token_id)], "embed/is_audio")
    (is_audio3,) = g.node("Unsqueeze", [is_audio, g.const("axes_last", [-1])], "embed/unsqueeze")
    (x,) = g.node("Where", [is_audio3, names.DECODER_AUDIO_EMBEDS, tokens], "embed/where")

    gate_up_split = g.const("split_gate_up", [text.ffn_dim, text.ffn_dim])
    residual, pending = x, None     # pending: the last block's output, added to the residual by the next norm
    for i in range(text.layers):
        p = f"layers.{i}"
        pre = f"{p}.input_layernorm"
        gamma = g.weight(f"{pre}.weight", w(f"{pre}.weight"))
        if pending is None:
            (h,) = g.node("SimplifiedLayerNormalization", [residual, gamma], pre, axis=-1, epsilon=eps, stash_type=1)
        else:
            h, residual = _skip_norm(g, pending, residual, gamma, pre, eps)
        attn = f"{p}.self_attn"
        qkv_w = g.weight(f"{attn}.qkv_proj.weight", linear_t(f"{attn}.q_proj.weight", f"{attn}.k_proj.weight",
                                                            f"{attn}.v_proj.weight"))
        (qkv,) = g.node("MatMul", [h, qkv_w], f"{attn}.qkv_proj/MatMul", scope=f"{attn}.qkv_proj")
        packed = _qk_norm(g, qkv, text, attn, w(f"{attn}.q_norm.weight"), w(f"{attn}.k_norm.weight"), eps)
        inputs = [packed, "", "", names.past_key(i), names.past_value(i), names.SEQLENS_K,
                  names.TOTAL_SEQUENCE_LENGTH, cos_name, sin_name]
        out, _, _ = g.node("GroupQueryAttention", inputs, f"{attn}/GroupQueryAttention",
                           outputs=[f"{attn}/out", names.present_key(i), names.present_value(i)], domain=MS_DOMAIN,
                           num_heads=text.heads, kv_num_heads=text.kv_heads, do_rotary=1, rotary_interleaved=0)
        o_w = g.weight(f"{attn}.o_proj.weight", linear_t(f"{attn}.o_proj.weight"))
        (o,) = g.node("MatMul", [out, o_w], f"{attn}.o_proj/MatMul", scope=f"{attn}.o_proj")
        post = f"{p}.post_attention_layernorm"
        h, residual = _skip_norm(g, o, residual, g.weight(f"{post}.weight", w(f"{post}.weight")), post, eps)
        mlp = f"{p}.mlp"
        gu_w = g.weight(f"{mlp}.gate_up_proj.weight", linear_t(f"{mlp}.gate_proj.weight", f"{mlp}.up_proj.weight"))
        (gate_up,) = g.node("MatMul", [h, gu_w], f"{mlp}.gate_up_proj/MatMul", scope=f"{mlp}.gate_up_proj")
        gate, up = g.node("Split", [gate_up, gate_up_split], f"{mlp}/Split", outputs=2, axis=-1)
        (act,) = g.node("QuickGelu", [gate], f"{mlp}/SiLU", domain=MS_DOMAIN, alpha=1.0)
        (prod,) = g.node("Mul", [act, up], f"{mlp}/Mul")
        down_w = g.weight(f"{mlp}.down_proj.weight", linear_t(f"{mlp}.down_proj.weight"))
        (pending,) = g.node("MatMul", [prod, down_w], f"{mlp}.down_proj/MatMul", scope=f"{mlp}.down_proj")

    normed, _ = _skip_norm(g, pending, residual, g.weight("norm.weight", w("norm.weight")), "norm", eps)
    (flat,) = g.node("Reshape", [normed, g.const("shape_tokens_hidden", [-1, text.hidden_size])], "last/flatten")
    (last,) = g.node("Gather", [flat, names.LAST_TOKEN_INDEX], "last/Gather", axis=0)
    head = embed if text.tie_word_embeddings else g.weight("lm_head.weight", _np(weights["lm_head.weight"], np_dtype))
    (logits,) = g.node("Gemm", [last, head], "lm_head/Gemm", scope="lm_head", transB=1,
                       outputs=[names.LOGITS] if np_dtype == np.float32 else 1)
    if np_dtype != np.float32:
        g.node("Cast", [logits], "lm_head/Cast", outputs=[names.LOGITS], to=TensorProto.FLOAT)
    (biased,) = g.node("Add", [names.LOGITS, names.LOGIT_BIAS], "next_token/Add")
    g.node("ArgMax", [biased], "next_token/ArgMax", outputs=[names.NEXT_TOKEN], axis=-1, keepdims=0)

    def info(t: TensorSpec):
        elem = onnx_float if t.dtype == np_dtype.name else helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype))
        return helper.make_tensor_value_info(t.name, elem, list(t.axes))

    graph = helper.make_graph(g.nodes, names.DECODER, [info(t) for t in spec.inputs], [info(t) for t in spec.outputs],
                              g.initializers)
    # Element types of every intermediate tensor: onnx's inference stops at contrib ops, and the static INT8
    # quantizer skips any tensor whose type it cannot infer (then no MatMul gets its activation quantized).
    intermediate = {o for n in g.nodes for o in n.output if o} - {t.name for t in spec.outputs}
    codes = {name: code for code, name in ONNX_TYPES.items()}
    for name, dtype in tensor_types(graph).items():
        if name in intermediate:
            graph.value_info.append(helper.make_tensor_value_info(name, codes[dtype], None))
    g.close()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="qasr")
    model.ir_version = 10
    return model


def _qk_norm(g: _Builder, qkv: str, text: TextSpec, scope: str, q_weight: np.ndarray, k_weight: np.ndarray,
             eps: float) -> str:
    """Per-head RMSNorm of the q and k parts of the packed projection; returns the packed [B, S, (H + 2 KV) * D].

    ONNX Runtime's GroupQueryAttention can do this itself (inputs q_norm_weight / k_norm_weight), but its
    CPU kernel refuses them (1.32: "implemented only on the CUDA and WebGPU EPs"), and a graph the CPU
    cannot run cannot be checked against the reference here; so the norms are two nodes of their own."""
    d = text.head_dim
    (heads,) = g.node("Reshape", [qkv, g.const(f"{scope}.shape_heads", [0, 0, -1, d])], f"{scope}/to_heads")
    q, k, v = g.node("Split", [heads, g.const(f"{scope}.split_qkv", [text.heads, text.kv_heads, text.kv_heads])],
                     f"{scope}/Split", outputs=3, axis=2)
    (qn,) = g.node("SimplifiedLayerNormalization", [q, g.weight(f"{scope}.q_norm.weight", q_weight)],
                   f"{scope}.q_norm", axis=-1, epsilon=eps, stash_type=1)
    (kn,) = g.node("SimplifiedLayerNormalization", [k, g.weight(f"{scope}.k_norm.weight", k_weight)],
                   f"{scope}.k_norm", axis=-1, epsilon=eps, stash_type=1)
    (joined,) = g.node("Concat", [qn, kn, v], f"{scope}/Concat", axis=2)
    (packed,) = g.node("Reshape", [joined, g.const(f"{scope}.shape_packed", [0, 0, -1])], f"{scope}/to_packed")
    return packed


def _skip_norm(g: _Builder, x: str, residual: str, gamma: str, name: str, eps: float) -> tuple[str, str]:
    """SkipSimplifiedLayerNormalization: (RMSNorm(x + residual) * gamma, x + residual)."""
    normed, _, _, total = g.node("SkipSimplifiedLayerNormalization", [x, residual, gamma], name, domain=MS_DOMAIN,
                                 outputs=[f"{name}/out", "", "", f"{name}/residual"], epsilon=eps)
    return normed, total


def fused_decoder_graph_spec(text: TextSpec, dtype: torch.dtype) -> GraphSpec:
    dt = dtype_name(dtype)
    cache_in, cache_out = cache_specs(text, dt, present_axis="capacity")
    return GraphSpec(
        name=names.DECODER,
        inputs=(
            *token_inputs(text, dt),
            TensorSpec(names.SEQLENS_K, "int32", ("batch",)),
            TensorSpec(names.TOTAL_SEQUENCE_LENGTH, "int32", (1,)),
            TensorSpec(names.LAST_TOKEN_INDEX, "int64", ("batch",)),
            TensorSpec(names.LOGIT_BIAS, "float32", (text.vocab_size,)),
            *cache_in,
        ),
        outputs=(TensorSpec(names.LOGITS, "float32", ("batch", text.vocab_size)),
                 TensorSpec(names.NEXT_TOKEN, "int64", ("batch",)), *cache_out),
        example_inputs=lambda: (),   # built from the weights, never traced
    )


def save_fused_decoder(model, path) -> None:
    """One .onnx file and its weights in one external-data file beside it (as the traced graphs are saved). A
    model built with data_path=<path>.data has its weights there already: only the graph is written."""
    import onnx

    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        onnx.save_model(model, str(path))
        return
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{path.name}.data", size_threshold=1024)
