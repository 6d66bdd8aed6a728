"""Static INT8 with explicit Q/DQ nodes: per-channel symmetric int8 weights, per-tensor symmetric int8
activations (zero point 0), from calibration ranges. This is the QDQ form TensorRT consumes as explicit
quantization, and ONNX Runtime runs it on CPU and CUDA. Only the compute-heavy ops (MatMul, Gemm,
Conv) are quantized; norms, softmax and the elementwise rest stay fp32.
"""

from __future__ import annotations

from pathlib import Path

QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")


def quantize_static_graph(src: Path, dst: Path, ranges, exclude_nodes: list[str] = ()) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    model = load_model_with_shape_infer(Path(src))
    quantizer = QDQQuantizer(
        model, True, False, QuantType.QInt8, QuantType.QInt8, ranges, [], list(exclude_nodes), list(QUANTIZED_OPS),
        {"ActivationSymmetric": True, "WeightSymmetric": True, "DedicatedQDQPair": False})
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=True)
