"""qasr.quantize: FP16 and INT8 / INT4 from a float export: static Q/DQ with calibrated activations, weight-only
MatMulNBits (rtn, HQQ, GPTQ, AWQ-style), the CPU form (dynamic INT8 encoder, a shared 4/8-bit lm_head table) and the
layer groups that may be kept in float."""
