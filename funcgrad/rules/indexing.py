"""Indexing rules: gather and the scatter family.

A gather and a scatter with matching dimension numbers are each other's transpose: gather's
``offset_dims`` / ``collapsed_slice_dims`` / ``start_index_map`` are scatter's
``update_window_dims`` / ``inserted_window_dims`` / ``scatter_dims_to_operand_dims`` (and the
batching dimensions pair up the same way).  Every rule passes the forward's ``mode`` through,
so clipped indices are clipped again and dropped (``fill``) windows get no cotangent.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .. import _jax_compat as compat
from .._registry import register_vjp
from ._util import is_float

# ----- Helpers: matching dimension numbers ------------------------------------------------


def _gather_of_scatter(dnums):
    """The GatherDimensionNumbers that read back what a scatter with ``dnums`` writes."""
    return lax.GatherDimensionNumbers(
        offset_dims=dnums.update_window_dims,
        collapsed_slice_dims=dnums.inserted_window_dims,
        start_index_map=dnums.scatter_dims_to_operand_dims,
        operand_batching_dims=dnums.operand_batching_dims,
        start_indices_batching_dims=dnums.scatter_indices_batching_dims,
    )


def _scatter_of_gather(dnums):
    """The ScatterDimensionNumbers that write back where a gather with ``dnums`` read."""
    return lax.ScatterDimensionNumbers(
        update_window_dims=dnums.offset_dims,
        inserted_window_dims=dnums.collapsed_slice_dims,
        scatter_dims_to_operand_dims=dnums.start_index_map,
        operand_batching_dims=dnums.operand_batching_dims,
        scatter_indices_batching_dims=dnums.start_indices_batching_dims,
    )


def _gather_updates(y, indices, updates_shape, dnums, mode, fill_value=0):
    """Read from ``y`` (operand-shaped) one value per element of a scatter's updates."""
    window = iter(updates_shape[d] for d in dnums.update_window_dims)
    point = set(dnums.inserted_window_dims) | set(dnums.operand_batching_dims)
    slice_sizes = tuple(1 if d in point else next(window) for d in range(y.ndim))
    return lax.gather(
        y, indices, _gather_of_scatter(dnums), slice_sizes, mode=mode, fill_value=fill_value
    )


def _scatter(scatter_fn, operand, indices, updates, dnums, mode, *, unique=False):
    return scatter_fn(operand, indices, updates, dnums, unique_indices=unique, mode=mode)


# ----- Gather -----------------------------------------------------------------------------


@register_vjp(p.gather_p)
def gather_vjp(
    g, ans, operand, indices, *, dimension_numbers, slice_sizes, unique_indices,
    indices_are_sorted, mode, fill_value,
):  # fmt: skip
    """Scatter-add g into zeros where the slices were read; repeated indices accumulate."""
    del ans, slice_sizes, fill_value
    zeros = jnp.zeros(np.shape(operand), g.dtype)
    ct = lax.scatter_add(
        zeros,
        indices,
        g,
        _scatter_of_gather(dimension_numbers),
        indices_are_sorted=indices_are_sorted,
        unique_indices=unique_indices,
        mode=mode,
    )
    return ct, None


# ----- Scatters that add ------------------------------------------------------------------


@register_vjp(p.scatter_add_p)
def scatter_add_vjp(
    g, ans, operand, indices, updates, *, update_jaxpr, update_consts, dimension_numbers,
    indices_are_sorted, unique_indices, mode,
):  # fmt: skip
    """out = operand + scatter(updates): operand gets g, updates get g gathered back."""
    del ans, update_jaxpr, update_consts, indices_are_sorted, unique_indices
    ct_u = None
    if is_float(updates):
        ct_u = _gather_updates(g, indices, np.shape(updates), dimension_numbers, mode)
    return (g if is_float(operand) else None), None, ct_u


@register_vjp(compat.SCATTER_SUB)
def scatter_sub_vjp(
    g, ans, operand, indices, updates, *, update_jaxpr, update_consts, dimension_numbers,
    indices_are_sorted, unique_indices, mode,
):  # fmt: skip
    """out = operand - scatter(updates): operand gets g, updates get -g gathered back."""
    del ans, update_jaxpr, update_consts, indices_are_sorted, unique_indices
    ct_u = None
    if is_float(updates):
        ct_u = -_gather_updates(g, indices, np.shape(updates), dimension_numbers, mode)
    return (g if is_float(operand) else None), None, ct_u


# ----- Scatters that overwrite, multiply, or pick -----------------------------------------


@register_vjp(p.scatter_p)
def scatter_vjp(
    g, ans, operand, indices, updates, *, update_jaxpr, update_consts, dimension_numbers,
    indices_are_sorted, unique_indices, mode,
):  # fmt: skip
    """Overwritten positions of the operand get no cotangent; each update gets g where it wrote.

    With repeated indices only one update lands per position (the backend's choice); the
    update that won is found by scattering each update's id with the same scatter and reading
    the ids back, so losers get zero cotangent, as in the forward.
    """
    del ans, update_jaxpr, update_consts, indices_are_sorted
    dnums, shape = dimension_numbers, np.shape(updates)
    ct_x = ct_u = None
    if is_float(operand):
        zeros = jnp.zeros(shape, g.dtype)
        ct_x = _scatter(lax.scatter, g, indices, zeros, dnums, mode, unique=unique_indices)
    if is_float(updates):
        ct_u = _gather_updates(g, indices, shape, dnums, mode)
        if not unique_indices:
            ids = lax.iota(jnp.int32, int(np.prod(shape))).reshape(shape)
            blank = jnp.full(np.shape(operand), -1, jnp.int32)
            written = _scatter(lax.scatter, blank, indices, ids, dnums, mode)
            winner = _gather_updates(written, indices, shape, dnums, mode, fill_value=-1)
            ct_u = jnp.where(winner == ids, ct_u, jnp.zeros((), ct_u.dtype))
    return ct_x, None, ct_u


@register_vjp(p.scatter_mul_p)
def scatter_mul_vjp(
    g, ans, operand, indices, updates, *, update_jaxpr, update_consts, dimension_numbers,
    indices_are_sorted, unique_indices, mode,
):  # fmt: skip
    """out[i] = operand[i] * prod_{k -> i} u[k].

    d/d operand = the same scatter-mul applied to g.  d/d u[k] = g[i] operand[i] times the
    product of the *other* updates landing on i: 1 when indices are unique; otherwise, with
    P[i] the product of the nonzero updates and Z[i] how many are zero, P[i] / u[k] if
    Z[i] = 0 and u[k] != 0, P[i] if u[k] is the only zero, and 0 otherwise (no division by 0).
    """
    del ans, update_jaxpr, update_consts, indices_are_sorted
    dnums, shape = dimension_numbers, np.shape(updates)
    ct_x = ct_u = None
    if is_float(operand):
        ct_x = _scatter(lax.scatter_mul, g, indices, updates, dnums, mode, unique=unique_indices)
    if is_float(updates):
        gx = g * operand
        if unique_indices:
            ct_u = _gather_updates(gx, indices, shape, dnums, mode)
        else:
            is_zero = updates == 0
            ones = jnp.ones(np.shape(operand), g.dtype)
            nonzero = jnp.where(is_zero, jnp.ones((), updates.dtype), updates)
            prod = _scatter(lax.scatter_mul, ones, indices, nonzero, dnums, mode)
            n_zero = _scatter(
                lax.scatter_add, jnp.zeros_like(ones), indices, is_zero.astype(g.dtype), dnums, mode
            )
            n_zero = _gather_updates(n_zero, indices, shape, dnums, mode)
            gxp = _gather_updates(gx * prod, indices, shape, dnums, mode)
            zero = jnp.zeros((), gxp.dtype)
            ct_u = jnp.where(
                is_zero,
                jnp.where(n_zero == 1, gxp, zero),
                jnp.where(n_zero == 0, gxp / nonzero, zero),
            )
    return ct_x, None, ct_u


def _scatter_extremum_vjp(g, ans, operand, indices, updates, dnums, mode):
    """The cotangent goes to whichever of operand and updates attains the result; a tie
    between k of them splits it evenly (1/k each).

    The 0/1 masks are chosen by ``where``, not converted from booleans: XLA rewrites
    ``g * convert(mask)`` into a select, which under jit turned a NaN cotangent into 0 on
    the values not picked, where JAX (and funcgrad op by op) gives NaN."""
    shape = np.shape(updates)
    picked = _gather_updates(ans, indices, shape, dnums, mode, fill_value=np.nan)
    one, zero = jnp.ones((), g.dtype), jnp.zeros((), g.dtype)
    from_u = jnp.where(updates == picked, one, zero)
    from_x = jnp.where(operand == ans, one, zero)
    count = jnp.maximum(_scatter(lax.scatter_add, from_x, indices, from_u, dnums, mode), 1)
    share = g / count
    ct_x = share * from_x if is_float(operand) else None
    ct_u = _gather_updates(share, indices, shape, dnums, mode) * from_u
    return ct_x, None, ct_u if is_float(updates) else None


@register_vjp(p.scatter_max_p)
def scatter_max_vjp(
    g, ans, operand, indices, updates, *, update_jaxpr, update_consts, dimension_numbers,
    indices_are_sorted, unique_indices, mode,
):  # fmt: skip
    del update_jaxpr, update_consts, indices_are_sorted, unique_indices
    return _scatter_extremum_vjp(g, ans, operand, indices, updates, dimension_numbers, mode)


@register_vjp(p.scatter_min_p)
def scatter_min_vjp(
    g, ans, operand, indices, updates, *, update_jaxpr, update_consts, dimension_numbers,
    indices_are_sorted, unique_indices, mode,
):  # fmt: skip
    del update_jaxpr, update_consts, indices_are_sorted, unique_indices
    return _scatter_extremum_vjp(g, ans, operand, indices, updates, dimension_numbers, mode)
