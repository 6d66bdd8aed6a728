"""An export directory loaded for inference: manifest, three graph runners, tokenizer, KV cache."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from qasr.exportformat import names
from qasr.exportformat import Manifest, load_manifest

from .audio_front import NP_DTYPES, AudioFront

from .device_cache import DeviceKVCache
from .device_step import DeviceCacheSteps
from qasr.errors import QasrError
from .generate import DecoderShape, Generation, Generator, Observer, Prompt
from .host_step import HostCacheSteps
from .kv_cache import KVCache
from .prompt import PromptBuilder
from .cuda_support import graph_cuda_problems, onnxruntime_problem
from .session import CUDA, ObservedRunner, OrtRunner, default_providers, disabled_optimizers_for
from .stopping import DecodeOptions

log = logging.getLogger(__name__)

# CUDA graphs need a cache reserved up front: these sizes unless the caller gives max_batch / max_len.
GRAPH_MAX_BATCH, GRAPH_MAX_LEN = 8, 1024


class Engine:
    """`cuda_graph`: None captures the decode step when the export has the fused decoder (attention gqa)
    and the decoder runs on CUDA; True asks for it (reported in `cuda_graph_note` when impossible);
    False never. `max_batch` x `max_len` reserve the KV cache (and bound what CUDA graphs replay).
    `checksums`: how the export's files are checked on load (qasr.exportformat.files: cached, full, size).
    `observer` (calibration): called with host copies of every graph run's feeds, (graph name, feeds)."""

    def __init__(self, export_dir: str | Path, providers: list[str] | None = None, threads: int = 0,
                 checksums: str = "cached", max_batch: int = 0, max_len: int = 0,
                 cuda_graph: bool | None = None, observer: Observer | None = None):
        start = time.perf_counter()
        self.manifest: Manifest = load_manifest(export_dir, checksums=checksums)
        m = self.manifest
        if m.is_aligner:
            raise QasrError(f"{export_dir} is a forced aligner export (word timestamps), not a speech recognition "
                            "one; give it as --aligner (qasr.Model(..., aligner=...))")
        disabled = disabled_optimizers_for(m.export)
        self.attention = m.export.attention
        required = (m.export.requires or {}).get("onnxruntime")
        if required and (problem := onnxruntime_problem(required)):
            raise QasrError(f"{export_dir}: this export {problem}")
        if self.attention == names.ATTENTION_GQA and (providers or default_providers())[0] == CUDA:
            self._check_fused_on_cuda(m.graph_path(names.DECODER))
        self.max_positions = m.export.max_positions
        self.front = AudioFront(m, providers, threads, disabled, observer)
        self.encoder, self.projector, self.features = self.front.encoder, self.front.projector, self.front.features
        self.decoder, self.cuda_graph, self.cuda_graph_note = self._decoder(providers, threads, disabled, cuda_graph)
        tokens = m.tokens
        self.prompts = PromptBuilder(m.tokenizer_path, tokens.audio_token, m.prompt.template, m.prompt.language_prefix)
        self.eos_ids = tuple(tokens.eos_token_ids)
        self.languages = tuple(m.model.support_languages)   # what the model may name
        self.dtype = np.dtype(NP_DTYPES[m.graph_dtype(names.DECODER, names.past_key(0))])
        self.feature_dtype, self.chunk_frames = self.front.feature_dtype, self.front.chunk_frames
        self.window_frames = self.front.window_frames   # the encoder's attention window
        shape = DecoderShape(m.model.text.hidden_size, m.model.text.vocab_size, tokens.audio_token_id, self.eos_ids,
                             tokens.pad_token_id, self.dtype)
        layout = (m.cache.layers, m.cache.kv_heads, m.cache.head_dim, self.dtype)
        if self.attention == names.ATTENTION_GQA:
            self.cache = DeviceKVCache(*layout, self.decoder.device)
            if self.cuda_graph:   # the step reserves the fixed cache the graphs replay on
                max_batch, max_len = max_batch or GRAPH_MAX_BATCH, max_len or GRAPH_MAX_LEN
            steps = DeviceCacheSteps(self.decoder, self.cache, shape, observer, cuda_graph=self.cuda_graph,
                                     max_batch=max_batch, max_len=max_len)
        else:
            self.cache = KVCache(*layout)
            steps = HostCacheSteps(self.decoder, self.cache, shape, observer)
        self.generator = Generator(steps, shape)
        if max_batch and max_len and not self.cuda_graph:
            self.cache.reserve(max_batch, max_len)
        log.info("loaded %s (%s, %s attention) on %s in %.2f s; CUDA graphs %s", export_dir, m.precision,
                 self.attention, self.providers[0], time.perf_counter() - start, self.cuda_graph_note)

    def _decoder(self, providers, threads, disabled, cuda_graph: bool | None) -> tuple[OrtRunner, bool, str]:
        """The decoder session, whether its step is captured as CUDA graphs, and why not when it is not.

        On CUDA the fused decoder must run every node there (its cache lives on the device): a graph with a
        node the CUDA provider cannot run is refused before a session is made, and the session itself
        refuses any node ONNX Runtime would still place on the CPU (no silent CPU fallback)."""
        path = self.manifest.graph_path(names.DECODER)
        first = (providers or default_providers())[0]
        fused = self.attention == names.ATTENTION_GQA
        strict = fused and first == CUDA
        if cuda_graph is False:
            note = "off (asked)"
        elif first != CUDA:
            note = f"off (decoder runs on {first})"
        elif not fused:
            note = "off (needs an export with --attention gqa: the standard decoder's cache is host-side)"
        else:
            try:
                runner = OrtRunner(path, providers, threads, disabled, cuda_graph=True, cuda_only=True)
                if runner.device[0] == "cuda":
                    return runner, True, "on"
                note = f"off (decoder runs on {runner.providers[0]})"
            except QasrError as exc:
                note = f"off (ONNX Runtime refused capture: {exc})"
        return OrtRunner(path, providers, threads, disabled, cuda_only=strict), False, note

    @staticmethod
    def _check_fused_on_cuda(path: Path) -> None:
        """Refuse, before any session is made, a fused decoder that the CUDA provider cannot run whole."""
        if problems := graph_cuda_problems(path):
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise QasrError(f"{path}: this fused decoder cannot run on CUDA: {problems[0]}{more}; export it for the GPU "
                            "with asr-export --device cuda --precision fp16 (or int4)")

    @property
    def providers(self) -> list[str]:
        return self.decoder.providers

    @property
    def reuses_prefixes(self) -> bool:
        """Whether a prompt may bring back an earlier call's cache (Prompt.reuse): host caches, and device caches on
        the CPU (a CUDA cache would need device copies, not written yet)."""
        return self.attention != names.ATTENTION_GQA or self.cache.device[0] == "cpu"

    @property
    def cache_slot_bytes(self) -> int:
        """Bytes of KV cache one token of one row takes (all layers, keys and values)."""
        c = self.cache
        return 2 * c.layers * c.kv_heads * c.head_dim * c.dtype.itemsize

    def audio_tokens(self, frames: int) -> int:
        return self.front.audio_tokens(frames)

    def encode(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """Audio embeddings ([tokens, hidden]) for per-utterance features ([mels, frames]): AudioFront.encode."""
        return self.front.encode(features)

    def generate(self, prompts: list[Prompt], options: DecodeOptions, on_step=None, cancelled=None) -> list[Generation]:
        if self.max_positions:  # the fused decoder's RoPE tables end there
            room = [self.max_positions - len(p.ids) for p in prompts]
            if min(room) < 1:
                raise QasrError(f"a prompt of {max(len(p.ids) for p in prompts)} tokens does not fit this export's "
                                f"{self.max_positions} positions (asr-export --max-positions)")
            prompts = [replace(p, budget=min(p.budget, r)) for p, r in zip(prompts, room)]
        return self.generator.generate(prompts, options, on_step=on_step, cancelled=cancelled)
