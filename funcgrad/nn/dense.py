"""Dense (fully connected) layer and the MLP helper built from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import initializers
from ._checks import add_bias, expect_keys, expect_positive_int, expect_shape

Initializer = Callable  # init(key, shape, dtype) -> array


def init_dense(
    key,
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    w_init: Initializer | None = None,
    dtype=jnp.float32,
) -> dict:
    """Parameters of ``y = x @ w + b``.

    Args:
        key: a PRNG key.
        in_features: size ``D_in`` of the last axis of ``x``.
        out_features: size ``D_out`` of the last axis of ``y``.
        bias: include ``b``; without it the dict has no ``"b"``.
        w_init: initialiser for ``w`` (default LeCun normal, variance ``1 / D_in``).
        dtype: parameter dtype.

    Returns:
        ``{"w": (D_in, D_out), "b": (D_out,)}``, ``b`` zeros.

    Example:
        >>> import jax
        >>> p = init_dense(jax.random.key(0), 784, 10)
        >>> p["w"].shape, p["b"].shape
        ((784, 10), (10,))
    """
    expect_positive_int("init_dense", "in_features", in_features)
    expect_positive_int("init_dense", "out_features", out_features)
    w_init = initializers.lecun_normal() if w_init is None else w_init
    params = {"w": w_init(key, (in_features, out_features), dtype)}
    if bias:
        params["b"] = jnp.zeros((out_features,), dtype)
    return params


def dense(params: dict, x: jax.Array) -> jax.Array:
    """``y = x @ w + b`` over the last axis.

    Args:
        params: from :func:`init_dense`; ``w`` is ``(D_in, D_out)``, optional ``b`` ``(D_out,)``.
        x: ``(..., D_in)``, any number of leading axes.

    Returns:
        ``(..., D_out)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_dense(jax.random.key(0), 3, 2)
        >>> dense(p, jnp.ones((5, 3))).shape
        (5, 2)
    """
    expect_keys("dense", params, ["w"], "init_dense")
    d_in = np.shape(params["w"])[0]
    expect_shape(
        "dense",
        "x",
        x,
        (Ellipsis, d_in),
        hint="Flatten the feature axes first, e.g. x.reshape(x.shape[0], -1)"
        if np.ndim(x) > 2 and int(np.prod(np.shape(x)[1:])) == d_in
        else "",
    )
    y = jnp.matmul(x, params["w"])
    return add_bias(y, params["b"]) if "b" in params else y


def init_mlp(
    key,
    sizes: Sequence[int],
    *,
    w_init: Initializer | None = None,
    dtype=jnp.float32,
) -> list[dict]:
    """Parameters of an MLP with layer widths ``sizes = [D_in, H_1, ..., D_out]``.

    Args:
        key: a PRNG key (split once per layer).
        sizes: at least two widths; ``len(sizes) - 1`` dense layers.
        w_init: initialiser for every weight (default He normal, suited to ReLU).
        dtype: parameter dtype.

    Returns:
        A list of :func:`init_dense` dicts, layer ``i`` mapping ``sizes[i] -> sizes[i + 1]``.

    Example:
        >>> import jax
        >>> p = init_mlp(jax.random.key(0), [40, 100, 10])
        >>> [layer["w"].shape for layer in p]
        [(40, 100), (100, 10)]
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"init_mlp expected sizes=[D_in, ..., D_out] with at least two widths, got {sizes}."
        )
    w_init = initializers.he_normal() if w_init is None else w_init
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        init_dense(k, d_in, d_out, w_init=w_init, dtype=dtype)
        for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(
    params: Sequence[dict],
    x: jax.Array,
    *,
    activation: Callable = jax.nn.relu,
    final_activation: Callable | None = None,
) -> jax.Array:
    """Dense layers with ``activation`` between them (not after the last, unless given).

    Args:
        params: from :func:`init_mlp`.
        x: ``(..., D_in)``.
        activation: applied after every layer but the last (any ``jax.nn`` function).
        final_activation: applied after the last layer; ``None`` leaves logits.

    Returns:
        ``(..., D_out)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_mlp(jax.random.key(0), [4, 8, 3])
        >>> mlp(p, jnp.ones((2, 4))).shape
        (2, 3)
    """
    if not isinstance(params, (list, tuple)) or not params:
        raise TypeError(
            f"mlp expected params to be the non-empty list returned by init_mlp, got "
            f"{type(params).__name__}."
        )
    for i, layer in enumerate(params):
        x = dense(layer, x)
        if i < len(params) - 1:
            x = activation(x)
    return x if final_activation is None else final_activation(x)
