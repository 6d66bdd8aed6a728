"""The standard decoder's step: left-padded rows, a host cache written at a common offset.

Rows are left padded to a common prompt length, so every row writes its new keys and values at the same offset
of a host cache (kv_cache.KVCache); `past_mask` hides the padding, `position_ids` count each row's own tokens;
logits are read back every step and the loop chooses (generate.py).
"""

from __future__ import annotations

import numpy as np

from qasr.exportformat import names

from .generate import PREFILL_CHUNK, DecoderShape, Observer, PrefixCache, Prompt
from .kv_cache import KVCache
from .session import Runner

# The standard decoder scores every prompt chunk token against the whole cache capacity (prompt + budget), so
# its chunks are also cut to PREFILL_SCORES / capacity tokens (at least 64): ~4M scores per head and layer.
PREFILL_SCORES = 1 << 22


class HostCacheSteps:
    can_choose = False

    def __init__(self, decoder: Runner, cache: KVCache, shape: DecoderShape, observer: Observer | None = None):
        self.decoder, self.cache, self.shape, self.observer = decoder, cache, shape, observer
        self.prefill_chunk = PREFILL_CHUNK
        layers = cache.layers
        self.past_names = [n for i in range(layers) for n in (names.past_key(i), names.past_value(i))]
        self.present_names = [n for i in range(layers) for n in (names.present_key(i), names.present_value(i))]

    def begin(self, prompts: list[Prompt], bias: np.ndarray | None = None) -> "HostCacheRun":
        return HostCacheRun(self, prompts)

    def run(self, feeds: dict, outputs: dict) -> dict:
        if self.observer:
            self.observer(names.DECODER, feeds)
        return self.decoder.infer(feeds, outputs)


class HostCacheRun:
    graph_chooses = False

    def __init__(self, steps: HostCacheSteps, prompts: list[Prompt]):
        self.steps = steps
        shape, cache = steps.shape, steps.cache
        ids, audio, self.pads = shape.pad_prompts(prompts, left=True)
        batch, length = ids.shape
        capacity = length + max(p.budget for p in prompts)
        self.cache = cache.views(batch, capacity)
        self.past_mask = np.zeros((batch, capacity), dtype=np.bool_)
        # Buffers of the step, allocated once per call and reused every step.
        self.ids = np.full((batch, 1), shape.pad_id, dtype=np.int64)
        self.audio = np.zeros((batch, 1, shape.hidden), dtype=shape.dtype)
        self.positions = np.zeros((batch, 1), dtype=np.int64)
        self.new_mask = np.ones((batch, 1), dtype=np.bool_)
        self._logits = np.empty((batch, shape.vocab), dtype=np.float32)
        self.presents = [np.empty((batch, cache.kv_heads, 1, cache.head_dim), dtype=shape.dtype)
                         for _ in range(2 * cache.layers)]
        self._prefill(ids, audio, capacity, prompts)
        self.rows, self.capacity = batch, capacity

    def _prefill(self, ids: np.ndarray, audio: np.ndarray, capacity: int, prompts: list[Prompt]) -> None:
        """The prompt runs in chunks, each attending to the cache the chunks before it wrote: a long prompt never
        makes a [tokens x tokens] score matrix (memory linear in its length). A prompt that brings an earlier
        call's cache for its first tokens has them copied in; the chunks start after the shortest such prefix
        (positions another row has cached are run again and written with the same values)."""
        steps = self.steps
        length = ids.shape[1]
        reused = [p.reused() for p in prompts]
        start = min(int(pad) + n for pad, n in zip(self.pads, reused))
        for row, (prompt, n) in enumerate(zip(prompts, reused)):
            if n:
                pad = int(self.pads[row])
                for buf, kv in zip(self.cache, prompt.reuse.kv):
                    buf[row, :, pad: pad + n] = kv[:, :n]
                self.past_mask[row, pad: min(pad + n, start)] = True
        positions = np.arange(length)[None, :]
        feeds = {names.INPUT_IDS: ids, names.DECODER_AUDIO_EMBEDS: audio,
                 names.POSITION_IDS: np.maximum(positions - self.pads[:, None], 0),
                 names.NEW_MASK: positions >= self.pads[:, None]}
        chunk_len = min(steps.prefill_chunk, max(64, PREFILL_SCORES // capacity))
        if length - start <= steps.prefill_chunk and (length - start) * capacity <= 4 * PREFILL_SCORES:
            chunk_len = length - start   # short prompts in one run
        for lo in range(start, length, chunk_len):
            hi = min(length, lo + chunk_len)
            chunk = {name: value[:, lo:hi] for name, value in feeds.items()}
            chunk.update({names.PAST_MASK: self.past_mask, **dict(zip(steps.past_names, self.cache))})
            out = steps.run(chunk, {names.LOGITS: self._logits})
            for buf, name in zip(self.cache, steps.present_names):
                buf[:, :, lo:hi] = out[name]
            self.past_mask[:, lo:hi] = chunk[names.NEW_MASK]
        self.offset = length
        self.kept = [PrefixCache(p.keep, tuple(buf[row, :, pad: pad + p.keep].copy() for buf in self.cache))
                     if p.keep else None for row, (p, pad) in enumerate(zip(prompts, self.pads.tolist()))]

    def logits(self) -> np.ndarray:
        return self._logits

    def feed(self, chosen: np.ndarray, live: np.ndarray, step: int) -> None:
        steps = self.steps
        self.ids[:, 0] = np.where(live, chosen, steps.shape.pad_id)
        self.positions[:, 0] = self.offset - self.pads
        feeds = {names.INPUT_IDS: self.ids, names.DECODER_AUDIO_EMBEDS: self.audio, names.POSITION_IDS: self.positions,
                 names.NEW_MASK: self.new_mask, names.PAST_MASK: self.past_mask,
                 **dict(zip(steps.past_names, self.cache))}
        steps.run(feeds, {names.LOGITS: self._logits, **dict(zip(steps.present_names, self.presents))})
        for buf, new in zip(self.cache, self.presents):
            buf[:, :, self.offset] = new[:, :, 0]
        self.past_mask[:, self.offset] = True
        self.offset += 1

    def keep(self, rows: np.ndarray) -> None:
        """Only `rows` (ascending) run from now on: each moves to the front of the cache (row i's slots are the
        same memory in the [B] and the [len(rows)] views, and a row never moves back past one still to be moved),
        and every step buffer is cut to the new batch, so nothing is computed for the rows that left."""
        count, used = len(rows), self.offset
        for new, old in enumerate(rows.tolist()):
            if new != old:
                for buf in self.cache:
                    buf[new, :, :used] = buf[old, :, :used]
                self.past_mask[new] = self.past_mask[old]
        self.pads = self.pads[rows]
        self.cache = [buf[:count] for buf in self.cache]
        self.past_mask = self.past_mask[:count]
        self.ids, self.audio, self.positions = self.ids[:count], self.audio[:count], self.positions[:count]
        self.new_mask, self._logits = self.new_mask[:count], self._logits[:count]
        self.presents = [p[:count] for p in self.presents]
        self.rows = count

    def summary(self) -> dict:
        return {"rows": self.rows, "capacity": self.capacity, "cuda_graph": False}
