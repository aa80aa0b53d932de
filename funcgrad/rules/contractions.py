"""VJP of dot_general: every matmul, einsum, tensordot, inner and outer product."""

from __future__ import annotations

import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_vjp
from ._util import cast_like, is_float

# ----- helpers -------------------------------------------------------------------------------


def _free_dims(ndim, contract, batch):
    """Dimensions of an operand that are neither contracted nor batch, in increasing order."""
    return [d for d in range(ndim) if d not in contract and d not in batch]


def _operand_ct(
    g,
    other,
    x,
    *,
    g_other_dims,
    g_batch,
    other_batch,
    x_batch,
    x_contract,
    other_contract,
    g_first,
    precision,
    preferred_element_type,
):
    """Cotangent of operand ``x`` of ``dot_general(x, other)`` (or ``(other, x)``).

    ``ct_x[B, F_x, C] = sum_{F_other} g[B, F_x, F_other] * other[B, C, F_other]``: one more
    dot_general that contracts ``g``'s dims belonging to ``other``'s free dims against those
    free dims and keeps the batch dims as batch.  Its result is laid out as
    ``(batch, free of the first operand, free of the second)``; a transpose puts it back into
    ``x``'s dimension order (skipped where it is the identity, as for plain matmuls).
    """
    other_free = _free_dims(np.ndim(other), other_contract, other_batch)
    # The contracted dims of `other` that survive into the result, in `other`'s axis order,
    # each matched to the contracted dim of `x` it was paired with in the forward pass.
    other_rest = sorted(other_contract)
    x_rest = [x_contract[list(other_contract).index(d)] for d in other_rest]
    x_free = _free_dims(np.ndim(x), x_contract, x_batch)
    if g_first:  # result: (batch, x's free dims [from g], other's contracted dims)
        dims = ((g_other_dims, other_free), (g_batch, other_batch))
        ct = lax.dot_general(
            g, other, dims, precision=precision, preferred_element_type=preferred_element_type
        )
        order = list(x_batch) + x_free + x_rest
    else:  # result: (batch, other's contracted dims, x's free dims [from g])
        dims = ((other_free, g_other_dims), (other_batch, g_batch))
        ct = lax.dot_general(
            other, g, dims, precision=precision, preferred_element_type=preferred_element_type
        )
        order = list(x_batch) + x_rest + x_free
    # `order[k]` is the axis of x that result axis k holds; invert it for the transpose.
    perm = tuple(int(k) for k in np.argsort(order))
    if perm != tuple(range(len(perm))):
        ct = lax.transpose(ct, perm)
    return cast_like(ct, x)


# ----- dot_general ---------------------------------------------------------------------------


@register_vjp(p.dot_general_p)
def dot_general_vjp(
    g, ans, lhs, rhs, *, dimension_numbers, precision, preferred_element_type, out_sharding
):
    """out[B, Fl, Fr] = sum_C lhs[B, Fl, C] rhs[B, C, Fr]; each cotangent is one dot_general.

    The lhs cotangent is ``dot_general(g, rhs)`` and the rhs cotangent ``dot_general(lhs, g)``,
    so for ``x @ W`` they are exactly ``g @ W.T`` and ``x.T @ g`` with no transpose.  The
    output is (batch..., lhs free..., rhs free...); ``precision`` is passed through and a
    cotangent computed in ``preferred_element_type`` is cast back to its operand's dtype.
    """
    del ans, out_sharding
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    nb = len(lhs_batch)
    lhs_free = _free_dims(np.ndim(lhs), lhs_contract, lhs_batch)
    g_batch = list(range(nb))
    g_lhs_dims = list(range(nb, nb + len(lhs_free)))
    g_rhs_dims = list(range(nb + len(lhs_free), np.ndim(g)))
    common = dict(precision=precision, preferred_element_type=preferred_element_type)
    ct_lhs = ct_rhs = None
    if is_float(lhs):
        ct_lhs = _operand_ct(
            g,
            rhs,
            lhs,
            g_other_dims=g_rhs_dims,
            g_batch=g_batch,
            other_batch=rhs_batch,
            x_batch=lhs_batch,
            x_contract=lhs_contract,
            other_contract=rhs_contract,
            g_first=True,
            **common,
        )
    if is_float(rhs):
        ct_rhs = _operand_ct(
            g,
            lhs,
            rhs,
            g_other_dims=g_lhs_dims,
            g_batch=g_batch,
            other_batch=lhs_batch,
            x_batch=rhs_batch,
            x_contract=rhs_contract,
            other_contract=lhs_contract,
            g_first=False,
            **common,
        )
    return ct_lhs, ct_rhs


# ----- ragged_dot_general (mixture of experts) -----------------------------------------------
#
# Two layouts close under differentiation, m being the ragged (row) dimension of the lhs and
# e(m) the group of row m given by consecutive ``group_sizes``:
#   rows:     out[m, j]    = sum_k lhs[m, k] rhs[e(m), k, j]   (jax.lax.ragged_dot; rhs may
#             also be laid out [e, j, k], contracting its last dim)
#   groups:   out[e, k, j] = sum_{m in e} lhs[m, k] rhs[m, j]  (the rhs cotangent of "rows")
# Each cotangent of one layout is a ragged_dot_general of the other or the same layout.


def _ragged(lhs, rhs, group_sizes, contract, group, precision, preferred_element_type):
    dims = lax.RaggedDotDimensionNumbers(
        dot_dimension_numbers=(contract, ((), ())),
        lhs_ragged_dimensions=(0,),
        rhs_group_dimensions=group,
    )
    return lax.ragged_dot_general(
        lhs,
        rhs,
        group_sizes,
        dims,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def _ragged_layout(lhs, rhs, dims):
    """'rows' with the rhs contracted dim (1 or 2), 'groups', or None for other layouts."""
    (contract, batch) = dims.dot_dimension_numbers
    contract = tuple(tuple(int(d) for d in c) for c in contract)
    plain = not any(batch) and tuple(dims.lhs_ragged_dimensions) == (0,) and np.ndim(lhs) == 2
    group = tuple(dims.rhs_group_dimensions)
    if plain and np.ndim(rhs) == 3 and group == (0,) and contract in (((1,), (1,)), ((1,), (2,))):
        return "rows", contract[1][0]
    if plain and np.ndim(rhs) == 2 and group == () and contract == ((0,), (0,)):
        return "groups", None
    return None, None


@register_vjp("ragged_dot_general")
def ragged_dot_general_vjp(
    g,
    ans,
    lhs,
    rhs,
    group_sizes,
    *,
    ragged_dot_dimension_numbers,
    precision,
    preferred_element_type,
    group_offset,
    **params,
):
    """Cotangents of a ragged matmul; the integer ``group_sizes`` gets none."""
    del ans, params  # out_sharding: placement only
    layout, rhs_k = _ragged_layout(lhs, rhs, ragged_dot_dimension_numbers)
    if layout is None or group_offset is not None:
        raise NotImplementedError(
            f"funcgrad differentiates ragged_dot_general in the layout of jax.lax.ragged_dot "
            f"(lhs [m, k] ragged along m, rhs [groups, k, n]) and of its rhs cotangent; got "
            f"lhs {np.shape(lhs)}, rhs {np.shape(rhs)}, {ragged_dot_dimension_numbers}, "
            f"group_offset={group_offset}. Use jax.lax.ragged_dot, or register a rule for "
            f"'ragged_dot_general' with funcgrad.register_vjp."
        )
    common = dict(precision=precision, preferred_element_type=preferred_element_type)
    if layout == "rows":  # g [m, j]
        rhs_j = 3 - rhs_k
        ct_lhs = _ragged(g, rhs, group_sizes, ((1,), (rhs_j,)), (0,), **common)
        ct_rhs = _ragged(lhs, g, group_sizes, ((0,), (0,)), (), **common)  # [e, k, j]
        if rhs_k == 2:
            ct_rhs = lax.transpose(ct_rhs, (0, 2, 1))
    else:  # g [e, k, j]; lhs [m, k], rhs [m, j]
        ct_lhs = _ragged(rhs, g, group_sizes, ((1,), (2,)), (0,), **common)
        ct_rhs = _ragged(lhs, g, group_sizes, ((1,), (1,)), (0,), **common)
    ct_lhs = cast_like(ct_lhs, lhs) if is_float(lhs) else None
    ct_rhs = cast_like(ct_rhs, rhs) if is_float(rhs) else None
    return ct_lhs, ct_rhs, None
