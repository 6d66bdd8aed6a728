"""qasr.calibration: the audio that calibrates, real graph inputs recorded by observing the runtime, ONNX Runtime's
calibrators and the statistics cache."""
