"""qasr.calibration: activation statistics on real audio for INT8 quantization.

Not implemented yet (issue: "FP16 and calibrated INT8").
"""
