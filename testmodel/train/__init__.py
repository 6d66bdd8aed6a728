"""testmodel.train: the project's own small trained Qwen3-ASR test model (synthetic speech corpus, training)."""
