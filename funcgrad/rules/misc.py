"""Identity-like primitives (device_put, checkpoint names), top-k selection, and the
non-differentiable plumbing of random bits and tokens."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_nondiff, register_vjp

register_nondiff(p.rng_bit_generator_p, p.rng_uniform_p, p.create_token_p, p.after_all_p)

# Effects: jax.debug.print / jax.debug.callback return nothing, so no cotangent can flow
# through them and their operands' cotangents come only from their other uses.  The forward
# walk binds them like any equation, so they run at every call with the values of that call.
register_nondiff("debug_print", "debug_callback")


@register_vjp(p.device_put_p)
def device_put_vjp(g, ans, *xs, devices, srcs, copy_semantics):
    """A copy to a device: each cotangent comes back unchanged (its placement is XLA's)."""
    del ans, devices, srcs, copy_semantics
    return tuple(None if ct is None else ct for ct, _ in zip(g, xs))


@register_vjp(p.name_p)
def name_vjp(g, ans, x, *, name):
    """``checkpoint_name(x, name)`` tags a value for remat policies; it is the identity."""
    del ans, x, name
    return (g,)


def _scatter_back(g, idx, shape, axis):
    """ct[..., idx[..., j], ...] += g[..., j, ...] along ``axis`` (one scatter-add)."""
    g = jnp.moveaxis(g, axis, -1)
    idx = jnp.moveaxis(idx, axis, -1)
    batch = g.shape[:-1]
    others = tuple(range(len(batch)))
    dnums = lax.ScatterDimensionNumbers(
        update_window_dims=(),
        inserted_window_dims=(len(batch),),
        scatter_dims_to_operand_dims=(len(batch),),
        operand_batching_dims=others,
        scatter_indices_batching_dims=others,
    )
    moved = (*batch, shape[axis])
    ct = lax.scatter_add(jnp.zeros(moved, g.dtype), idx[..., None], g, dnums)
    return jnp.moveaxis(ct, -1, axis)


@register_vjp(p.top_k_p)
def top_k_vjp(g, ans, x, *, k, axis):
    """Each selected value's cotangent goes back to the position it was taken from."""
    del k
    g_vals = g[0]
    if g_vals is None:
        return (None,)
    axis = axis % np.ndim(x)
    return (_scatter_back(g_vals, ans[1], np.shape(x), axis),)


@register_vjp(p.approx_top_k_p)
def approx_top_k_vjp(
    g,
    ans,
    x,
    *,
    k,
    reduction_dimension,
    recall_target,
    is_max_k,
    reduction_input_size_override,
    aggregate_to_topk,
):
    del k, recall_target, is_max_k, reduction_input_size_override, aggregate_to_topk
    if g[0] is None:
        return (None,)
    axis = reduction_dimension % np.ndim(x)
    return (_scatter_back(g[0], ans[1], np.shape(x), axis),)
