"""Default groups kept in float per INT8 mode; the sensitivity sweep and the reasons: docs/quantization.md.

Static INT8: the activation x activation products (attention scores and P.V over the KV cache) stay
float: on the trained test model no group is sensitive (every single-group row within one word of
fp32 on 200 held-out utterances), so every weight product is quantized; the attention products gain
no speed on ONNX Runtime's CPU integer kernels (which fuse MatMuls with constant weights) and one
per-tensor scale over a growing KV cache is coarse for real checkpoints with outlier channels.
Weight-only: only MatMul weights are ever quantized, so there is nothing to exclude by default.
"""

DEFAULT_EXCLUDE = {
    "static": ("encoder.attention", "decoder.attention"),
    "weight-only": (),
}
