"""Causal multi-head self-attention (decoder style: position t attends to positions <= t)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import initializers
from ._checks import add_bias, expect_keys, expect_positive_int, expect_shape

_PROJECTIONS = ("query", "key", "value")


def init_causal_self_attention(key, features: int, num_heads: int, *, dtype=jnp.float32) -> dict:
    """Parameters of causal multi-head self-attention on width ``D`` with ``H`` heads.

    The head count is carried by the parameter shapes (``D_h = D / H``), so the apply function
    needs no extra argument.

    Args:
        key: a PRNG key.
        features: model width ``D``.
        num_heads: ``H``; must divide ``D``.

    Returns:
        ``{"query" | "key" | "value": {"w": (D, H, D_h), "b": (H, D_h)},
        "out": {"w": (H, D_h, D), "b": (D,)}}``, weights Glorot uniform, biases zero.

    Example:
        >>> import jax
        >>> p = init_causal_self_attention(jax.random.key(0), 32, 4)
        >>> p["query"]["w"].shape, p["out"]["w"].shape
        ((32, 4, 8), (4, 8, 32))
    """
    expect_positive_int("init_causal_self_attention", "features", features)
    expect_positive_int("init_causal_self_attention", "num_heads", num_heads)
    if features % num_heads:
        raise ValueError(
            f"init_causal_self_attention expected num_heads to divide features, got "
            f"features={features}, num_heads={num_heads}. Pick a divisor of {features}."
        )
    dh = features // num_heads
    kq, kk, kv, ko = jax.random.split(key, 4)
    w_in = initializers.glorot_uniform(in_axis=0, out_axis=(1, 2))
    w_out = initializers.glorot_uniform(in_axis=(0, 1), out_axis=2)
    params = {
        name: {
            "w": w_in(k, (features, num_heads, dh), dtype),
            "b": jnp.zeros((num_heads, dh), dtype),
        }
        for name, k in zip(_PROJECTIONS, (kq, kk, kv), strict=True)
    }
    params["out"] = {
        "w": w_out(ko, (num_heads, dh, features), dtype),
        "b": jnp.zeros((features,), dtype),
    }
    return params


def causal_self_attention(params: dict, x: jax.Array) -> jax.Array:
    """``softmax(q k^T / sqrt(D_h) + causal mask) v``, per head, then the output projection.

    Args:
        params: from :func:`init_causal_self_attention`.
        x: ``(..., T, D)``, e.g. ``(N, T, D)``; position ``t`` sees positions ``0..t`` only.

    Returns:
        ``(..., T, D)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_causal_self_attention(jax.random.key(0), 16, 2)
        >>> causal_self_attention(p, jnp.ones((3, 5, 16))).shape
        (3, 5, 16)
    """
    expect_keys(
        "causal_self_attention", params, [*_PROJECTIONS, "out"], "init_causal_self_attention"
    )
    d, h, dh = np.shape(params["query"]["w"])
    expect_shape("causal_self_attention", "x", x, (Ellipsis, None, d))
    q, k, v = (
        add_bias(jnp.einsum("...td,dhe->...the", x, params[n]["w"]), params[n]["b"])
        for n in _PROJECTIONS
    )
    logits = jnp.einsum("...qhe,...khe->...hqk", q, k) / np.sqrt(dh).astype(q.dtype)
    t = np.shape(x)[-2]
    mask = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), logits.shape)
    logits = jnp.where(mask, logits, jnp.full_like(logits, jnp.finfo(logits.dtype).min))
    weights = jax.nn.softmax(logits, axis=-1)
    heads = jnp.einsum("...hqk,...khe->...qhe", weights, v)
    return add_bias(jnp.einsum("...qhe,hed->...qd", heads, params["out"]["w"]), params["out"]["b"])
