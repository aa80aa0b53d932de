"""Rule table for dot_general: matmuls, einsums, outer products, mixed precision."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from .table import C, Row, check_row, expand, f


def f32(*shape):
    """A float32 argument (for the preferred_element_type row)."""
    return C(lambda rng: rng.uniform(-2.0, 2.0, size=shape).astype(np.float32))


def matmul(x, w):
    return x @ w


def batched_matmul(x, y):
    return jnp.einsum("bij,bjk->bik", x, y)


def full_contraction(x, y):
    return jnp.einsum("ij,ij->", x, y)


def outer(x, y):
    return jnp.einsum("i,j->ij", x, y)


def several_contracting(x, y):
    return jnp.tensordot(x, y, ((1, 2), (2, 0)))


def batch_not_leading(x, y):
    return jnp.einsum("ibj,jbk->bik", x, y)


def scrambled_dims(x, y):
    """Contracting dims out of order on both sides, batch dims in the middle."""
    return lax.dot_general(x, y, (((2, 0), (0, 3)), ((1,), (2,))))


def matmul_to_float64(x, y):
    return lax.dot_general(x, y, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float64)


def matmul_highest(x, y):
    return jnp.matmul(x, y, precision=lax.Precision.HIGHEST)


def reused_operand(x):
    return x.T @ x


ROWS = [
    Row(
        "dot_general",
        matmul,
        [(f(2, 3), f(3, 4)), (f(1, 3), f(3, 1)), (f(0, 3), f(3, 4)), (f(2, 0), f(0, 4))],
        id="matmul",
    ),
    Row("dot_general", matmul, [(f(2, 3), f(3)), (f(3), f(3, 4))], id="matrix_vector"),
    Row("dot_general", matmul, [(f(3), f(3)), (f(1), f(1))], id="vector_vector"),
    Row("dot_general", batched_matmul, [(f(2, 3, 4), f(2, 4, 5)), (f(1, 2, 1), f(1, 1, 3))]),
    Row("dot_general", full_contraction, [(f(2, 3), f(2, 3))], id="full_contraction"),
    Row("dot_general", outer, [(f(2), f(3)), (f(0), f(3))], id="outer"),
    Row("dot_general", several_contracting, [(f(2, 3, 4, 5), f(4, 6, 3))], id="several"),
    Row("dot_general", batch_not_leading, [(f(2, 3, 4), f(4, 3, 5))], id="batch_not_leading"),
    Row("dot_general", scrambled_dims, [(f(2, 3, 4, 5), f(4, 6, 3, 2))], id="scrambled"),
    Row(
        "dot_general",
        matmul_to_float64,
        [(f32(2, 3), f32(3, 4))],
        rtol=1e-5,
        atol=1e-5,
        id="preferred_float64",
    ),
    Row("dot_general", matmul_highest, [(f(2, 3), f(3, 4))], id="precision"),
    Row("dot_general", reused_operand, [(f(3, 2),)], id="fan_out"),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
