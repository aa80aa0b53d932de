"""Cumulative rules: cumsum, cumprod, cummax/cummin and cumlogsumexp along one axis.

Each cotangent is a sum over the outputs at or after a position (before it when the scan is
reversed).  Apart from cumsum, the terms of that sum are weighted by products along the
axis, so the rules run a first-order linear recurrence u[j] = b[j] + a[j] * u[j + 1]
backwards with ``lax.associative_scan``: exact with zeros, no division, no overflow.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_vjp

# ----- Helpers ----------------------------------------------------------------------------


def _previous(v, axis, reverse, fill):
    """v one step along the scan: out[j] = v[j - 1] (v[j + 1] if reverse), ``fill`` at the start."""
    config = [(0, 0, 0)] * v.ndim
    config[axis] = (-1, 1, 0) if reverse else (1, -1, 0)
    return lax.pad(v, jnp.asarray(fill, v.dtype), config)


def _affine_combine(earlier, later):
    """Compose u -> b1 + a1 u (applied first) with u -> b2 + a2 u."""
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, b2 + a2 * b1


def _linear_recurrence(a, b, axis, reverse):
    """u[j] = b[j] + a[j] * u[prev(j)] along ``axis``, where prev is j - 1 (j + 1 if reverse)."""
    _, u = lax.associative_scan(_affine_combine, (a, b), reverse=reverse, axis=axis)
    return u


def _empty_ct(x):
    return jnp.zeros(x.shape, x.dtype)


# ----- Rules ------------------------------------------------------------------------------


@register_vjp(p.cumsum_p)
def cumsum_vjp(g, ans, x, *, axis, reverse):
    """The transpose of a running sum is the running sum in the other direction."""
    del ans, x
    return (lax.cumsum(g, axis=axis, reverse=not reverse),)


@register_vjp(p.cumprod_p)
def cumprod_vjp(g, ans, x, *, axis, reverse):
    """ct[j] = prod_{k<j} x[k] * u[j], with u[j] = g[j] + x[j+1] u[j+1] (mirrored if reverse).

    The exclusive product is ``ans`` shifted by one, so no element is ever divided out.
    """
    if x.size == 0:
        return (_empty_ct(x),)
    before = _previous(ans, axis, reverse, 1)
    after = _previous(x, axis, not reverse, 0)
    return (before * _linear_recurrence(after, g, axis, not reverse),)


@register_vjp(p.cumlogsumexp_p)
def cumlogsumexp_vjp(g, ans, x, *, axis, reverse):
    """ct[j] = sum_{i>=j} g[i] exp(x[j] - ans[i]) = exp(x[j] - ans[j]) u[j], with
    u[j] = g[j] + exp(ans[j] - ans[j+1]) u[j+1]; every exponent is <= 0 since ans is monotone.

    The first output is the first input itself, so its factor is 1 even where both are -inf
    (a masked prefix: cumlogsumexp([-inf, 1, 2]) has the gradient [1, ...] in JAX, not NaN).
    """
    if x.size == 0:
        return (_empty_ct(x),)
    decay = jnp.exp(ans - _previous(ans, axis, not reverse, jnp.inf))
    factor = jnp.where(_is_first(x, axis, reverse), jnp.ones((), x.dtype), jnp.exp(x - ans))
    return (factor * _linear_recurrence(decay, g, axis, not reverse),)


def _is_first(x, axis, reverse):
    """Whether each position is the first one along ``axis`` in the scan's direction."""
    start = x.shape[axis] - 1 if reverse else 0
    return lax.broadcasted_iota(jnp.int32, x.shape, axis) == start


def _cum_extremum_vjp(g, ans, x, axis, reverse):
    """Cotangent of cummax/cummin: each g[i] goes to the positions j <= i with x[j] == ans[i].

    Outputs split into runs of equal ``ans``; only positions inside the run of i can attain
    ans[i], and they are the ``hit`` positions (x[j] == ans[j]).  Tied positions share g[i]
    equally (jax.vjp also splits a two-way tie in half; for three or more its split follows
    the tree of its associative scan).  count[i] = hits so far in i's run; then
    ct[j] = hit[j] * sum_{i >= j in j's run} g[i] / count[i].

    Non-finite values as in JAX, whose rule multiplies g by 0, 1/2 or 1 at each node of its
    scan: the first output is the first input itself, so that input takes g[0] even when it
    is NaN; and a non-finite g[i] reaches every earlier position, as NaN where it was not
    selected (0 * nan), instead of a silent 0.
    """
    if x.size == 0:
        return (_empty_ct(x),)
    hit = (x == ans) | _is_first(x, axis, reverse)
    same_as_prev = ans == _previous(ans, axis, reverse, jnp.nan)  # False at each run start
    same_as_next = ans == _previous(ans, axis, not reverse, jnp.nan)
    # Hits so far in the run: running count minus the count before the run started (the
    # running count is monotone, so a running max carries each run's offset forward).
    seen = lax.cumsum(hit.astype(jnp.int32), axis=axis, reverse=reverse)
    offset = jnp.where(same_as_prev, 0, seen - hit.astype(jnp.int32))
    count = seen - lax.cummax(offset, axis=axis, reverse=reverse)
    share = g / jnp.maximum(count, 1).astype(g.dtype)
    within = _linear_recurrence(same_as_next.astype(g.dtype), share, axis, not reverse)
    ct = jnp.where(hit, within, jnp.zeros((), g.dtype))
    later_bad = lax.cummax((~jnp.isfinite(g)).astype(jnp.int32), axis=axis, reverse=not reverse)
    return (jnp.where((later_bad > 0) & jnp.isfinite(ct), jnp.asarray(jnp.nan, g.dtype), ct),)


@register_vjp(p.cummax_p)
def cummax_vjp(g, ans, x, *, axis, reverse):
    return _cum_extremum_vjp(g, ans, x, axis, reverse)


@register_vjp(p.cummin_p)
def cummin_vjp(g, ans, x, *, axis, reverse):
    return _cum_extremum_vjp(g, ans, x, axis, reverse)
