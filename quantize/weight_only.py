"""Weight-only INT8 / INT4: MatMul weights stored block-quantized (ONNX Runtime's MatMulNBits, symmetric,
blocks along the input dimension), activations left in the graph's float type. This is the form that
speeds up bandwidth-bound batch-1 decoding: each step reads every weight once, and they are 4x / 8x
smaller than fp32. Gemm (the tied lm_head) and Gather (the embedding) stay as they are.
"""

from __future__ import annotations

from pathlib import Path


def quantize_weight_only_graph(src: Path, dst: Path, bits: int = 8, block_size: int = 32,
                               exclude_nodes: list[str] = (), accuracy_level: int | None = None) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if bits not in (4, 8):
        raise ValueError(f"weight-only quantization supports 4 or 8 bits, not {bits}")
    model = onnx.load(str(src))
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                          accuracy_level=accuracy_level)
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=True,
                                     nodes_to_exclude=list(exclude_nodes), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=True)
