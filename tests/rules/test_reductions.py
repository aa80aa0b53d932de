"""Rule table for reductions: sum, max/min (with ties), prod (with zeros), lax.reduce."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend.core import primitives as p

import funcgrad

from .table import C, Row, check_row, expand, f

ND = [(f(5),), (f(3, 4),), (f(1, 4),), (f(2, 1, 3),), (f(0, 3),)]

TIES = [
    (C(np.array([1.0, 3.0, 3.0])),),
    (C(np.array([[2.0, 2.0, 1.0], [0.5, 0.5, 0.5]])),),
    (C(np.ones((2, 3, 2))),),
]
ZEROS = [
    (C(np.array([2.0, 0.0, 3.0, -1.5])),),
    (C(np.array([[0.0, 2.0, 0.0], [1.5, -2.0, 0.5]])),),
    (C(np.array([[[0.0, 0.0], [3.0, 0.5]], [[1.0, -1.0], [2.0, 0.0]]])),),
]


def reduce_xor_mask(x):
    odd = p.reduce_xor_p.bind(x > 0, axes=(x.ndim - 1,))
    return jnp.where(odd[..., None], x, 3 * x)


def init(value, x):
    """An init value in the operand's dtype (the table also runs rows in float32/bfloat16)."""
    return jnp.asarray(value, x.dtype)


def sum_prod_pair(x, y):
    """A (sum, product) pair reduced in one variadic lax.reduce (init 1 + 0.5 keeps the
    init visible in both cotangents)."""

    def both(acc, v):
        return acc[0] + v[0], v[1] * acc[1]

    return lax.reduce((x, y), (jnp.asarray(0.5, x.dtype), jnp.asarray(1.5, y.dtype)), both, (1,))


def max_min_pair(x, y):
    def both(acc, v):
        return jnp.maximum(acc[0], v[0]), jnp.minimum(acc[1], v[1])

    return lax.reduce((x, y), (init(-jnp.inf, x), init(jnp.inf, y)), both, (0,))


def argmax_pair(x, y):
    """A reduction whose components interact: not one monoid per operand."""

    def pick(acc, v):
        return jnp.maximum(acc[0], v[0]), jnp.where(acc[0] > v[0], acc[1], v[1])

    return lax.reduce((x, y), (-jnp.inf, 0.0), pick, (0,))


ROWS = [
    # ----- non-differentiable: the cotangent flows only through the other branch
    Row("argmax", lambda x: x * jnp.argmax(x, axis=-1, keepdims=True), [(f(5),), (f(3, 4),)]),
    Row("argmin", lambda x: x * jnp.argmin(x, axis=0, keepdims=True), [(f(3, 4),)]),
    Row(
        "reduce_and",
        lambda x: jnp.where(jnp.all(x > -1, axis=0, keepdims=True), x, 2 * x),
        [(f(3, 4),)],
    ),
    Row(
        "reduce_or",
        lambda x: jnp.where(jnp.any(x > 1, axis=0, keepdims=True), x, 2 * x),
        [(f(3, 4),)],
    ),
    Row("reduce_xor", reduce_xor_mask, [(f(3, 4),), (f(2, 3, 5),)]),
    # ----- sum
    Row("reduce_sum", jnp.sum, ND, id="sum-all"),
    Row("reduce_sum", lambda x: jnp.sum(x, axis=-1), ND, id="sum-last"),
    Row("reduce_sum", lambda x: jnp.sum(x, axis=0), ND, id="sum-first"),
    Row(
        "reduce_sum", lambda x: jnp.sum(x, axis=(0, 2)), [(f(2, 3, 4),), (f(2, 1, 3),)], id="sum-02"
    ),
    Row("reduce_sum", lambda x: jnp.mean(x, axis=1, keepdims=True), [(f(3, 4),)], id="mean"),
    # ----- max / min: random draws have no ties; TIES share the cotangent equally
    Row("reduce_max", jnp.max, ND[:4], id="max-all"),
    Row("reduce_max", lambda x: jnp.max(x, axis=-1), ND, id="max-last"),
    Row("reduce_max", lambda x: jnp.max(x, axis=(0, 2)), [(f(2, 3, 4),)], id="max-02"),
    Row("reduce_max", jnp.max, TIES, id="max-ties"),
    Row("reduce_max", lambda x: jnp.max(x, axis=-1), TIES, id="max-ties-last"),
    Row("reduce_min", jnp.min, ND[:4], id="min-all"),
    Row("reduce_min", lambda x: jnp.min(x, axis=0), ND[:4], id="min-first"),
    Row("reduce_min", lambda x: jnp.min(x, axis=0), TIES, id="min-ties"),
    # ----- prod: including zeros, where prod / x would be 0 / 0
    Row("reduce_prod", jnp.prod, ND, id="prod-all"),
    Row("reduce_prod", lambda x: jnp.prod(x, axis=-1), ND, id="prod-last"),
    Row("reduce_prod", lambda x: jnp.prod(x, axis=(0, 2)), [(f(2, 3, 4),)], id="prod-02"),
    Row("reduce_prod", jnp.prod, ZEROS, id="prod-zeros"),
    Row("reduce_prod", lambda x: jnp.prod(x, axis=0), ZEROS, id="prod-zeros-first"),
    Row("reduce_prod", lambda x: jnp.prod(x, axis=-1), ZEROS, id="prod-zeros-last"),
    # ----- lax.reduce with a non-identity constant init (jnp never emits reduce_p). jax.vjp's
    # primal folds the init into its own reduction tree only for odd sizes; 3 keeps it exact.
    Row(
        "reduce",
        lambda x: lax.reduce(x, init(1.0, x), lax.add, (1,)),
        [(f(4, 3),)],
        id="reduce-add",
    ),
    Row(
        "reduce",
        lambda x: lax.reduce(x, init(-9.0, x), lax.max, (0,)),
        [(f(3, 4),)],
        id="reduce-max",
    ),
    Row(
        "reduce",
        lambda x: lax.reduce(x, init(9.0, x), lax.min, (0, 1)),
        [(f(3, 4),)],
        id="reduce-min",
    ),
    Row(
        "reduce",
        lambda x: lax.reduce(x, init(1.5, x), lax.mul, (1,)),
        [(f(4, 3),)],
        id="reduce-mul",
    ),
    # ----- variadic lax.reduce: several operands, each reduced by its own monoid
    Row("reduce", sum_prod_pair, [(f(4, 3), f(4, 3)), (f(2, 3, 3), f(2, 3, 3))], id="reduce-pair"),
    Row("reduce", max_min_pair, [(f(3, 4), f(3, 4))], id="reduce-max-min-pair"),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)


def test_reduce_with_interacting_components_is_refused_naming_the_computation():
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    _, pullback = funcgrad.vjp(argmax_pair, x, 2 * x)
    with pytest.raises(NotImplementedError, match=r"(?s)2 operand\(s\).*select_n"):
        pullback((jnp.ones(4), jnp.ones(4)))
