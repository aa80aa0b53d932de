"""Rule table for dot_general: matmuls, einsums, outer products, mixed precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad

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


def batch_last_lhs(x, y):
    return jnp.einsum("ijb,bjk->bik", x, y)


def batch_last_both(x, y):
    return jnp.einsum("ijb,jkb->bik", x, y)


def transposed_out(x, y):
    return jnp.einsum("bij,bjk->kib", x, y)


def scrambled_dims(x, y):
    """Contracting dims out of order on both sides, batch dims in the middle."""
    return lax.dot_general(x, y, (((2, 0), (0, 3)), ((1,), (2,))))


def matmul_to_float64(x, y):
    return lax.dot_general(x, y, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float64)


def matmul_highest(x, y):
    return jnp.matmul(x, y, precision=lax.Precision.HIGHEST)


def reused_operand(x):
    return x.T @ x


GROUPS_620 = C(np.array([2, 0, 4], np.int32))


def ragged_dot_rhs_transposed(lhs, rhs_t, group_sizes):
    """lhs [m, k] against rhs laid out [groups, n, k] (contracting its last dim)."""
    dims = lax.RaggedDotDimensionNumbers((((1,), (2,)), ((), ())), (0,), (0,))
    return lax.ragged_dot_general(lhs, rhs_t, group_sizes, dims)


def ragged_dot_groups(lhs, rhs, group_sizes):
    """out[e, k, n] = sum over the rows m of group e of lhs[m, k] rhs[m, n]."""
    dims = lax.RaggedDotDimensionNumbers((((0,), (0,)), ((), ())), (0,), ())
    return lax.ragged_dot_general(lhs, rhs, group_sizes, dims)


def dense_ragged_dot_groups(lhs, rhs, group_sizes):
    """The same contraction with a dense one-hot membership matrix (a reference jax.vjp can
    differentiate twice; JAX has no rule for the second derivative of the ragged one)."""
    ends = jnp.cumsum(group_sizes)
    rows = jnp.arange(lhs.shape[0])[:, None]
    starts, ends = (ends - group_sizes)[None, :], ends[None, :]
    member = ((rows >= starts) & (rows < ends)).astype(lhs.dtype)
    return jnp.einsum("mk,mn,me->ekn", lhs, rhs, member)


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
    # Square batched rows: batch, free and contracted sizes equal, so a permutation slip in
    # the batch or free axes of a cotangent gives a wrong value, not a shape error.
    Row(
        "dot_general",
        batched_matmul,
        [(f(2, 3, 3), f(2, 3, 3)), (f(3, 3, 3), f(3, 3, 3))],
        id="square_batched",
    ),
    Row("dot_general", batch_last_lhs, [(f(3, 3, 2), f(2, 3, 3))], id="square_batch_last_lhs"),
    Row("dot_general", batch_last_both, [(f(3, 3, 3), f(3, 3, 3))], id="square_batch_last_both"),
    Row("dot_general", transposed_out, [(f(3, 3, 3), f(3, 3, 3))], id="square_transposed_out"),
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
    # ----- ragged_dot_general: jax.lax.ragged_dot (mixture of experts); an empty group and,
    # in the second group, rows that belong to no group (sizes sum to 4 < 5)
    Row(
        "ragged_dot_general",
        lax.ragged_dot,
        [(f(6, 4), f(3, 4, 5), GROUPS_620), (f(5, 2), f(2, 2, 3), C(np.array([1, 3], np.int32)))],
    ),
    Row(
        "ragged_dot_general",
        ragged_dot_rhs_transposed,
        [(f(6, 4), f(3, 5, 4), GROUPS_620)],
        id="ragged_rhs_t",
    ),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)


@pytest.mark.parametrize("order", [1, 2])
def test_ragged_dot_groups_layout_against_dense(order):
    """The layout of ragged_dot's rhs cotangent, to first and second order (jax.vjp refuses
    its second order, so the reference is the dense one-hot contraction)."""
    rng = np.random.default_rng(0)
    lhs, rhs = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=(6, 5)))
    sizes = jnp.array([2, 0, 3], jnp.int32)
    ct = jnp.asarray(rng.normal(size=(3, 4, 5)))

    def loss(grad, contraction):
        def first(a, b):
            return jnp.sum(jnp.sin(contraction(a, b, sizes)) * ct)

        if order == 1:
            return grad(first, argnums=(0, 1))

        def second(a, b):
            ga, gb = grad(first, argnums=(0, 1))(a, b)
            return jnp.sum(ga**3) + jnp.sum(jnp.cos(gb))

        return grad(second, argnums=(0, 1))

    got = loss(funcgrad.grad, ragged_dot_groups)(lhs, rhs)
    want = loss(jax.grad, dense_ragged_dot_groups)(lhs, rhs)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_ragged_dot_general_other_layouts_are_refused():
    dims = lax.RaggedDotDimensionNumbers((((2,), (2,)), ((0,), (0,))), (1,), (1,))
    lhs, rhs = jnp.ones((2, 6, 4)), jnp.ones((2, 2, 4, 5))

    def batched(a):
        return lax.ragged_dot_general(a, rhs, jnp.array([2, 4], jnp.int32), dims)

    with pytest.raises(NotImplementedError, match=r"lhs \(2, 6, 4\)"):
        funcgrad.vjp(batched, lhs)[1](jnp.ones((2, 6, 5)))
