"""Static INT8 with explicit Q/DQ nodes: symmetric int8 weights and per-tensor symmetric int8 activations
(zero point 0), from calibration ranges. Only the compute-heavy ops (MatMul, Gemm, Conv) are quantized;
norms, softmax and the elementwise rest stay fp32.

The Q/DQ layout is chosen so that ONNX Runtime's CPU provider really runs integer kernels (checked by
tests/test_quantize.py: every quantized MatMul becomes MatMulIntegerToFloat, lm_head QGemm; with
ONNX Runtime's defaults most were left as DequantizeLinear + fp32 MatMul, which dequantizes every
weight at every step and made the 0.6B int8 decoder step 6x slower than fp32):
- MatMul/Gemm weights per tensor (ONNX Runtime fuses per-channel MatMul weights only on some paths);
  Conv weights per output channel. `matmul_per_channel=True` (`--int8-weights per-channel`) gives
  per-channel MatMul weights, the form a TensorRT build prefers.
- MatMul/Gemm outputs stay float (`OpTypesToExcludeOutputQuantization`): a quantized output shared by
  two consumers (SiLU's Sigmoid and Mul) blocks the fusion, and the float output costs no accuracy;
- one Q/DQ pair per consumer (`DedicatedQDQPair`), and one weight DequantizeLinear per consumer: a
  shared DQ is not fused. The tied embedding table (Gather) and lm_head (Gemm) share one int8
  initializer; the Gather becomes Gather(int8 rows) -> DequantizeLinear, so only the looked-up rows
  are dequantized. The runtime turns off common-subexpression elimination for these graphs
  (it would merge the dedicated pairs again): see `disabled_optimizers_for` in qasr.runtime.session.
"""

from __future__ import annotations

from pathlib import Path

from qasr.calibration.stats import QUANTIZED_OPS


def quantize_static_graph(src: Path, dst: Path, ranges, exclude_nodes: list[str] = (),
                          matmul_per_channel: bool = False) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    model = load_model_with_shape_infer(Path(src))
    conv_weights = {n.input[1]: [{"axis": 0}] for n in model.graph.node if n.op_type == "Conv"}
    quantizer = QDQQuantizer(
        model, matmul_per_channel, False, QuantType.QInt8, QuantType.QInt8, ranges, [], list(exclude_nodes),
        list(QUANTIZED_OPS), {"ActivationSymmetric": True, "WeightSymmetric": True, "DedicatedQDQPair": True,
                              "TensorQuantOverrides": conv_weights, "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]})
    quantizer.quantize_model()
    dedicate_weight_dequantize(quantizer.model.model.graph)
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=True)


def dedicate_weight_dequantize(graph) -> int:
    """Give every consumer of a weight's DequantizeLinear its own (same int8 initializer, no copy of the
    data); a Gather from a per-tensor quantized table gathers int8 rows and dequantizes them. Returns the
    number of consumers rewired."""
    from onnx import helper

    initializers = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    rewired = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers]:
        users = consumers.get(dq.output[0], [])
        if len(users) < 2:
            continue
        per_tensor = len(initializers[dq.input[1]].dims) == 0 if dq.input[1] in initializers else False
        for k, user in enumerate(users):
            position = list(graph.node).index(user)
            if user.op_type == "Gather" and user.input[0] == dq.output[0] and per_tensor:
                rows = f"{user.output[0]}_int8"
                gather = helper.make_node("Gather", [dq.input[0], user.input[1]], [rows], name=f"{user.name}_int8")
                gather.attribute.extend(user.attribute)
                dequant = helper.make_node("DequantizeLinear", [rows, *dq.input[1:]], list(user.output),
                                           name=f"{user.name}_dequantize")
                graph.node.remove(user)
                graph.node.insert(position, dequant)
                graph.node.insert(position, gather)
            elif k > 0:
                copy = helper.make_node("DequantizeLinear", list(dq.input), [f"{dq.output[0]}_{k}"], name=f"{dq.name}_{k}")
                copy.attribute.extend(dq.attribute)
                for i, name in enumerate(user.input):
                    if name == dq.output[0]:
                        user.input[i] = copy.output[0]
                graph.node.insert(position, copy)
            else:
                continue
            rewired += 1
        if not any(dq.output[0] in n.input for n in graph.node) and dq.output[0] not in {o.name for o in graph.output}:
            graph.node.remove(dq)
    return rewired
