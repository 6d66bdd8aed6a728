"""The PyTorch reference and everything that compares against it.

transformers' Qwen3ASRForConditionalGeneration built from a checkpoint (model), the same pipeline
transcribing with it (transcriber), an export's graphs and greedy tokens against it (parity), WER
scoring (wer) and asr-export's closing check (verify). Above export (it loads checkpoints) and below
benchmarks and training, which call it; see docs/decisions/, "Package order".
"""
