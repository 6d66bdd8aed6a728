"""The fused decoder's KV cache: ONNX Runtime buffers on the session's device, written in place by the graph.

One flat OrtValue per layer and kind (keys, values), allocated once at the largest batch x capacity
asked so far (or reserved up front) and bound by address as [batch, kv_heads, capacity, head_dim]
to both `past_key_values.{i}.*` and `present.{i}.*`: GroupQueryAttention then writes each step's keys
and values into it at each row's own offset, on the device, and nothing is copied. Batch is the
outermost axis, so the first b rows of a larger view are the b-row view: a prefill of the real rows
and a decode step of a padded batch bucket see the same memory.

`fixed=True` (CUDA graphs) never reallocates: captured graphs keep these addresses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qasr.errors import QasrError

# One Identity from a 1-D input to a 1-D output per float type (scripts/make_copy_graphs.py): bound to two
# addresses inside the cache it moves a row on the session's device (the Python API copies whole tensors only).
COPY_GRAPHS = Path(__file__).parent / "data"


class DeviceKVCache:
    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: np.dtype, device: tuple[str, int]):
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.dtype = np.dtype(dtype)
        self.device = device
        self.fixed = False
        self._flat: list = []     # OrtValues: [key_0, value_0, key_1, ...]
        self.allocations = 0
        self._copier = None

    @property
    def slots(self) -> int:
        return self._flat[0].shape()[0] // (self.kv_heads * self.head_dim) if self._flat else 0

    def reserve(self, batch: int, capacity: int, fixed: bool = False) -> None:
        import onnxruntime as ort

        need = batch * capacity
        if need <= self.slots:
            self.fixed = self.fixed or fixed
            return
        if self.fixed:
            raise QasrError(f"the fixed KV cache holds {self.slots} slots; this call needs {need}")
        size = need * self.kv_heads * self.head_dim
        self._flat = []   # free the old buffers before asking for new ones
        self._flat = [ort.OrtValue.ortvalue_from_shape_and_type([size], self.dtype, *self.device)
                      for _ in range(2 * self.layers)]
        self.allocations += 1
        self.fixed = fixed

    def bind(self, binding, past_names: list[str], present_names: list[str], batch: int, capacity: int,
             first_row: int = 0) -> None:
        """Bind the [batch, kv_heads, capacity, head_dim] view (rows first_row.. of a [*, ..., capacity, ...]
        layout) as each layer's past and present (one buffer)."""
        self.reserve(first_row + batch, capacity)
        shape = [batch, self.kv_heads, capacity, self.head_dim]
        offset = first_row * self.kv_heads * capacity * self.head_dim * self.dtype.itemsize
        for flat, past, present in zip(self._flat, past_names, present_names):
            binding.bind_input(past, self.device[0], self.device[1], self.dtype, shape, flat.data_ptr() + offset)
            binding.bind_output(present, self.device[0], self.device[1], self.dtype, shape, flat.data_ptr() + offset)

    def move_rows(self, moves: list[tuple[int, int]], capacity: int) -> None:
        """Copy whole rows of the [*, kv_heads, capacity, head_dim] layout on the device: (from, to) pairs, each
        `to` below its `from` and the pairs in ascending order, so no row is overwritten before it has moved."""
        if not moves:
            return
        copier = self._copier or self._make_copier()
        binding = copier.io_binding()
        row = self.kv_heads * capacity * self.head_dim
        size = self.dtype.itemsize
        kind, index = self.device
        for source, target in moves:
            for flat in self._flat:
                binding.bind_input("x", kind, index, self.dtype, [row], flat.data_ptr() + source * row * size)
                binding.bind_output("y", kind, index, self.dtype, [row], flat.data_ptr() + target * row * size)
                copier.run_with_iobinding(binding)
        if kind != "cpu":
            binding.synchronize_outputs()

    def _make_copier(self):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if self.device[0] == "cuda":
            providers = [("CUDAExecutionProvider", {"device_id": str(self.device[1])})] + providers
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        name = {np.dtype(np.float32): "copy_float32.onnx", np.dtype(np.float16): "copy_float16.onnx"}[self.dtype]
        self._copier = ort.InferenceSession(str(COPY_GRAPHS / name), options, providers=providers)
        return self._copier

    def read(self, index: int, batch: int, capacity: int, first_row: int = 0) -> np.ndarray:
        """A host copy of buffer `index` ([key_0, value_0, ...]) as [batch, kv_heads, capacity, head_dim] (tests, calibration)."""
        row = self.kv_heads * capacity * self.head_dim
        flat = self._flat[index].numpy()[first_row * row: (first_row + batch) * row]
        return flat.reshape(batch, self.kv_heads, capacity, self.head_dim)

    def host_view(self, index: int, batch: int, capacity: int, first_row: int = 0) -> np.ndarray:
        """Buffer `index` as a writable numpy view [batch, kv_heads, capacity, head_dim] (a CPU cache only)."""
        import ctypes

        if self.device[0] != "cpu":
            raise QasrError("a device cache on CUDA has no host view")
        flat = self._flat[index]
        count = self.slots * self.kv_heads * self.head_dim
        cells = ({4: ctypes.c_float, 2: ctypes.c_uint16}[self.dtype.itemsize] * count).from_address(flat.data_ptr())
        row = self.kv_heads * capacity * self.head_dim
        array = np.frombuffer(cells, dtype=self.dtype)[first_row * row: (first_row + batch) * row]
        return array.reshape(batch, self.kv_heads, capacity, self.head_dim)

    def nbytes(self) -> int:
        return sum(flat.tensor_size_in_bytes() for flat in self._flat)
