"""The runtime's KV cache: flat buffers allocated once, viewed as [batch, kv_heads, capacity, head_dim].

The decoder graph never grows the cache; the runtime writes each step's new keys and values into
these buffers at an offset. A call asks for (batch, capacity); the buffers are allocated at the
largest size asked so far (or preallocated at max_batch x max_len) and reused, so nothing is
allocated per decode step, and the views are contiguous, so ONNX Runtime reads them in place.
"""

from __future__ import annotations

import numpy as np


class KVCache:
    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: np.dtype):
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.dtype = np.dtype(dtype)
        self._flat: list[np.ndarray] = []
        self.allocations = 0

    @property
    def slots(self) -> int:
        """How many (row, position) slots the buffers hold now."""
        return self._flat[0].size // (self.kv_heads * self.head_dim) if self._flat else 0

    def reserve(self, batch: int, capacity: int) -> None:
        need = batch * capacity
        if need <= self.slots:
            return
        size = need * self.kv_heads * self.head_dim
        self._flat = [np.zeros(size, dtype=self.dtype) for _ in range(2 * self.layers)]
        self.allocations += 1

    def views(self, batch: int, capacity: int) -> list[np.ndarray]:
        """[key_0, value_0, key_1, ...] for this call, each [batch, kv_heads, capacity, head_dim]."""
        self.reserve(batch, capacity)
        count = batch * self.kv_heads * capacity * self.head_dim
        shape = (batch, self.kv_heads, capacity, self.head_dim)
        return [flat[:count].reshape(shape) for flat in self._flat]

    def nbytes(self) -> int:
        return sum(flat.nbytes for flat in self._flat)
