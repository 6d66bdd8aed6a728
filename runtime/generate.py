"""Greedy decoding over the decoder graph with the runtime's own KV cache.

Rows are left padded to a common prompt length, so every row writes its new keys and values at the
same offset of the cache; `past_mask` hides the padding, `position_ids` count each row's own tokens.
Each row stops on its own (EOS, budget, repetition); the loop ends when all have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import names
from .kv_cache import KVCache
from .session import Runner
from .stopping import BUDGET, EOS, REPETITION, DecodeOptions, LogitFilter, repeating_period, trim_repetition


@dataclass
class Generation:
    tokens: list[int]     # generated ids, EOS excluded
    stop_reason: str      # eos | budget | repetition


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    audio_embeds: np.ndarray   # [audio tokens, hidden], in placeholder order
    budget: int


class Generator:
    def __init__(self, decoder: Runner, cache: KVCache, hidden: int, vocab: int, audio_token_id: int,
                 eos_ids: tuple[int, ...], pad_id: int, dtype: np.dtype):
        self.decoder, self.cache = decoder, cache
        self.hidden, self.vocab, self.audio_token_id = hidden, vocab, audio_token_id
        self.eos_ids, self.pad_id, self.dtype = set(eos_ids), pad_id, np.dtype(dtype)
        self.layers = cache.layers

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

    def generate(self, prompts: list[Prompt], options: DecodeOptions, filters: list[LogitFilter] = ()) -> list[Generation]:
        batch = len(prompts)
        feeds, pads = self._prefill_inputs(prompts)
        length = feeds[names.INPUT_IDS].shape[1]
        budgets = [p.budget for p in prompts]
        capacity = length + max(budgets)
        cache = self.cache.views(batch, capacity)
        past_mask = np.zeros((batch, capacity), dtype=np.bool_)
        # Buffers of the step, allocated once per call and reused every step.
        step_ids = np.full((batch, 1), self.pad_id, dtype=np.int64)
        step_audio = np.zeros((batch, 1, self.hidden), dtype=self.dtype)
        step_positions = np.zeros((batch, 1), dtype=np.int64)
        step_mask = np.ones((batch, 1), dtype=np.bool_)
        logits = np.empty((batch, self.vocab), dtype=np.float32)
        presents = [np.empty((batch, self.cache.kv_heads, 1, self.cache.head_dim), dtype=self.dtype)
                    for _ in range(2 * self.layers)]
        present_names = [n for i in range(self.layers) for n in (names.present_key(i), names.present_value(i))]
        past_names = [n for i in range(self.layers) for n in (names.past_key(i), names.past_value(i))]

        feeds.update({names.PAST_MASK: past_mask, **dict(zip(past_names, cache))})
        out = self.decoder.infer(feeds, {names.LOGITS: logits})
        for buf, name in zip(cache, present_names):
            buf[:, :, :length] = out[name]
        past_mask[:, :length] = feeds[names.NEW_MASK]

        tokens: list[list[int]] = [[] for _ in range(batch)]
        reasons: list[str | None] = [None] * batch
        offset = length
        for step in range(max(budgets)):
            for apply in filters:
                apply(logits, step)
            chosen = logits.argmax(axis=-1)
            for row in range(batch):
                if reasons[row] is None:
                    reasons[row] = self._advance(tokens[row], int(chosen[row]), budgets[row], options)
            if all(r is not None for r in reasons):
                break
            step_ids[:, 0] = np.where([r is None for r in reasons], chosen, self.pad_id)
            step_positions[:, 0] = offset - pads
            step_feeds = {names.INPUT_IDS: step_ids, names.DECODER_AUDIO_EMBEDS: step_audio,
                          names.POSITION_IDS: step_positions, names.NEW_MASK: step_mask,
                          names.PAST_MASK: past_mask, **dict(zip(past_names, cache))}
            self.decoder.infer(step_feeds, {names.LOGITS: logits, **dict(zip(present_names, presents))})
            for buf, new in zip(cache, presents):
                buf[:, :, offset] = new[:, :, 0]
            past_mask[:, offset] = True
            offset += 1
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
