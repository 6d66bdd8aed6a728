"""Greedy decoding with the runtime's own KV cache: one loop, two step strategies.

`Generator.generate` is the loop every decoder shares: choose each live row's next token, apply the
stopping rules (EOS, budget, repetition) row by row, feed the live rows' tokens back; rows stop on
their own and the loop ends when all have. What a step is differs by decoder, behind `_Decode`:
- the standard decoder (`Generator._begin`, here): rows left padded to a common prompt length, so
  every row writes its new keys and values at the same offset of a host cache; `past_mask` hides
  the padding, `position_ids` count each row's own tokens; logits are read back every step;
- the fused decoder (`FusedGenerator._begin`, fused_generate.py): a device cache the graph writes in
  place, right-padded rows at their own offsets, the next token chosen in the graph.
`min_new_tokens` is applied by each strategy (a host filter here, the graph's logit bias there).
`recorder` (calibration) is called with host copies of every decoder run's feeds, in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import names
from .kv_cache import KVCache
from .session import Runner
from .stopping import (BUDGET, EOS, REPETITION, DecodeOptions, LogitFilter, repeating_period, suppress_tokens_before,
                       trim_repetition)


# Prompt tokens per prefill run at most; prompts up to this length run in one go, as before. The
# standard decoder scores every chunk token against the whole cache capacity (prompt + budget), so its
# chunks are also cut to PREFILL_SCORES / capacity tokens (at least 64): ~4M scores per head and layer.
PREFILL_CHUNK = 1024
PREFILL_SCORES = 1 << 22


@dataclass
class Generation:
    tokens: list[int]     # generated ids, EOS excluded
    stop_reason: str      # eos | budget | repetition


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    audio_embeds: np.ndarray   # [audio tokens, hidden], in placeholder order
    budget: int


class _Decode:
    """One generate() call's decoding state after the prefill: what a step strategy provides to the loop."""

    def choose(self, step: int) -> np.ndarray:
        """The chosen token of every row of the call [batch] for generated position `step`."""
        raise NotImplementedError

    def feed(self, chosen: np.ndarray, live: np.ndarray, step: int) -> None:
        """Run one decoder step on the live rows' chosen tokens (stopped rows feed padding)."""
        raise NotImplementedError

    def summary(self) -> dict:
        """What ran: rows (incl. bucket padding), cache capacity, whether a CUDA graph replayed, host filters."""
        raise NotImplementedError


class _HostCacheDecode(_Decode):
    """The standard decoder's step: left-padded rows, a host cache written at a common offset."""

    def __init__(self, gen: "Generator", prompts: list[Prompt], filters: list[LogitFilter]):
        self.gen, self.filters = gen, filters
        feeds, self.pads = gen._prefill_inputs(prompts)
        batch, length = feeds[names.INPUT_IDS].shape
        capacity = length + max(p.budget for p in prompts)
        self.cache = gen.cache.views(batch, capacity)
        self.past_mask = np.zeros((batch, capacity), dtype=np.bool_)
        # Buffers of the step, allocated once per call and reused every step.
        self.ids = np.full((batch, 1), gen.pad_id, dtype=np.int64)
        self.audio = np.zeros((batch, 1, gen.hidden), dtype=gen.dtype)
        self.positions = np.zeros((batch, 1), dtype=np.int64)
        self.new_mask = np.ones((batch, 1), dtype=np.bool_)
        self.logits = np.empty((batch, gen.vocab), dtype=np.float32)
        self.presents = [np.empty((batch, gen.cache.kv_heads, 1, gen.cache.head_dim), dtype=gen.dtype)
                         for _ in range(2 * gen.layers)]
        self.past_names = [n for i in range(gen.layers) for n in (names.past_key(i), names.past_value(i))]
        self.present_names = [n for i in range(gen.layers) for n in (names.present_key(i), names.present_value(i))]
        # The prompt runs in chunks of prefill_chunk tokens, each attending to the cache the chunks before it
        # wrote: a long prompt never makes a [tokens x tokens] score matrix (memory linear in its length).
        step = min(gen.prefill_chunk, max(64, PREFILL_SCORES // capacity))
        if length <= gen.prefill_chunk and length * capacity <= 4 * PREFILL_SCORES:
            step = length   # short prompts in one run, as before chunking existed
        for lo in range(0, length, step):
            hi = min(length, lo + step)
            chunk = {name: feeds[name][:, lo:hi] for name in (names.INPUT_IDS, names.DECODER_AUDIO_EMBEDS,
                                                              names.POSITION_IDS, names.NEW_MASK)}
            chunk.update({names.PAST_MASK: self.past_mask, **dict(zip(self.past_names, self.cache))})
            out = self._run(chunk, {names.LOGITS: self.logits})
            for buf, name in zip(self.cache, self.present_names):
                buf[:, :, lo:hi] = out[name]
            self.past_mask[:, lo:hi] = chunk[names.NEW_MASK]
        self.offset = length
        self.rows, self.capacity = batch, capacity

    def summary(self) -> dict:
        return {"rows": self.rows, "capacity": self.capacity, "cuda_graph": False, "host_filters": bool(self.filters)}

    def _run(self, feeds, outputs):
        if self.gen.recorder:
            self.gen.recorder(feeds)
        return self.gen.decoder.infer(feeds, outputs)

    def choose(self, step: int) -> np.ndarray:
        for apply in self.filters:
            apply(self.logits, step)
        return self.logits.argmax(axis=-1)

    def feed(self, chosen: np.ndarray, live: np.ndarray, step: int) -> None:
        self.ids[:, 0] = np.where(live, chosen, self.gen.pad_id)
        self.positions[:, 0] = self.offset - self.pads
        feeds = {names.INPUT_IDS: self.ids, names.DECODER_AUDIO_EMBEDS: self.audio, names.POSITION_IDS: self.positions,
                 names.NEW_MASK: self.new_mask, names.PAST_MASK: self.past_mask, **dict(zip(self.past_names, self.cache))}
        self._run(feeds, {names.LOGITS: self.logits, **dict(zip(self.present_names, self.presents))})
        for buf, new in zip(self.cache, self.presents):
            buf[:, :, self.offset] = new[:, :, 0]
        self.past_mask[:, self.offset] = True
        self.offset += 1


class Generator:
    """Greedy decoding over the standard decoder graph; the decode loop of every decoder (see the module doc)."""

    def __init__(self, decoder: Runner, cache: KVCache, hidden: int, vocab: int, audio_token_id: int,
                 eos_ids: tuple[int, ...], pad_id: int, dtype: np.dtype):
        self.decoder, self.cache = decoder, cache
        self.hidden, self.vocab, self.audio_token_id = hidden, vocab, audio_token_id
        self.eos_ids, self.pad_id, self.dtype = set(eos_ids), pad_id, np.dtype(dtype)
        self.layers = cache.layers
        self.last_run: dict = {}
        self.prefill_chunk = PREFILL_CHUNK
        # calibration (qasr.calibration.record): called with host copies of every decoder run's feeds
        self.recorder: Callable[[dict[str, np.ndarray]], None] | None = None

    def _pad_prompts(self, prompts: list[Prompt], left: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompt ids [B, L] and audio embeddings [B, L, hidden] padded to the longest prompt (on the left
        or the right), the embeddings placed at the audio placeholders; and each row's padding [B]."""
        batch, length = len(prompts), max(len(p.ids) for p in prompts)
        ids = np.full((batch, length), self.pad_id, dtype=np.int64)
        audio = np.zeros((batch, length, self.hidden), dtype=self.dtype)
        pads = np.array([length - len(p.ids) for p in prompts], dtype=np.int64)
        for row, prompt in enumerate(prompts):
            start = pads[row] if left else 0
            ids[row, start: start + len(prompt.ids)] = prompt.ids
            where = np.flatnonzero(ids[row] == self.audio_token_id)
            if len(where) != len(prompt.audio_embeds):
                raise ValueError(f"prompt has {len(where)} audio placeholders for {len(prompt.audio_embeds)} embeddings")
            audio[row, where] = prompt.audio_embeds
        return ids, audio, pads

    def _prefill_inputs(self, prompts: list[Prompt]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        ids, audio, pads = self._pad_prompts(prompts, left=True)
        steps = np.arange(ids.shape[1])[None, :]
        feeds = {names.INPUT_IDS: ids, names.DECODER_AUDIO_EMBEDS: audio,
                 names.POSITION_IDS: np.maximum(steps - pads[:, None], 0), names.NEW_MASK: steps >= pads[:, None]}
        return feeds, pads

    def _begin(self, prompts: list[Prompt], options: DecodeOptions, filters: list[LogitFilter]) -> _Decode:
        """Run the prefill and return the step strategy (the standard decoder's here)."""
        if options.min_new_tokens:
            filters = [*filters, suppress_tokens_before(tuple(sorted(self.eos_ids)), options.min_new_tokens)]
        return _HostCacheDecode(self, prompts, filters)

    def generate(self, prompts: list[Prompt], options: DecodeOptions, filters: list[LogitFilter] = (),
                 on_step: Callable[[list[list[int]]], None] | None = None) -> list[Generation]:
        """Greedy tokens for each prompt; `filters` edit the float32 logits on the host before each choice;
        `on_step` (streaming) sees every row's tokens so far after each step (do not keep the lists)."""
        batch = len(prompts)
        budgets = [p.budget for p in prompts]
        run = self._begin(prompts, options, list(filters))
        tokens: list[list[int]] = [[] for _ in range(batch)]
        reasons: list[str | None] = [None] * batch
        steps = 0
        for step in range(max(budgets)):
            chosen = run.choose(step)
            for row in range(batch):
                if reasons[row] is None:
                    reasons[row] = self._advance(tokens[row], int(chosen[row]), budgets[row], options)
            if on_step is not None:
                on_step(tokens)
            live = np.array([r is None for r in reasons])
            if not live.any():
                break
            run.feed(chosen, live, step)
            steps += 1
        self.last_run = {"batch": batch, "decode_steps": steps, **run.summary()}
        return [Generation(t, r or BUDGET) for t, r in zip(tokens, reasons)]

    def _advance(self, tokens: list[int], token: int, budget: int, options: DecodeOptions) -> str | None:
        """Append `token` to a live row; return why the row stops now, or None."""
        if token in self.eos_ids:
            return EOS
        tokens.append(token)
        period = repeating_period(tokens, options.repetition_max_period, options.repetition_min_span)
        if period is not None:
            tokens[:] = trim_repetition(tokens, period)
            return REPETITION
        if len(tokens) >= budget:
            return BUDGET
        return None
