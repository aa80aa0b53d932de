"""Embedding lookup and dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import initializers
from ._checks import expect_int, expect_keys, expect_positive_int


def init_embedding(
    key, num_embeddings: int, features: int, *, init=None, dtype=jnp.float32
) -> dict:
    """An embedding table of ``V`` rows of width ``D``.

    Args:
        key: a PRNG key.
        num_embeddings: vocabulary size ``V``.
        features: embedding width ``D``.
        init: table initialiser (default normal with standard deviation 1, as PyTorch).

    Returns:
        ``{"table": (V, D)}``.

    Example:
        >>> import jax
        >>> init_embedding(jax.random.key(0), 100, 16)["table"].shape
        (100, 16)
    """
    expect_positive_int("init_embedding", "num_embeddings", num_embeddings)
    expect_positive_int("init_embedding", "features", features)
    init = initializers.normal(stddev=1.0) if init is None else init
    return {"table": init(key, (num_embeddings, features), dtype)}


def embedding(params: dict, ids: jax.Array) -> jax.Array:
    """Rows of the table: ``table[ids]``.

    Args:
        params: from :func:`init_embedding`, ``table`` ``(V, D)``.
        ids: integer array of any shape ``(...)`` with values in ``[0, V)``. Concrete
            (non-traced) ids are range-checked; under ``jit`` out-of-range ids are clamped.

    Returns:
        ``(..., D)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_embedding(jax.random.key(0), 10, 4)
        >>> embedding(p, jnp.array([[1, 2, 3]])).shape
        (1, 3, 4)
    """
    expect_keys("embedding", params, ["table"], "init_embedding")
    expect_int("embedding", "ids", ids)
    vocab = np.shape(params["table"])[0]
    if not isinstance(ids, jax.core.Tracer) and np.size(ids):
        concrete = np.asarray(ids)
        lo, hi = int(concrete.min()), int(concrete.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(
                f"embedding expected ids in [0, {vocab}) for a table of {vocab} rows, got "
                f"values in [{lo}, {hi}]. Check the tokeniser's vocabulary size."
            )
    return jnp.take(params["table"], ids, axis=0, mode="clip")


def dropout(key, x: jax.Array, rate: float, *, training: bool) -> jax.Array:
    """Zero each element with probability ``rate`` and scale the rest by ``1 / (1 - rate)``.

    Off (the identity) when ``training`` is false, so evaluation needs no key.

    Args:
        key: a PRNG key (may be ``None`` when ``training`` is false). Use a fresh key per step
            and per layer (``jax.random.split``); the same key drops the same elements.
        x: any shape.
        rate: drop probability in ``[0, 1)``.
        training: apply dropout (True) or return ``x`` unchanged (False).

    Returns:
        An array shaped like ``x``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y = dropout(jax.random.key(0), jnp.ones(1000), 0.5, training=True)
        >>> sorted(set(y.tolist()))
        [0.0, 2.0]
    """
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"dropout expected rate in [0, 1), got {rate!r}.")
    if not training or rate == 0.0:
        return x
    if key is None:
        raise ValueError(
            "dropout with training=True needs a PRNG key, got key=None. Pass a fresh key "
            "(jax.random.split) each step, or training=False at evaluation."
        )
    keep = jax.random.bernoulli(key, 1.0 - rate, np.shape(x))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
