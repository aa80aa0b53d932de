"""Max and average pooling over the spatial axes of a channels-last batch ``(N, *spatial, C)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import expect_float, tuple_of
from .conv import resolve_padding as _padding


def _window_args(layer, x, window, stride, padding):
    expect_float(layer, "x", x)
    n = np.ndim(x) - 2
    if n < 1:
        raise ValueError(
            f"{layer} expected x of shape (N, *spatial, C) with at least one spatial axis, "
            f"got {tuple(np.shape(x))}. Add a channel axis with x[..., None]."
        )
    win = tuple_of(layer, "window", window, n)
    strides = win if stride is None else tuple_of(layer, "stride", stride, n)
    pads = _padding(layer, padding, n)
    if not isinstance(pads, str):
        pads = ((0, 0), *pads, (0, 0))
    return (1, *win, 1), (1, *strides, 1), pads


def max_pool(x: jax.Array, window, *, stride=None, padding="VALID") -> jax.Array:
    """Maximum over each window.

    Args:
        x: ``(N, *spatial, C)``, e.g. ``(N, L, C)`` or ``(N, H, W, C)``.
        window: an int (every spatial axis) or one int per spatial axis.
        stride: as ``window``; default ``window`` (non-overlapping).
        padding: ``'VALID'``, ``'SAME'``, an int, or ``(lo, hi)`` pairs; padded cells are
            ``-inf`` and never win.

    Returns:
        ``(N, *spatial_out, C)``.

    Example:
        >>> import jax.numpy as jnp
        >>> max_pool(jnp.arange(8.0).reshape(1, 8, 1), 2)[0, :, 0]
        Array([1., 3., 5., 7.], dtype=float32)
    """
    dims, strides, pads = _window_args("max_pool", x, window, stride, padding)
    # A Python scalar init value lets JAX emit the reduce_window_max primitive.
    return lax.reduce_window(x, -np.inf, lax.max, dims, strides, pads)


def avg_pool(x: jax.Array, window, *, stride=None, padding="VALID") -> jax.Array:
    """Mean over each window; with padding, the mean is over the real (unpadded) cells only.

    Args:
        x: ``(N, *spatial, C)``.
        window: an int or one int per spatial axis.
        stride: as ``window``; default ``window``.
        padding: ``'VALID'``, ``'SAME'``, an int, or ``(lo, hi)`` pairs.

    Returns:
        ``(N, *spatial_out, C)``.

    Example:
        >>> import jax.numpy as jnp
        >>> avg_pool(jnp.arange(8.0).reshape(1, 8, 1), 4)[0, :, 0]
        Array([1.5, 5.5], dtype=float32)
    """
    dims, strides, pads = _window_args("avg_pool", x, window, stride, padding)
    total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
    ones = jnp.ones((1, *np.shape(x)[1:-1], 1), jnp.result_type(x))
    count = lax.reduce_window(ones, 0.0, lax.add, dims, strides, pads)
    return total / count
