"""Helpers shared by the rule families."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.lax import linalg as lla


def unbroadcast(g, x):
    """Sum ``g`` down to the shape of operand ``x`` (rank-0 operands, size-1 dimensions).

    jaxprs contain ``mul a 2.0:f32[]`` (a rank-0 operand against a full array); the operand's
    cotangent is the sum of ``g`` over the dimensions it was broadcast along.
    """
    shape = np.shape(x)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    summed = sum_axes(g, axes)
    return summed.reshape(shape)


def sum_axes(g, axes):
    """Sum over ``axes`` in ``g``'s own dtype, as the transpose of a broadcast is (jnp.sum
    would accumulate bfloat16 in float32 and add two converts and a buffer)."""
    if not axes:
        return g
    return lax.reduce(g, np.array(0, g.dtype), lax.add, tuple(axes))


def cast_like(ct, x):
    """Cast a cotangent to the dtype of the operand it belongs to."""
    dtype = jnp.result_type(x)
    return ct if ct.dtype == dtype else lax.convert_element_type(ct, dtype)


def is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


# ----- matrix helpers shared by rules/linalg.py and rules/decompositions.py -------------------


def mT(x):
    return jnp.swapaxes(x, -1, -2)


def mm(a, b):
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def right_solve(a, b, *, lower, transpose_a, unit_diagonal=False):
    """``b op(a)^-1`` for triangular ``a``."""
    return lla.triangular_solve(
        a, b, left_side=False, lower=lower, transpose_a=transpose_a, unit_diagonal=unit_diagonal
    )


def eye_mask(n, ndim):
    """Boolean identity shaped ``(1, ..., 1, n, n)`` to broadcast against rank-``ndim`` stacks."""
    return lax.broadcast_to_rank(jnp.eye(n, dtype=bool), ndim)


def off_diag_reciprocal(d):
    """``F[..., i, j] = 1 / d[..., i, j]`` off the diagonal, 0 on it (no inf/nan there)."""
    eye = eye_mask(d.shape[-1], d.ndim)
    return jnp.where(eye, 0, 1 / jnp.where(eye, 1, d))


def ungather(x, perm, axis):
    """``y`` with ``take_along_axis(y, perm, axis) == x``: undoes a gather by a permutation."""
    inv = jnp.argsort(perm, axis=-1)
    idx = inv[..., :, None] if axis == -2 else inv[..., None, :]
    return jnp.take_along_axis(x, idx, axis=axis)


def real_only(name, x):
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise NotImplementedError(
            f"funcgrad's VJP of '{name}' handles real matrices only; got {x.dtype}{x.shape}."
        )


def add_cts(*terms):
    """Sum of the terms that are not ``None`` (symbolic zeros), or ``None``."""
    terms = [t for t in terms if t is not None]
    return None if not terms else terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])


def operand_ct(ct, x):
    """``ct`` summed and cast to operand ``x``; None for integer and boolean operands."""
    return cast_like(unbroadcast(ct, x), x) if is_float(x) else None
