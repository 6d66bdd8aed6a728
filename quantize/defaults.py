"""Default groups kept in float per INT8 mode, chosen by the sensitivity sweep (docs/quantization.md).

Static INT8: the activation x activation products (attention scores and P.V over the KV cache) stay
float: their inputs are not weights, a per-tensor scale over the whole cache is coarse, and the sweep
measured them as the most sensitive groups.
Weight-only: only MatMul weights are ever quantized, so there is nothing to exclude by default.
"""

DEFAULT_EXCLUDE = {
    "static": ("encoder.attention", "decoder.attention"),
    "weight-only": (),
}
