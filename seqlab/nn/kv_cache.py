"""A preallocated key/value cache: Transformer decoding one token at a time (RNN mode).

Per layer, keys and values live in buffers allocated once. Token ``p`` writes its key and
value at position ``p`` in place, so a step never concatenates and never copies the cache.
Attention reads the whole buffer with an additive mask (0 at the filled positions, -1e9
elsewhere, as the seed's causal mask): reading only the filled prefix would need a slice, and
slicing the buffer along its position axis copies it, and a half-buffer slice plus matmul was
slower than the full masked read. A caller that knows how many
tokens it will decode sizes the cache to fit, so the masked tail is short.

Layouts, chosen by measurement (one thread, 4 heads of 64, 32k positions, per layer; the
figures are in ``benchmarks/RESULTS.md``, "Generation: RWKV-7's state against a Transformer's KV
cache"):

* keys ``[B, H, D, capacity]`` (transposed), so ``q K^T`` is a plain matmul, faster than
  ``matmul(q, K, transpose_y=True)`` on ``[B, H, capacity, D]``;
* values ``[B, H, capacity, D]``: ``softmax(.) V`` as is (the transposed layout was slower);
* mask ``[B, H, 1, capacity]``, the shape of the scores: Paddle's CPU add broadcasts a
  ``[1, 1, 1, capacity]`` mask far more slowly than it adds a same-shape one.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F

MASKED = -1e9  # additive score of an empty position (the seed's causal-mask value)


class KVCache:
    """Keys and values of every layer for up to ``capacity`` positions, filled in place.

    Args:
        n_layer: Layers (one key and one value buffer each).
        batch_size: Sequences decoded together (they share positions).
        n_head: Attention heads H.
        head_dim: Channels per head D.
        capacity: Positions allocated now.
        max_capacity: Positions it may grow to when full (doubling, so growth costs O(1) per
            token amortised); None for no limit. A model with a position table passes its size.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        capacity: int,
        max_capacity: int | None = None,
        dtype: str = "float32",
    ):
        if capacity < 1:
            raise ValueError(f"KVCache capacity must be at least 1, got {capacity}")
        self.n_layer, self.batch_size, self.n_head, self.head_dim = n_layer, batch_size, n_head, head_dim
        self.max_capacity = max_capacity
        self.dtype = dtype
        self.length = 0  # positions filled so far; the next token goes to index `length`
        B, H, D = batch_size, n_head, head_dim
        self.keys = [paddle.zeros([B, H, D, capacity], dtype=dtype) for _ in range(n_layer)]
        self.values = [paddle.zeros([B, H, capacity, D], dtype=dtype) for _ in range(n_layer)]
        self.mask = paddle.full([B, H, 1, capacity], MASKED, dtype=dtype)

    @property
    def capacity(self) -> int:
        return self.values[0].shape[2]

    def next_position(self) -> int:
        """Open the next position for this step's token (growing if full) and return it."""
        p = self.length
        if p >= self.capacity:
            limit = self.max_capacity
            if limit is not None and p >= limit:
                raise ValueError(f"KVCache is full: {limit} positions")
            self._grow(min(2 * self.capacity, limit) if limit is not None else 2 * self.capacity)
        self.mask[:, :, :, p] = 0.0
        self.length = p + 1
        return p

    def _grow(self, capacity: int) -> None:
        B, H, D, more = self.batch_size, self.n_head, self.head_dim, capacity - self.capacity

        # One copy per doubling, not per token.
        def extend(t, shape, axis, value=0.0):
            return paddle.concat([t, paddle.full(shape, value, self.dtype)], axis=axis)

        self.keys = [extend(k, [B, H, D, more], 3) for k in self.keys]
        self.values = [extend(v, [B, H, more, D], 2) for v in self.values]
        self.mask = extend(self.mask, [B, H, 1, more], 3, MASKED)

    def write(self, layer: int, position: int, k, v) -> None:
        """Store one token's ``k``, ``v`` (``[B, 1, H, D]``) at ``position`` of ``layer``."""
        B, H, D = self.batch_size, self.n_head, self.head_dim
        self.keys[layer][:, :, :, position : position + 1] = k.reshape([B, H, D, 1])
        # With one token, [B, 1, H, D] and [B, H, 1, D] have the same memory order: a reshape.
        self.values[layer][:, :, position : position + 1] = v.reshape([B, H, 1, D])

    def attend(self, layer: int, q):
        """``softmax(q K^T / sqrt(D) + mask) V`` over the cache; ``q`` ``[B, 1, H, D]`` -> ``[B, 1, H*D]``."""
        B, H, D = self.batch_size, self.n_head, self.head_dim
        q = q.reshape([B, H, 1, D])
        scores = paddle.matmul(q * (D**-0.5), self.keys[layer]) + self.mask  # [B, H, 1, capacity]
        y = paddle.matmul(F.softmax(scores, axis=-1), self.values[layer])  # [B, H, 1, D]
        return y.reshape([B, 1, H * D])

    def floats_per_sequence(self) -> int:
        """Floats of keys and values one sequence holds (not the mask: bookkeeping, 1/(2D) of
        a layer's keys and values, and the same for every layer)."""
        return 2 * self.n_layer * self.n_head * self.capacity * self.head_dim

    def nbytes(self) -> int:
        """Bytes of every buffer, mask included."""
        tensors = self.keys + self.values + [self.mask]
        return sum(int(t.numel()) * t.element_size() for t in tensors)
