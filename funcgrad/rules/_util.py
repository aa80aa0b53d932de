"""Helpers shared by the rule families."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax


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
