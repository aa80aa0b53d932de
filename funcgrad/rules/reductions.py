"""Reduction rules: sum, max/min, prod over a set of axes, and lax.reduce with a simple monoid.

Every cotangent is the output cotangent broadcast back over the reduced axes, weighted by the
partial derivative of the reduction with respect to each element.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.extend.core import primitives as p

from .._registry import register_nondiff, register_vjp
from ._util import cast_like, is_float

# ----- Non-differentiable -----------------------------------------------------------------

register_nondiff(p.argmax_p, p.argmin_p, p.reduce_and_p, p.reduce_or_p, p.reduce_xor_p)


# ----- Helpers ----------------------------------------------------------------------------


def _expand(v, shape, axes):
    """Broadcast a reduced value back over the reduced ``axes`` of ``shape``."""
    kept = tuple(d for d in range(len(shape)) if d not in axes)
    return lax.broadcast_in_dim(v, shape, kept)


def _extremum_ct(g, ans, x, axes):
    """Cotangent of max/min: g shared equally among the elements that attain the extremum."""
    shape = np.shape(x)
    hit = (x == _expand(ans, shape, axes)).astype(g.dtype)
    count = jnp.sum(hit, axis=axes)
    share = g / jnp.maximum(count, 1)  # count is 0 only for NaN inputs or a winning init
    return _expand(share, shape, axes) * hit


def _others_along_last(v):
    """others[..., j] = prod_{k != j} v[..., k] by a pairwise product tree, without dividing.

    Going up, neighbours are multiplied in pairs (an odd level gets a trailing 1); going
    down, each child's "others" is its parent's times its sibling. 3n multiplies in all,
    exact when v holds zeros.
    """
    levels = []
    while v.shape[-1] > 1:
        n = v.shape[-1]
        if n % 2:
            v = lax.pad(v, jnp.ones((), v.dtype), [(0, 0, 0)] * (v.ndim - 1) + [(0, 1, 0)])
        levels.append((n, v))
        pairs = v.reshape(v.shape[:-1] + (-1, 2))
        v = pairs[..., 0] * pairs[..., 1]
    others = jnp.ones_like(v)
    for n, v in reversed(levels):
        siblings = lax.rev(v.reshape(v.shape[:-1] + (-1, 2)), (v.ndim,))
        others = (others[..., None] * siblings).reshape(v.shape)[..., :n]
    return others


def _product_of_others(x, axes):
    """prod over ``axes`` of every element but the one at each position."""
    shape = np.shape(x)
    kept = tuple(d for d in range(len(shape)) if d not in axes)
    perm = kept + tuple(axes)
    moved = tuple(shape[d] for d in perm)
    flat = lax.transpose(x, perm).reshape(moved[: len(kept)] + (-1,))
    others = _others_along_last(flat).reshape(moved)
    return lax.transpose(others, tuple(int(i) for i in np.argsort(perm)))


# ----- Rules ------------------------------------------------------------------------------


@register_vjp(p.reduce_sum_p)
def reduce_sum_vjp(g, ans, x, *, axes, out_sharding):
    del ans, out_sharding
    return (_expand(g, np.shape(x), axes),)


@register_vjp(p.reduce_max_p)
def reduce_max_vjp(g, ans, x, *, axes):
    """Ties split g equally among every maximal element, as jax.vjp does."""
    return (_extremum_ct(g, ans, x, axes),)


@register_vjp(p.reduce_min_p)
def reduce_min_vjp(g, ans, x, *, axes):
    return (_extremum_ct(g, ans, x, axes),)


@register_vjp(p.reduce_prod_p)
def reduce_prod_vjp(g, ans, x, *, axes):
    """d prod(x) / dx_j = product of all the other elements (correct when x has zeros)."""
    del ans
    if np.size(x) == 0:
        return (jnp.zeros(np.shape(x), g.dtype),)
    return (_expand(g, np.shape(x), axes) * _product_of_others(x, axes),)


# ----- lax.reduce with a custom computation -----------------------------------------------

_MONOIDS = ("add", "mul", "max", "min")


def _component_monoids(jaxpr):
    """The op of each output if the computation reduces its operands independently.

    lax.reduce's computation takes (acc_1..acc_n, x_1..x_n) and returns n values; it is
    recognised when output i is a single add / mul / max / min of acc_i and x_i (a (sum,
    product) pair, say).  Returns the n op names, or None for any other computation.
    """
    n = len(jaxpr.outvars)
    if len(jaxpr.invars) != 2 * n or len(jaxpr.eqns) != n:
        return None
    names = []
    for i, out in enumerate(jaxpr.outvars):
        eqn = next((e for e in jaxpr.eqns if e.outvars[0] is out), None)
        if eqn is None or eqn.primitive.name not in _MONOIDS or len(eqn.invars) != 2:
            return None
        acc, x = jaxpr.invars[i], jaxpr.invars[n + i]
        a, b = eqn.invars
        if not ((a is acc and b is x) or (a is x and b is acc)):
            return None
        names.append(eqn.primitive.name)
    return names


def _reduce_component_ct(op, g, ans, x, init, dimensions):
    """Cotangents of (x, init) for ``ans = op(init, op over dimensions of x)``."""
    shape = np.shape(x)
    if op == "add":
        return _expand(g, shape, dimensions), cast_like(jnp.sum(g), init)
    if op == "mul":
        init = jnp.asarray(init, g.dtype)
        if np.size(x) == 0:
            return jnp.zeros(shape, g.dtype), cast_like(jnp.sum(g), init)
        ct_x = _expand(g * init, shape, dimensions) * _product_of_others(x, dimensions)
        prod_x = lax.reduce(x, np.array(1, g.dtype), lax.mul, tuple(dimensions))
        return ct_x, cast_like(jnp.sum(g * prod_x), init)
    # max / min: the init competes with the elements for the tie share. The masks are chosen
    # by `where`: JAX reduces by a tree of binary max/min, whose masks keep a NaN cotangent
    # on the values not picked under jit too, where XLA turns `g * convert(mask)` into a
    # select that drops it.
    one, zero = jnp.ones((), g.dtype), jnp.zeros((), g.dtype)
    hit = jnp.where(x == _expand(ans, shape, dimensions), one, zero)
    init_hit = jnp.where(ans == init, one, zero)
    share = g / jnp.maximum(jnp.sum(hit, axis=dimensions) + init_hit, 1)
    return _expand(share, shape, dimensions) * hit, cast_like(jnp.sum(share * init_hit), init)


@register_vjp(p.reduce_p)
def reduce_vjp(g, ans, *operands_and_inits, computation, jaxpr, dimensions):
    """lax.reduce whose computation reduces each operand by its own add / mul / max / min.

    jnp never emits reduce_p for one operand with an identity init (that is reduce_sum
    etc.); it comes from lax.reduce with a non-identity or traced init, a custom function,
    or several operands reduced together.  Each output is read as op(init, reduce(x)), the
    init combined once, as XLA on CPU computes it (XLA leaves a non-identity init
    unspecified; jax.vjp refuses to differentiate it).  Under max and min it competes with
    the elements for the tie share.
    """
    del computation
    ops = _component_monoids(jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr)
    n = len(operands_and_inits) // 2
    if ops is None:
        raise NotImplementedError(
            f"funcgrad differentiates lax.reduce when its computation reduces each of its "
            f"operands by one add, mul, max or min of its own; got {n} operand(s) and the "
            f"computation {jaxpr}. Rewrite it with jnp.sum / jnp.prod / jnp.max / jnp.min per "
            f"operand, or register a rule for reduce_p with funcgrad.register_vjp."
        )
    operands, inits = operands_and_inits[:n], operands_and_inits[n:]
    cts_x, cts_init = [], []
    for op, g_i, ans_i, x, init in zip(ops, g, ans, operands, inits):
        if g_i is None or not is_float(x):
            cts_x.append(None)
            cts_init.append(None)
            continue
        ct_x, ct_init = _reduce_component_ct(op, g_i, ans_i, x, init, dimensions)
        cts_x.append(ct_x)
        cts_init.append(ct_init)
    return (*cts_x, *cts_init)
