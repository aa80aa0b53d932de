"""Structural rules: primitives that move, copy or drop elements without arithmetic.

Every rule here is a linear map's transpose: broadcasting sums, slicing pads, padding slices,
permuting un-permutes.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .. import _jax_compat as compat
from .._registry import register_nondiff, register_vjp
from ._util import cast_like, is_float, sum_axes

# ----- Non-differentiable -----------------------------------------------------------------

register_nondiff(p.iota_p)


# ----- Shape changes ----------------------------------------------------------------------


@register_vjp(p.broadcast_in_dim_p)
def broadcast_in_dim_vjp(g, ans, x, *dyn_shape, shape, broadcast_dimensions, sharding):
    """Sum g over the new dimensions and over operand dimensions of size 1 that were expanded."""
    del ans, sharding
    in_shape = np.shape(x)
    new = [d for d in range(len(shape)) if d not in broadcast_dimensions]
    expanded = [
        d for n, d in zip(in_shape, broadcast_dimensions, strict=True) if n == 1 and shape[d] != 1
    ]
    axes = tuple(sorted(new + expanded))
    ct = sum_axes(g, axes)
    return (cast_like(ct.reshape(in_shape), x), *(None for _ in dyn_shape))


@register_vjp(p.reshape_p)
def reshape_vjp(g, ans, x, *dyn_shape, new_sizes, dimensions, sharding):
    """reshape(transpose(x, dimensions)): reshape g back, then apply the inverse permutation."""
    del ans, new_sizes, sharding
    if dimensions is None:
        return (g.reshape(np.shape(x)), *(None for _ in dyn_shape))
    permuted = tuple(np.shape(x)[d] for d in dimensions)
    ct = lax.transpose(g.reshape(permuted), tuple(np.argsort(dimensions)))
    return (ct, *(None for _ in dyn_shape))


@register_vjp(p.squeeze_p)
def squeeze_vjp(g, ans, x, *, dimensions):
    del ans, dimensions
    return (g.reshape(np.shape(x)),)


@register_vjp(p.transpose_p)
def transpose_vjp(g, ans, x, *, permutation):
    del ans, x
    return (lax.transpose(g, tuple(int(i) for i in np.argsort(permutation))),)


@register_vjp(p.rev_p)
def rev_vjp(g, ans, x, *, dimensions):
    del ans, x
    return (lax.rev(g, dimensions),)


# ----- Joining and cutting ----------------------------------------------------------------


@register_vjp(p.concatenate_p)
def concatenate_vjp(g, ans, *operands, dimension):
    """Each operand gets its own slab of g along ``dimension``."""
    del ans
    cts, start = [], 0
    for x in operands:
        size = np.shape(x)[dimension]
        cts.append(lax.slice_in_dim(g, start, start + size, axis=dimension))
        start += size
    return tuple(cts)


@register_vjp(compat.STACK)
def stack_vjp(g, ans, *operands, axis):
    """``jnp.stack``: operand i is the slice at position i of the new ``axis`` of g."""
    del ans
    return tuple(lax.index_in_dim(g, i, axis, keepdims=False) for i in range(len(operands)))


@register_vjp(compat.UNSTACK)
def unstack_vjp(g, ans, x, *, axis, **params):
    """``jnp.unstack``: output i is the slice at position i of ``axis``; stack the cotangents,
    a zero slice where an output has none."""
    del params
    zero = jnp.zeros(ans[0].shape, x.dtype)
    return (jnp.stack([zero if gi is None else gi for gi in g], axis=axis),)


@register_vjp(compat.TILE)
def tile_vjp(g, ans, x, *, reps):
    """``jnp.tile``: output axis ``i`` is ``reps[i]`` copies of ``x``'s axis ``i``; split each
    into (copy, element) and sum over the copies."""
    del ans
    shape = np.shape(x)
    lead = len(reps) - len(shape)  # tile prepends axes when reps is longer than x.ndim
    full = (1,) * lead + tuple(shape)
    split = [d for r, n in zip(reps, full) for d in (r, n)]
    ct = sum_axes(g.reshape(split), tuple(range(0, 2 * len(reps), 2)))
    return (ct.reshape(shape),)


@register_vjp(compat.SPLIT)
def split_vjp(g, ans, x, *, sizes, axis):
    """Concatenate the pieces' cotangents; a piece with none contributes zeros."""
    del ans
    shape = list(np.shape(x))
    pieces = []
    for ct, size in zip(g, sizes, strict=True):
        shape[axis] = int(size)
        pieces.append(jnp.zeros(shape, jnp.result_type(x)) if ct is None else ct)
    return (lax.concatenate(pieces, axis),)


@register_vjp(p.slice_p)
def slice_vjp(g, ans, x, *, start_indices, limit_indices, strides):
    """Put g back where it came from: pad with zeros around it and between strided elements."""
    del ans, limit_indices
    strides = strides or (1,) * len(start_indices)
    config = []
    for n, start, stride, m in zip(np.shape(x), start_indices, strides, g.shape, strict=True):
        covered = start + (m - 1) * stride + 1 if m else start
        config.append((start, n - covered, stride - 1))
    return (lax.pad(g, jnp.zeros((), g.dtype), config),)


@register_vjp(p.pad_p)
def pad_vjp(g, ans, x, padding_value, *, padding_config):
    """x gets every (interior+1)-th element of g once the edge padding is undone (negative
    edges were crops, so undoing them pads zeros back); the padding value gets the rest of g."""
    del ans
    if np.size(x) == 0:
        ct_x = jnp.zeros(np.shape(x), g.dtype)
    else:
        unpadded = lax.pad(
            g, jnp.zeros((), g.dtype), [(-lo, -hi, 0) for lo, hi, _ in padding_config]
        )
        ct_x = lax.slice(
            unpadded,
            (0,) * g.ndim,
            unpadded.shape,
            tuple(interior + 1 for _, _, interior in padding_config),
        )
    ct_pad = jnp.sum(g) - jnp.sum(ct_x)
    return ct_x, cast_like(ct_pad, padding_value)


@register_vjp(p.dynamic_slice_p)
def dynamic_slice_vjp(g, ans, x, *starts, slice_sizes):
    """Write g into zeros at the (clamped) start; the start indices get no cotangent."""
    del ans, slice_sizes
    zeros = jnp.zeros(np.shape(x), g.dtype)
    ct = p.dynamic_update_slice_p.bind(zeros, g, *map(jnp.asarray, starts))
    return (ct, *(None for _ in starts))


@register_vjp(p.dynamic_update_slice_p)
def dynamic_update_slice_vjp(g, ans, x, update, *starts):
    """The operand keeps g outside the window; the update gets g's window."""
    del ans
    starts = tuple(map(jnp.asarray, starts))
    ct_x = ct_update = None
    if is_float(x):
        window_zeros = jnp.zeros(np.shape(update), g.dtype)
        ct_x = p.dynamic_update_slice_p.bind(g, window_zeros, *starts)
    if is_float(update):
        ct_update = p.dynamic_slice_p.bind(g, *starts, slice_sizes=np.shape(update))
    return (ct_x, ct_update, *(None for _ in starts))


# ----- Sorting ----------------------------------------------------------------------------
# The forward sorts one extra operand, an iota along the sorted dimension, so the permutation
# is a by-product of the sort JAX runs anyway (no second sort in the backward pass).


def sort_forward(active, *operands, dimension, is_stable, num_keys):
    sort = p.sort_p.bind
    if not any(active):
        outs = sort(*operands, dimension=dimension, is_stable=is_stable, num_keys=num_keys)
        return outs, None
    shape = np.shape(operands[0])
    dtype = jnp.int32 if shape[dimension] < 2**31 else jnp.int64
    iota = lax.broadcasted_iota(dtype, shape, dimension)
    outs = sort(*operands, iota, dimension=dimension, is_stable=is_stable, num_keys=num_keys)
    return outs[:-1], outs[-1]


def _scatter_by_permutation(g, perm, dimension):
    """ct with ct[..., perm[..., j], ...] = g[..., j, ...] along ``dimension`` (a scatter)."""
    others = tuple(d for d in range(g.ndim) if d != dimension)
    dnums = lax.ScatterDimensionNumbers(
        update_window_dims=(),
        inserted_window_dims=(dimension,),
        scatter_dims_to_operand_dims=(dimension,),
        operand_batching_dims=others,
        scatter_indices_batching_dims=others,
    )
    zeros = jnp.zeros(g.shape, g.dtype)
    return lax.scatter(
        zeros,
        perm[..., None],
        g,
        dnums,
        indices_are_sorted=False,
        unique_indices=True,
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


@register_vjp(p.sort_p, forward=sort_forward)
def sort_vjp(g, perm, *operands, dimension, is_stable, num_keys):
    """Every output is its operand permuted by the same perm; send each g back through it."""
    del is_stable, num_keys
    return tuple(
        None if ct is None or not is_float(x) else _scatter_by_permutation(ct, perm, dimension)
        for ct, x in zip(g, operands, strict=True)
    )
