"""Dynamic INT8 for the audio encoder of CPU exports: MatMul weights int8 per output channel, activations
quantized per tensor at run time (ONNX Runtime's DynamicQuantizeMatMul / MatMulIntegerToFloat, its u8 x s8
integer GEMM). The encoder runs over every audio token at once (M = 13 tokens per second of audio), where
that GEMM is about 3x faster than MatMulNBits at accuracy level 4 and than fp32 on the 2-core CPU we measure
on (benchmarks/RESULTS.md, "CPU engine against the peers"). Conv stays float: ConvInteger measured 3x slower
than the float Conv. No calibration: the activation range is taken from each run's own tensor.
"""

from __future__ import annotations

import logging
from pathlib import Path

DYNAMIC_RECORD = "int8 per output channel, activations int8 per tensor at run time (dynamic); Conv float"


def quantize_dynamic_graph(src: Path, dst: Path, exclude_nodes: list[str] = ()) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                     nodes_to_exclude=list(exclude_nodes), use_external_data_format=True,
                     extra_options={"MatMulConstBOnly": True})
