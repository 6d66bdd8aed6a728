"""qasr.export: Qwen3-ASR checkpoints to ONNX graphs, verified against the PyTorch reference."""
