"""Weight-only INT8 / INT4: MatMul weights stored block-quantized (ONNX Runtime's MatMulNBits, blocks
along the input dimension), activations left in the graph's float type. This is the form that speeds
up bandwidth-bound batch-1 decoding: each step reads every weight once, and they are 4x / 8x smaller
than fp32. Gemm (the tied lm_head) and Gather (the embedding) stay as they are.

How the int weights are chosen (`algorithm`, onnxruntime.quantization's quantizers):
- rtn: symmetric round to nearest per block (8 or 4 bits; the default);
- hqq: half-quadratic quantization (Badri & Shaji, 2023): scale and zero point per block optimised
  for the weight error under a sparsity-promoting norm; asymmetric, no data, 4 bits;
- gptq: GPTQ (Frantar et al., 2023): each column rounded in turn and its error pushed onto the columns
  not yet rounded, weighted by the Hessian of the layer's real inputs (recorded on the calibration
  audio by the float export itself); asymmetric, 4 bits.
"""

from __future__ import annotations

from pathlib import Path


class _FeedList:
    """A calibration data reader that ONNX Runtime's GPTQ can deep-copy and iterate more than once."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds

    def __iter__(self):
        return iter(self.feeds)

    def __deepcopy__(self, memo):
        return _FeedList(self.feeds)


def _config(algorithm: str, bits: int, block_size: int, accuracy_level: int | None, feeds):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 GPTQWeightOnlyQuantConfig, HQQWeightOnlyQuantConfig)

    if algorithm == "rtn":
        return DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                            accuracy_level=accuracy_level)
    if bits != 4:
        raise ValueError(f"{algorithm} weight-only quantization is 4-bit here, not {bits}")
    if algorithm == "hqq":
        return HQQWeightOnlyQuantConfig(block_size=block_size, bits=bits)
    if algorithm == "gptq":
        if not feeds:
            raise ValueError("gptq needs recorded calibration feeds")
        return GPTQWeightOnlyQuantConfig(calibration_data_reader=_FeedList(feeds), block_size=block_size,
                                         percdamp=0.01, actorder=False, perchannel=True)
    raise ValueError(f"unknown weight-only algorithm {algorithm!r}")


def _check_gptq_blocks(model, block_size: int) -> None:
    """onnxruntime 1.32's GPTQ packs each weight's asymmetric zero points two to a byte across all blocks and
    fails (a numpy reshape error) when a weight has an odd number of blocks along K; it also ignores
    nodes_to_exclude. Refuse such a graph in one line (Qwen3-ASR's real sizes are all even: 1024/32, ...).
    (Symmetric GPTQ avoids the packing but measured worse than round-to-nearest: benchmarks/RESULTS.md.)"""
    from qasr.errors import QasrError

    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        dims = shapes.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if dims and len(dims) == 2 and -(-dims[0] // block_size) % 2:
            raise QasrError(f"--weight-algorithm gptq: onnxruntime's GPTQ cannot pack {node.name} ({dims[0]} inputs, "
                            f"an odd number of {block_size}-blocks); use --weight-algorithm hqq or rtn for this model")


def quantize_weight_only_graph(src: Path, dst: Path, bits: int = 8, block_size: int = 32,
                               exclude_nodes: list[str] = (), accuracy_level: int | None = None,
                               algorithm: str = "rtn", feeds: list[dict] | None = None) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    if bits not in (4, 8):
        raise ValueError(f"weight-only quantization supports 4 or 8 bits, not {bits}")
    model = onnx.load(str(src))
    if algorithm == "gptq":
        _check_gptq_blocks(model, block_size)
    config = _config(algorithm, bits, block_size, accuracy_level, feeds)
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=algorithm == "rtn",
                                     nodes_to_exclude=list(exclude_nodes), algo_config=config,
                                     accuracy_level=accuracy_level)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=True)
