"""The fused decoder's step (attention "gqa"): everything on the session's device.

The cache lives on the device (DeviceKVCache) and the graph writes it in place; the graph also picks
the next token. Per step the host sends [batch] token ids and [batch] lengths and reads back [batch]
chosen ids (what the stopping rules need), nothing else. Rows are right padded in the prefill and
each row writes at its own offset, so rows of different lengths share a batch without padding slots.

CUDA graphs (`cuda_graph=True`, CUDA execution provider): the decode step of each batch bucket
(1, 2, 4, ... up to max_batch) is captured on its first runs and replayed; its buffers are allocated
once per bucket and updated in place, the cache is reserved once at max_batch x max_len. Prefill
runs outside the graphs (gpu_graph_id -1). Calls that cannot replay (more rows or slots than
reserved, or host-side logit filters) run the same step without a graph, and `last_run` says so.
On the CPU execution provider the same code runs with host buffers.

When the graph chooses (generate.py: the greedy chooser and no host filter) the loop reads back only the
[batch] choices, and the logit rules reach the graph as its `logit_bias` input; otherwise the run hands the
float32 logits to the loop, which chooses on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qasr.exportformat import names
from .device_cache import DeviceKVCache
from qasr.errors import QasrError
from .generate import PREFILL_CHUNK, DecoderShape, Observer, PrefixCache, Prompt


@dataclass
class _StepState:
    """One (rows, capacity) decode step's bound buffers; pinned for as long as its CUDA graph lives."""
    rows: int
    capacity: int
    binding: object
    ids: object
    seqlens: object
    total: object
    bias: object
    last: object
    logits: object
    next_token: object
    audio: object
    graph_id: int | None


def batch_buckets(max_batch: int) -> list[int]:
    """Batch sizes that get a captured graph: powers of two below max_batch, and max_batch."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch]


class DeviceCacheSteps:
    can_choose = True

    def __init__(self, decoder, cache: DeviceKVCache, shape: DecoderShape, observer: Observer | None = None,
                 cuda_graph: bool = False, max_batch: int = 0, max_len: int = 0):
        if names.LAST_TOKEN_INDEX not in decoder.input_names:
            raise QasrError("this export has the first fused decoder (format version 2, shape arithmetic on the "
                            "CPU); export it again with this version of asr-export")
        self.shape, self.cache, self.observer = shape, cache, observer
        self.hidden, self.vocab, self.dtype, self.pad_id = shape.hidden, shape.vocab, np.dtype(shape.dtype), shape.pad_id
        self.prefill_chunk = PREFILL_CHUNK
        self.session = decoder.session
        self.device = cache.device
        layers = cache.layers
        self.past_names = [n for i in range(layers) for n in (names.past_key(i), names.past_value(i))]
        self.present_names = [n for i in range(layers) for n in (names.present_key(i), names.present_value(i))]
        self.cuda_graph = cuda_graph and max_batch > 0 and max_len > 0
        self.max_batch, self.max_len = max_batch, max_len
        self.overflow = DeviceKVCache(cache.layers, cache.kv_heads, cache.head_dim, cache.dtype, cache.device)
        if self.cuda_graph:
            cache.reserve(max_batch, max_len, fixed=True)
        self._pinned: dict[tuple[int, int], _StepState] = {}

    def begin(self, prompts: list[Prompt], bias: np.ndarray | None) -> "DeviceCacheRun":
        return DeviceCacheRun(self, prompts, bias)

    def _observe(self, feeds: dict[str, np.ndarray], cache: DeviceKVCache, rows: int, capacity: int,
                 first_row: int = 0) -> None:
        """Hand the observer host copies of a run's feeds, the cache read back from the device buffers."""
        for index, name in enumerate(self.past_names):
            feeds[name] = cache.read(index, rows, capacity, first_row)   # a host copy; the observer keeps its own
        self.observer(names.DECODER, feeds)

    # -- buffers ---------------------------------------------------------------------------------------
    def _value(self, shape, dtype, device=None, zeros=False):
        import onnxruntime as ort

        device = device or self.device
        if zeros:
            return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=dtype), *device)
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.dtype(dtype), *device)

    def _value_of(self, array: np.ndarray):
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(array, *self.device)

    def _state(self, rows: int, capacity: int, cache: DeviceKVCache, graph_id: int | None) -> _StepState:
        key = (rows, capacity)
        if graph_id is not None and key in self._pinned:
            return self._pinned[key]
        binding = self.session.io_binding()
        audio = self._value((rows, 1, self.hidden), self.dtype, zeros=True)   # steps feed ids only
        state = _StepState(rows, capacity, binding,
                           ids=self._value((rows, 1), np.int64, zeros=True),
                           seqlens=self._value((rows,), np.int32, zeros=True),
                           total=self._value((1,), np.int32, ("cpu", 0), zeros=True),  # a CPU input of the kernel
                           bias=self._value((self.vocab,), np.float32, zeros=True),
                           last=self._value_of(np.arange(rows, dtype=np.int64)),   # a step's row r is token r
                           logits=self._value((rows, self.vocab), np.float32),
                           next_token=self._value((rows,), np.int64), audio=audio, graph_id=graph_id)
        for name, value in ((names.INPUT_IDS, state.ids), (names.DECODER_AUDIO_EMBEDS, audio),
                            (names.SEQLENS_K, state.seqlens), (names.TOTAL_SEQUENCE_LENGTH, state.total),
                            (names.LOGIT_BIAS, state.bias), (names.LAST_TOKEN_INDEX, state.last)):
            binding.bind_ortvalue_input(name, value)
        cache.bind(binding, self.past_names, self.present_names, rows, capacity)
        binding.bind_ortvalue_output(names.LOGITS, state.logits)
        binding.bind_ortvalue_output(names.NEXT_TOKEN, state.next_token)
        if graph_id is not None:
            self._pinned[key] = state
        return state

    def _plan(self, batch: int, need: int, host_filters: bool) -> tuple[int, int, DeviceKVCache, int | None]:
        """(rows, capacity, cache, graph id or None) for a call of `batch` rows needing `need` slots each."""
        if self.cuda_graph and not host_filters and batch <= self.max_batch and need <= self.max_len:
            rows, graph_id = self._bucket(batch)
            return rows, self.max_len, self.cache, graph_id
        fits = batch * need <= self.cache.slots or not self.cache.fixed
        return batch, need, (self.cache if fits else self.overflow), None

    def _bucket(self, batch: int) -> tuple[int, int]:
        """(rows, graph id) of the smallest CUDA-graph bucket that holds `batch` rows."""
        buckets = batch_buckets(self.max_batch)
        rows = next(b for b in buckets if b >= batch)
        return rows, buckets.index(rows)

    def _run(self, binding, graph_id: int | None, prefill: bool = False) -> None:
        import onnxruntime as ort

        options = None
        if self.cuda_graph:
            options = ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", "-1" if prefill or graph_id is None else str(graph_id))
        self.session.run_with_iobinding(binding, options)
        if self.device[0] != "cpu":
            binding.synchronize_outputs()



class DeviceCacheRun:
    """One call: right-padded rows at their own offsets in a device cache the graph writes."""

    def __init__(self, gen: DeviceCacheSteps, prompts: list[Prompt], bias: np.ndarray | None):
        self.gen = gen
        self.graph_chooses = bias is not None
        self.batch = batch = len(prompts)
        need = max(len(p.ids) + p.budget for p in prompts)
        self.rows, self.capacity, self.cache, self.graph_id = gen._plan(batch, need, not self.graph_chooses)
        self.state = state = gen._state(self.rows, self.capacity, self.cache, self.graph_id)
        self.bias = bias if bias is not None else np.zeros(gen.vocab, dtype=np.float32)
        state.bias.update_inplace(self.bias)
        self._step_rows(self._prefill(prompts))

    def _prefill(self, prompts: list[Prompt]) -> np.ndarray:
        """Run the right-padded prompts; the first tokens' logits/choices land in the state's buffers.
        Prompts longer than the generator's prefill_chunk run row by row in chunks (each chunk attends to the cache the
        ones before it wrote), so a long prompt's attention never spans [tokens x tokens] at once."""
        self.kept: list[PrefixCache | None] = [None] * len(prompts)
        if max(len(p.ids) for p in prompts) > self.gen.prefill_chunk or any(p.reuse or p.keep for p in prompts):
            for row, prompt in enumerate(prompts):
                self._prefill_row(row, prompt)
            return np.array([len(p.ids) - 1 for p in prompts], dtype=np.int32)
        ids, audio, _ = self.gen.shape.pad_prompts(prompts, left=False)
        length = ids.shape[1]
        seqlens = np.array([len(p.ids) - 1 for p in prompts], dtype=np.int32)
        self._run_prefill({names.INPUT_IDS: ids, names.DECODER_AUDIO_EMBEDS: audio, names.SEQLENS_K: seqlens,
                           names.TOTAL_SEQUENCE_LENGTH: np.array([length], dtype=np.int32),
                           names.LAST_TOKEN_INDEX: np.arange(self.batch, dtype=np.int64) * length + seqlens})
        return seqlens

    def _prefill_row(self, row: int, prompt: Prompt) -> None:
        """One row in chunks. A prompt that brings an earlier call's cache (a CPU cache: host views) has it copied
        into its row and starts after it; one that asks to keep its first tokens' cache gets a copy of them."""
        ids, audio, _ = self.gen.shape.pad_prompts([prompt], left=False)
        length, chunk = ids.shape[1], self.gen.prefill_chunk
        start = prompt.reused()
        if start:
            for index, kv in enumerate(prompt.reuse.kv):
                self.cache.host_view(index, 1, self.capacity, row)[0, :, :start] = kv[:, :start]
        for lo in range(start, length, chunk):
            hi = min(length, lo + chunk)   # the first chunk is a first prompt (S == total), the rest follow it
            self._run_prefill({names.INPUT_IDS: ids[:, lo:hi], names.DECODER_AUDIO_EMBEDS: audio[:, lo:hi],
                               names.SEQLENS_K: np.array([hi - 1], dtype=np.int32),
                               names.TOTAL_SEQUENCE_LENGTH: np.array([hi], dtype=np.int32),
                               names.LAST_TOKEN_INDEX: np.array([hi - lo - 1], dtype=np.int64)}, first_row=row)
        if prompt.keep:
            self.kept[row] = PrefixCache(prompt.keep, tuple(
                self.cache.host_view(i, 1, self.capacity, row)[0, :, :prompt.keep].copy()
                for i in range(len(self.gen.past_names))))

    def _run_prefill(self, feeds: dict[str, np.ndarray], first_row: int = 0) -> None:
        """One prefill run of rows first_row.. (as many as `feeds` holds): host feeds in, the cache rows written
        in place, the rows' logits and choices into the same rows of the step's own output buffers."""
        gen, state = self.gen, self.state
        rows = len(feeds[names.SEQLENS_K])
        if gen.observer:
            gen._observe({**feeds, names.LOGIT_BIAS: state.bias.numpy()}, self.cache, rows, self.capacity, first_row)
        binding = gen.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_ortvalue_input(names.LOGIT_BIAS, state.bias)
        self.cache.bind(binding, gen.past_names, gen.present_names, rows, self.capacity, first_row=first_row)
        device, index = gen.device
        binding.bind_output(names.LOGITS, device, index, np.float32, [rows, gen.vocab],
                            state.logits.data_ptr() + first_row * gen.vocab * 4)
        binding.bind_output(names.NEXT_TOKEN, device, index, np.int64, [rows], state.next_token.data_ptr() + first_row * 8)
        gen._run(binding, None, prefill=True)

    def graph_choice(self) -> np.ndarray:
        return self.state.next_token.numpy()[:self.batch]

    def logits(self) -> np.ndarray:
        return self.state.logits.numpy()[:self.batch]

    def set_bias(self, bias: np.ndarray) -> None:
        self.bias = bias
        self.state.bias.update_inplace(bias)

    def keep(self, rows: np.ndarray) -> None:
        """Only `rows` (ascending) run from now on: their cache rows move to the front on the device and the
        steps run on the smaller batch (with CUDA graphs: the smallest bucket that holds it, its own graph)."""
        gen = self.gen
        self.cache.move_rows([(old, new) for new, old in enumerate(rows.tolist()) if new != old], self.capacity)
        self.batch = len(rows)
        self.rows, self.graph_id = gen._bucket(self.batch) if self.graph_id is not None else (self.batch, None)
        self.state = gen._state(self.rows, self.capacity, self.cache, self.graph_id)
        self.state.bias.update_inplace(self.bias)
        self._step_rows(self.seqlens[rows])

    def _step_rows(self, lengths: np.ndarray) -> None:
        """The host side of a step over self.rows rows: the real rows' lengths, then bucket padding rows at slot 0."""
        self.seqlens = np.zeros(self.rows, dtype=np.int32)
        self.seqlens[:len(lengths)] = lengths
        self.ids = np.full((self.rows, 1), self.gen.pad_id, dtype=np.int64)

    def feed(self, chosen: np.ndarray, live: np.ndarray, step: int) -> None:
        gen, state, batch = self.gen, self.state, self.batch
        self.ids[:batch, 0] = np.where(live, chosen, gen.pad_id)
        self.seqlens[:batch] += live          # a live row's new token goes to the slot after its last one
        state.ids.update_inplace(self.ids)
        state.seqlens.update_inplace(self.seqlens)
        state.total.update_inplace(np.array([self.seqlens.max() + 1], dtype=np.int32))
        if gen.observer:
            gen._observe({names.INPUT_IDS: self.ids.copy(), names.DECODER_AUDIO_EMBEDS: state.audio.numpy(),
                         names.SEQLENS_K: self.seqlens.copy(), names.TOTAL_SEQUENCE_LENGTH: state.total.numpy(),
                         names.LAST_TOKEN_INDEX: state.last.numpy(), names.LOGIT_BIAS: state.bias.numpy()},
                        self.cache, self.rows, self.capacity)
        gen._run(state.binding, self.graph_id)

    def summary(self) -> dict:
        return {"rows": self.rows, "capacity": self.capacity, "cuda_graph": self.graph_id is not None}
