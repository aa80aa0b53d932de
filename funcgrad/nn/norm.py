"""Layer norm and batch norm. Batch norm's running statistics are state passed in and returned."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import add_bias, expect_float, expect_keys, expect_positive_int, expect_shape


def init_layer_norm(features: int, *, dtype=jnp.float32) -> dict:
    """Parameters of layer norm over a last axis of size ``D``.

    Returns:
        ``{"scale": ones (D,), "bias": zeros (D,)}``.

    Example:
        >>> init_layer_norm(4)["scale"]
        Array([1., 1., 1., 1.], dtype=float32)
    """
    expect_positive_int("init_layer_norm", "features", features)
    return {"scale": jnp.ones((features,), dtype), "bias": jnp.zeros((features,), dtype)}


def layer_norm(params: dict, x: jax.Array, *, eps: float = 1e-5) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias``, statistics over the last axis.

    Args:
        params: from :func:`init_layer_norm`, ``scale`` and ``bias`` ``(D,)``.
        x: ``(..., D)``.
        eps: added to the variance.

    Returns:
        ``(..., D)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = layer_norm(init_layer_norm(3), jnp.array([[1.0, 2.0, 3.0]]))
        >>> [round(float(v), 3) for v in y[0]]
        [-1.225, 0.0, 1.225]
    """
    expect_keys("layer_norm", params, ["scale", "bias"], "init_layer_norm")
    expect_shape("layer_norm", "x", x, (Ellipsis, np.shape(params["scale"])[0]))
    expect_float("layer_norm", "x", x)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    return add_bias(y * _row(params["scale"], y), params["bias"])


def init_batch_norm(features: int, *, dtype=jnp.float32) -> tuple[dict, dict]:
    """Parameters and running statistics of batch norm over a channel axis of size ``C``.

    Returns:
        ``(params, state)``: ``params = {"scale": ones (C,), "bias": zeros (C,)}`` (trained),
        ``state = {"mean": zeros (C,), "var": ones (C,)}`` (running statistics, not trained).

    Example:
        >>> params, state = init_batch_norm(8)
        >>> sorted(state)
        ['mean', 'var']
    """
    expect_positive_int("init_batch_norm", "features", features)
    params = {"scale": jnp.ones((features,), dtype), "bias": jnp.zeros((features,), dtype)}
    state = {"mean": jnp.zeros((features,), dtype), "var": jnp.ones((features,), dtype)}
    return params, state


def batch_norm(
    params: dict,
    state: dict,
    x: jax.Array,
    *,
    training: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[jax.Array, dict]:
    """Batch norm over every axis but the last; returns the output and the new state.

    In training the batch's own mean and (biased) variance normalise ``x`` and the returned
    state is ``momentum * old + (1 - momentum) * batch`` (the variance term unbiased, as in
    PyTorch); the input ``state`` is never modified. At evaluation the running statistics
    normalise ``x`` and ``state`` is returned unchanged. Gradients do not flow into the state.

    Args:
        params: from :func:`init_batch_norm`, ``scale`` and ``bias`` ``(C,)``.
        state: ``{"mean": (C,), "var": (C,)}``.
        x: ``(N, ..., C)``, e.g. ``(N, C)``, ``(N, L, C)`` or ``(N, H, W, C)``.
        training: use batch statistics and update the state (True) or running ones (False).
        momentum: weight of the old running statistics.
        eps: added to the variance.

    Returns:
        ``(y, new_state)`` with ``y`` shaped like ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> params, state = init_batch_norm(2)
        >>> y, new_state = batch_norm(params, state, jnp.ones((4, 2)), training=True)
        >>> new_state["mean"]
        Array([0.1, 0.1], dtype=float32)
    """
    axes = _check_batch_norm_inputs(params, state, x)
    if training:
        mean, var, new_state = _batch_statistics(state, x, axes, momentum)
    else:
        mean, var, new_state = state["mean"], state["var"], state
    y = (x - _row(mean, x)) * _row(jax.lax.rsqrt(var + eps) * params["scale"], x)
    return add_bias(y, params["bias"]), new_state


def _check_batch_norm_inputs(params, state, x) -> tuple:
    """Validate batch_norm's arguments; return the axes its statistics reduce over."""
    expect_keys("batch_norm", params, ["scale", "bias"], "init_batch_norm")
    expect_keys("batch_norm", state, ["mean", "var"], "init_batch_norm")
    c = np.shape(params["scale"])[0]
    if np.ndim(x) < 2:
        raise ValueError(
            f"batch_norm expected x of shape (N, ..., {c}), got {tuple(np.shape(x))}. "
            f"Add a batch axis with x[None]."
        )
    expect_shape("batch_norm", "x", x, (Ellipsis, c))
    expect_float("batch_norm", "x", x)
    return tuple(range(np.ndim(x) - 1))


def _batch_statistics(state, x, axes, momentum):
    """The batch's mean and biased variance over ``axes``, and the running statistics
    updated with them (the variance term unbiased; no gradient flows into the state)."""
    count = int(np.prod([np.shape(x)[a] for a in axes]))
    if count < 2:
        raise ValueError(
            f"batch_norm in training needs at least 2 values per channel to estimate a "
            f"variance, got x of shape {tuple(np.shape(x))}. Use a larger batch, or "
            f"training=False (running statistics) for single examples."
        )
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - _row(mean, x)), axis=axes)
    batch = jax.lax.stop_gradient((mean, var * count / (count - 1)))
    new_state = {
        "mean": momentum * state["mean"] + (1 - momentum) * batch[0],
        "var": momentum * state["var"] + (1 - momentum) * batch[1],
    }
    return mean, var, new_state


def _row(v, x):
    """A ``(C,)`` vector reshaped to ``(1, ..., 1, C)`` to broadcast against ``x``."""
    return jnp.reshape(v, (1,) * (np.ndim(x) - 1) + (-1,))
