"""An export directory loaded for inference: manifest, three graph runners, tokenizer, KV cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import names
from .audio_tokens import audio_token_count
from .features import FeatureSettings, LogMel
from .generate import Generation, Generator, Prompt
from .kv_cache import KVCache
from .manifest import Manifest, load_manifest
from .prompt import PromptBuilder
from .session import OrtRunner, disabled_optimizers_for
from .stopping import DecodeOptions, LogitFilter, suppress_tokens_before

NP_DTYPES = {"float32": np.float32, "float16": np.float16}


class Engine:
    def __init__(self, export_dir: str | Path, providers: list[str] | None = None, threads: int = 0,
                 verify_checksums: bool = True, max_batch: int = 0, max_len: int = 0):
        self.manifest: Manifest = load_manifest(export_dir, verify_checksums=verify_checksums)
        m = self.manifest
        disabled = disabled_optimizers_for(m.data["export"])
        self.encoder = OrtRunner(m.graph_path(names.ENCODER), providers, threads, disabled)
        self.projector = OrtRunner(m.graph_path(names.PROJECTOR), providers, threads, disabled)
        self.decoder = OrtRunner(m.graph_path(names.DECODER), providers, threads, disabled)
        self.features = LogMel(FeatureSettings.from_json(m.features))
        tokens = m.tokens
        self.prompts = PromptBuilder(m.tokenizer_path, tokens["audio_token"], m.prompt["template"],
                                     m.prompt["language_prefix"])
        self.eos_ids = tuple(tokens["eos_token_ids"])
        self.dtype = np.dtype(NP_DTYPES[m.graph_dtype(names.DECODER, names.past_key(0))])
        self.feature_dtype = np.dtype(NP_DTYPES[m.graph_dtype(names.ENCODER, names.INPUT_FEATURES)])
        cache = m.cache
        self.cache = KVCache(cache["layers"], cache["kv_heads"], cache["head_dim"], self.dtype)
        if max_batch and max_len:
            self.cache.reserve(max_batch, max_len)
        audio = m.model["audio"]
        self.chunk_frames = 2 * audio["n_window"]
        self.tokens_per_chunk = m.model["tokens_per_chunk"]
        self.generator = Generator(self.decoder, self.cache, m.model["text"]["hidden_size"],
                                   m.model["text"]["vocab_size"], tokens["audio_token_id"], self.eos_ids,
                                   tokens["pad_token_id"], self.dtype)

    @property
    def providers(self) -> list[str]:
        return self.decoder.providers

    @property
    def cache_slot_bytes(self) -> int:
        """Bytes of KV cache one token of one row takes (all layers, keys and values)."""
        c = self.cache
        return 2 * c.layers * c.kv_heads * c.head_dim * c.dtype.itemsize

    def audio_tokens(self, frames: int) -> int:
        return audio_token_count(frames, self.chunk_frames, self.tokens_per_chunk)

    def encode(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """Audio embeddings ([tokens, hidden]) for per-utterance features ([mels, frames]), one batch."""
        frames = max(f.shape[1] for f in features)
        frames = -(-frames // self.chunk_frames) * self.chunk_frames
        batch = np.zeros((len(features), features[0].shape[0], frames), dtype=self.feature_dtype)
        for row, f in enumerate(features):
            batch[row, :, : f.shape[1]] = f
        lengths = np.array([f.shape[1] for f in features], dtype=np.int64)
        hidden = self.encoder.infer({names.INPUT_FEATURES: batch, names.FEATURE_LENGTHS: lengths})[names.AUDIO_HIDDEN]
        embeds = self.projector.infer({names.AUDIO_HIDDEN: hidden})[names.AUDIO_EMBEDS]
        return [embeds[row, : self.audio_tokens(int(n))] for row, n in enumerate(lengths)]

    def generate(self, prompts: list[Prompt], options: DecodeOptions) -> list[Generation]:
        filters: list[LogitFilter] = []
        if options.min_new_tokens:
            filters.append(suppress_tokens_before(self.eos_ids, options.min_new_tokens))
        return self.generator.generate(prompts, options, filters)
