"""Mini-batches in a reproducible order: epoch ``e`` is a permutation seeded by ``(seed, e)``.

The batch of global step ``s`` depends only on ``(seed, s)``, so a run resumed at step ``s``
sees exactly the batches the interrupted run would have seen.
"""

from __future__ import annotations

import jax
import numpy as np


def dataset_size(data, what: str) -> int:
    """The common leading size of every leaf of ``data``; a clear error if they differ."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError(f"{what} is empty: pass a pytree of arrays such as {{'x': x, 'y': y}}.")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        shapes = [tuple(np.shape(leaf)) for leaf in leaves]
        raise ValueError(
            f"{what} leaves must share their first (example) axis, got shapes {shapes}."
        )
    return sizes.pop()


class BatchOrder:
    """Which examples form the batch of each global step."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True):
        if batch_size < 1 or batch_size > size:
            raise ValueError(
                f"batch_size must be between 1 and the number of training examples ({size}), "
                f"got {batch_size}."
            )
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.steps_per_epoch = size // batch_size  # the remainder of each epoch is dropped
        self._epoch, self._perm = None, None

    def indices(self, step: int) -> np.ndarray:
        """Example indices of the batch at 0-based global ``step``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = (
                np.random.default_rng([self.seed, epoch]).permutation(self.size)
                if self.shuffle
                else np.arange(self.size)
            )
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]

    def position(self, step: int) -> dict:
        epoch, i = divmod(step, self.steps_per_epoch)
        return {"epoch": epoch, "batch_in_epoch": i}


def take(data, idx):
    """The examples ``idx`` of every leaf."""
    return jax.tree.map(lambda a: a[idx], data)


def eval_batches(data, batch_size: int):
    """Consecutive slices covering ``data`` once (the last one may be smaller)."""
    n = dataset_size(data, "eval_data")
    for start in range(0, n, batch_size):
        yield (
            jax.tree.map(lambda a, s=start: a[s : s + batch_size], data),
            min(batch_size, n - start),
        )
