"""qasr.quantize: FP16 conversion and INT8 quantization of exported graphs.

Not implemented yet (issue: "FP16 and calibrated INT8"); asr-export refuses --precision fp16/int8 with
a clear message until it is.
"""
