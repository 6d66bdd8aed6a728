"""The fused decoder's output projection and embedding table as one block-quantized tensor (CPU exports).

MatMulNBitsQuantizer leaves the fused decoder's lm_head alone (a Gemm over the float embedding table), so a
4-bit export still read the whole [vocab, hidden] table in float every step; on ONNX Runtime's CPU provider
an fp16 table was even folded into a second, fp32 copy (622 MB at the 0.6B shape). Here the table is
quantized once, in MatMulNBits' layout ([vocab, blocks, block bytes] uint8, symmetric, the zero point
implied), and used twice:
- lm_head: MatMulNBits(last hidden, table) -> logits (the table is already [N=vocab, K=hidden]);
- embedding: GatherBlockQuantized(the same initializer, ids) -> rows, dequantized (no copy of the table).
A checkpoint with an untied lm_head gets the same two nodes over its two tables. This is what
onnxruntime-genai's model builder does with `shared_embeddings`, except that genai feeds a Reshape of the
lm_head weight to the Gather, which ONNX Runtime folds into a second copy of the table at load (78 MB at the
0.6B shape); here the gather reads the 3-D table itself.
"""

from __future__ import annotations

import numpy as np

EMBED_GATHER = "embed_tokens/Gather"
LM_HEAD_GEMM = "lm_head/Gemm"
MS_DOMAIN = "com.microsoft"


def quantize_rows(table: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`table` [N, K] (rows are output channels) -> (packed uint8 [N, blocks, block_size * bits / 8], fp32 scales
    [N, blocks]), symmetric, as ONNX Runtime's own quantizer writes MatMulNBits weights (its C++ kernels)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    n, k = table.shape
    if k % block_size:
        raise ValueError(f"hidden size {k} is not a whole number of {block_size}-blocks")
    blocks = k // block_size
    packed = np.zeros((n, blocks, block_size * bits // 8), np.uint8)
    scales = np.zeros((n, blocks), np.float32)
    zero_points = np.zeros((n, (blocks + 1) // 2 if bits == 4 else blocks), np.uint8)
    quantize = quantize_matmul_4bits if bits == 4 else quantize_matmul_8bits
    # The kernel takes the weight as MatMul's B, [K, N]: a transposed view of the table, made contiguous in
    # slices of rows so the fp32 copy never holds the whole table at once.
    step = 16384
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        part = np.ascontiguousarray(table[lo:hi].astype(np.float32).T)
        p = np.zeros((hi - lo, blocks, packed.shape[2]), np.uint8)
        s = np.zeros((hi - lo, blocks), np.float32)
        z = np.zeros((hi - lo, zero_points.shape[1]), np.uint8)
        quantize(p, part, s, z, block_size, hi - lo, k, True)
        packed[lo:hi], scales[lo:hi] = p, s
    return packed, scales


def dequantize_rows(packed: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    """The float table the quantized one stands for (tests and error reports)."""
    if bits == 4:
        values = np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:2], -1).astype(np.float32) - 8
    else:
        values = packed.astype(np.float32) - 128
    return (values * scales[:, :, None]).reshape(packed.shape[0], -1)


def quantize_tied_head(model, bits: int, block_size: int, accuracy_level: int, float_type: int) -> dict:
    """Rewrite the fused decoder `model` (onnx.ModelProto, in place): its embedding Gather and lm_head Gemm
    read one quantized table (two when the checkpoint's lm_head is untied). Returns what was done."""
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    gather, gemm = nodes.get(EMBED_GATHER), nodes.get(LM_HEAD_GEMM)
    if gather is None or gemm is None:
        raise ValueError("not a fused decoder graph: no embed_tokens/Gather and lm_head/Gemm nodes")
    inits = {i.name: i for i in graph.initializer}
    embed_name, head_name = gather.input[0], gemm.input[1]
    tied = embed_name == head_name

    def quantized(name: str) -> tuple[str, str, np.ndarray, int, int]:
        table = numpy_helper.to_array(inits[name])
        vocab, hidden = table.shape
        packed, scales = quantize_rows(table, bits, block_size)
        scale_array = scales.astype(helper.tensor_dtype_to_np_dtype(float_type))
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(packed, f"{name}_Q{bits}"),
                                  numpy_helper.from_array(scale_array, f"{name}_scales")])
        return f"{name}_Q{bits}", f"{name}_scales", scale_array, vocab, hidden

    head_q, head_scales, head_scale_array, vocab, hidden = quantized(head_name)
    embed_q, embed_scales, embed_scale_array = (head_q, head_scales, head_scale_array) if tied else \
        quantized(embed_name)[:3]

    # Embedding: rows of the very same [vocab, blocks, block bytes] initializer (GatherBlockQuantized quantizes
    # along its last axis, one block per [block] row, so no reshaped copy of the table is made), dequantized
    # to the graph's float type, then [.., blocks, block] -> [.., hidden]. Its scales need a trailing axis of 1
    # (a second, small initializer: MatMulNBits takes [N, blocks] only).
    gather_scales = f"{embed_scales}/per_row_block"
    graph.initializer.append(numpy_helper.from_array(embed_scale_array[:, :, None], gather_scales))
    shape = f"{embed_q}/hidden_shape"
    ids = next((i for i in graph.input if i.name == gather.input[1]), None)
    rank = len(ids.type.tensor_type.shape.dim) if ids is not None else 2     # the decoder's input_ids: [batch, steps]
    graph.initializer.append(numpy_helper.from_array(np.array([0] * rank + [hidden], np.int64), shape))
    blocks = f"{embed_q}/blocks"
    index = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.insert(index, helper.make_node("Reshape", [blocks, shape], list(gather.output), name="embed_tokens/Reshape"))
    graph.node.insert(index, helper.make_node(
        "GatherBlockQuantized", [embed_q, gather.input[1], gather_scales], [blocks],
        name="embed_tokens/GatherBlockQuantized", domain=MS_DOMAIN, bits=bits, block_size=block_size,
        gather_axis=0, quantize_axis=2))

    index = list(graph.node).index(gemm)
    graph.node.remove(gemm)
    node = helper.make_node("MatMulNBits", [gemm.input[0], head_q, head_scales], list(gemm.output),
                            name="lm_head/MatMulNBits", domain=MS_DOMAIN, K=hidden, N=vocab, bits=bits,
                            block_size=block_size, accuracy_level=accuracy_level)
    node.metadata_props.extend(gemm.metadata_props)
    graph.node.insert(index, node)
    return {"tied": tied, "bits": bits, "block_size": block_size, "vocab": vocab, "hidden": hidden}
