"""GRU cell (PyTorch's equations) and a GRU over a sequence with ``lax.scan``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import initializers
from ._checks import add_bias, expect_keys, expect_positive_int, expect_shape


def init_gru_cell(key, input_size: int, hidden_size: int, *, dtype=jnp.float32) -> dict:
    """Parameters of a GRU cell with input width ``I`` and hidden width ``H``.

    The three gates (reset ``r``, update ``z``, candidate ``n``) are stacked along the last
    axis in that order.

    Returns:
        ``{"input": {"w": (I, 3H), "b": (3H,)}, "hidden": {"w": (H, 3H), "b": (3H,)}}``;
        input weights Glorot uniform, recurrent weights orthogonal per gate, biases zero.

    Example:
        >>> import jax
        >>> p = init_gru_cell(jax.random.key(0), 1, 6)
        >>> p["input"]["w"].shape, p["hidden"]["w"].shape
        ((1, 18), (6, 18))
    """
    expect_positive_int("init_gru_cell", "input_size", input_size)
    expect_positive_int("init_gru_cell", "hidden_size", hidden_size)
    k_in, k_h = jax.random.split(key)
    w_h = jnp.concatenate(
        [
            initializers.orthogonal()(k, (hidden_size, hidden_size), dtype)
            for k in jax.random.split(k_h, 3)
        ],
        axis=1,
    )
    return {
        "input": {
            "w": initializers.glorot_uniform()(k_in, (input_size, 3 * hidden_size), dtype),
            "b": jnp.zeros((3 * hidden_size,), dtype),
        },
        "hidden": {"w": w_h, "b": jnp.zeros((3 * hidden_size,), dtype)},
    }


def _gates(params, h, x_proj):
    """One step given the precomputed input projection ``x_proj = x w_i + b_i``, ``(..., 3H)``."""
    h_proj = add_bias(h @ params["hidden"]["w"], params["hidden"]["b"])
    xr, xz, xn = jnp.split(x_proj, 3, axis=-1)
    hr, hz, hn = jnp.split(h_proj, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


def _check(layer, params):
    expect_keys(layer, params, ["input", "hidden"], "init_gru_cell / init_gru")
    i, h3 = np.shape(params["input"]["w"])
    return i, h3 // 3


def gru_cell(params: dict, h: jax.Array, x: jax.Array) -> jax.Array:
    """One GRU step.

    ``r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)``, ``z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)``,
    ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``, ``h' = (1 - z) * n + z * h``.

    Args:
        params: from :func:`init_gru_cell`.
        h: ``(..., H)``, the previous hidden state.
        x: ``(..., I)``, the input, with the same leading axes as ``h``.

    Returns:
        ``h'``: ``(..., H)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_gru_cell(jax.random.key(0), 3, 5)
        >>> gru_cell(p, jnp.zeros((2, 5)), jnp.ones((2, 3))).shape
        (2, 5)
    """
    i, hidden = _check("gru_cell", params)
    expect_shape("gru_cell", "x", x, (Ellipsis, i))
    expect_shape(
        "gru_cell",
        "h",
        h,
        (*np.shape(x)[:-1], hidden),
        hint="h needs x's leading axes and the hidden width",
    )
    return _gates(params, h, add_bias(x @ params["input"]["w"], params["input"]["b"]))


init_gru = init_gru_cell


def gru(params: dict, xs: jax.Array, h0: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Run a GRU cell over a batch of sequences with ``lax.scan`` (batch first).

    The input projection of every time step is one matrix product before the scan; the scan
    carries only the recurrent part.

    Args:
        params: from :func:`init_gru` (the same as :func:`init_gru_cell`).
        xs: ``(N, T, I)``.
        h0: ``(N, H)`` initial state; default zeros.

    Returns:
        ``(hs, h_T)``: every hidden state ``(N, T, H)`` and the last one ``(N, H)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_gru(jax.random.key(0), 1, 6)
        >>> hs, h_last = gru(p, jnp.ones((4, 40, 1)))
        >>> hs.shape, h_last.shape
        ((4, 40, 6), (4, 6))
    """
    i, hidden = _check("gru", params)
    expect_shape(
        "gru",
        "xs",
        xs,
        (None, None, i),
        hint="Sequences are batch first (N, T, I); add a feature axis with xs[..., None]",
    )
    n = np.shape(xs)[0]
    if h0 is None:
        h0 = jnp.zeros((n, hidden), jnp.result_type(xs, params["hidden"]["w"]))
    expect_shape("gru", "h0", h0, (n, hidden))
    x_proj = add_bias(xs @ params["input"]["w"], params["input"]["b"])  # (N, T, 3H)

    def step(h, xp):
        h = _gates(params, h, xp)
        return h, h

    h_last, hs = lax.scan(step, h0, jnp.swapaxes(x_proj, 0, 1))
    return jnp.swapaxes(hs, 0, 1), h_last
