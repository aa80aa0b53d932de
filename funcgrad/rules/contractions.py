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
