"""qasr.benchmarks: measurements of exports against the PyTorch reference (parity now; WER and latency later)."""
