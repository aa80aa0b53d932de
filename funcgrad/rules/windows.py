"""Windowed-reduction rules: sum / max / min pooling and the select-and-scatter pair.

Per dimension a window reduction reads P = pad(dilate(x, base_dilation), padding) at
positions o * stride + k * window_dilation (k < window size) for each output o.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_vjp

# ----- Sum pooling ------------------------------------------------------------------------


@register_vjp(p.reduce_window_sum_p)
def reduce_window_sum_vjp(
    g, ans, x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation
):
    """ct_x[i] = sum_{o, k : o s + k wd = lo + i bd} g[o]: itself a windowed sum.

    Dilate g by the stride (G[o s] = g[o]); then ct_x[i] = sum_k G[lo + i bd - k wd], i.e. a
    window of the same size and dilation slid with stride bd over G padded by
    (span - 1 - lo) in front, where span = (K - 1) wd + 1 is the window's extent.
    """
    del ans
    shape = np.shape(x)
    if np.size(x) == 0 or g.size == 0:
        return (jnp.zeros(shape, g.dtype),)
    config = []
    for n, out, k, s, (lo, _), bd, wd in zip(
        shape,
        g.shape,
        window_dimensions,
        window_strides,
        padding,
        base_dilation,
        window_dilation,
        strict=True,
    ):
        span = (k - 1) * wd + 1
        config.append((span - 1 - lo, (n - 1) * bd + lo - (out - 1) * s, s - 1))
    spread = lax.pad(g, jnp.zeros((), g.dtype), config)
    ct = p.reduce_window_sum_p.bind(
        spread,
        window_dimensions=tuple(window_dimensions),
        window_strides=tuple(base_dilation),
        padding=((0, 0),) * len(shape),
        base_dilation=(1,) * len(shape),
        window_dilation=tuple(window_dilation),
    )
    return (ct,)


# ----- Max / min pooling ------------------------------------------------------------------


def _scatter_to_selected(
    g, x, select_prim, window_dimensions, window_strides, padding, base_dilation, window_dilation
):
    """Add each g[o] to the element its window selects (the first max / min, as XLA does).

    ``select_and_scatter_add`` takes non-negative padding and no dilation, so base dilation
    and negative (cropping) padding are applied to x first, with the reduction's identity,
    and transposed back afterwards (pad by the negated amounts, then stride by bd).
    """
    shape = np.shape(x)
    if any(d != 1 for d in window_dilation):
        raise NotImplementedError(
            f"funcgrad has no VJP for max/min pooling with window_dilation={window_dilation} "
            "(XLA's select_and_scatter_add has no window dilation; jax.vjp raises too)."
        )
    if np.size(x) == 0 or g.size == 0:
        return jnp.zeros(shape, g.dtype)
    crop = [
        (min(lo, 0), min(hi, 0), bd - 1)
        for (lo, hi), bd in zip(padding, base_dilation, strict=True)
    ]
    reshaped = any(c != (0, 0, 0) for c in crop)
    if reshaped:
        identity = -jnp.inf if select_prim is p.ge_p else jnp.inf
        x = lax.pad(x, jnp.asarray(identity, x.dtype), crop)
    ct = p.select_and_scatter_add_p.bind(
        g,
        x,
        select_prim=select_prim,
        window_dimensions=tuple(window_dimensions),
        window_strides=tuple(window_strides),
        padding=tuple((max(lo, 0), max(hi, 0)) for lo, hi in padding),
    )
    if reshaped:
        uncrop = [(-lo, -hi, 0) for lo, hi, _ in crop]
        ct = lax.pad(ct, jnp.zeros((), ct.dtype), uncrop)
        ct = lax.slice(ct, (0,) * len(shape), ct.shape, tuple(base_dilation))
    return ct


@register_vjp(p.reduce_window_max_p)
def reduce_window_max_vjp(
    g, ans, x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation
):
    """g flows to the maximal element of each window; on ties, to the first (like jax.vjp)."""
    del ans
    window = (window_dimensions, window_strides, padding, base_dilation, window_dilation)
    return (_scatter_to_selected(g, x, p.ge_p, *window),)


@register_vjp(p.reduce_window_min_p)
def reduce_window_min_vjp(
    g, ans, x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation
):
    del ans
    window = (window_dimensions, window_strides, padding, base_dilation, window_dilation)
    return (_scatter_to_selected(g, x, p.le_p, *window),)


# ----- The select-and-scatter pair (the max-pooling backward pass and its transpose) ------


@register_vjp(p.select_and_scatter_add_p)
def select_and_scatter_add_vjp(
    g, ans, source, operand, *, select_prim, window_dimensions, window_strides, padding
):
    """Linear in source: each window reads g back at the element it selected (a gather).

    The selection is piecewise constant in ``operand``, which gets no cotangent.
    """
    del ans, source
    ct = p.select_and_gather_add_p.bind(
        g,
        operand,
        select_prim=select_prim,
        window_dimensions=tuple(window_dimensions),
        window_strides=tuple(window_strides),
        padding=tuple(padding),
        base_dilation=(1,) * len(window_dimensions),
        window_dilation=(1,) * len(window_dimensions),
    )
    return (ct, None)


@register_vjp(p.select_and_gather_add_p)
def select_and_gather_add_vjp(
    g,
    ans,
    tangents,
    operand,
    *,
    select_prim,
    window_dimensions,
    window_strides,
    padding,
    base_dilation,
    window_dilation,
):
    """Linear in tangents: scatter g back to the selected element of each window."""
    del ans, tangents
    window = (window_dimensions, window_strides, padding, base_dilation, window_dilation)
    return (_scatter_to_selected(g, operand, select_prim, *window), None)
