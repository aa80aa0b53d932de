"""Rule table for cumulative scans: cumsum, cumprod (with zeros), cummax/cummin (with ties),
cumlogsumexp; forward and reverse, along the first and the last axis."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from .table import C, Row, check_row, expand, f

ND = [(f(5),), (f(3, 4),), (f(1, 4),), (f(2, 1, 3),), (f(0, 3),), (f(1),)]
FEW = [(f(3, 4),), (f(2, 1, 3),)]

ZEROS = [
    (C(np.array([2.0, 0.0, 3.0, 0.5, -1.5])),),
    (C(np.array([0.0, 2.0, 0.0, 1.5, 3.0])),),
    (C(np.array([[1.5, 2.0, 0.0, 1.0], [0.0, -2.0, 0.5, 0.0], [1.0, 1.0, 1.0, 0.0]])),),
]
# Two-way ties only: jax.vjp splits those in half, as funcgrad does (see cumulative.py).
TIES = [
    (C(np.array([1.0, 3.0, 3.0, 2.0, 5.0, 0.0, 5.0])),),
    (C(np.array([[4.0, 1.0, 4.0, 0.5], [-1.0, -1.0, 2.0, 2.0], [0.0, 3.0, 1.0, 3.0]])),),
]


def last(fn, **kw):
    return lambda x: fn(x, axis=x.ndim - 1, **kw)


def first(fn, **kw):
    return lambda x: fn(x, axis=0, **kw)


ROWS = [
    Row("cumsum", last(lax.cumsum), ND, id="cumsum"),
    Row("cumsum", first(lax.cumsum, reverse=True), FEW, id="cumsum-rev"),
    Row("cumsum", lambda x: jnp.cumsum(x, axis=0), [(f(3, 4),)], id="jnp-cumsum"),
    Row("cumprod", last(lax.cumprod), ND, id="cumprod"),
    Row("cumprod", first(lax.cumprod, reverse=True), FEW, id="cumprod-rev"),
    Row("cumprod", last(lax.cumprod), ZEROS, id="cumprod-zeros"),
    Row("cumprod", last(lax.cumprod, reverse=True), ZEROS, id="cumprod-zeros-rev"),
    Row("cumprod", first(lax.cumprod), ZEROS[2:], id="cumprod-zeros-first"),
    Row("cummax", last(lax.cummax), ND, id="cummax"),
    Row("cummax", first(lax.cummax, reverse=True), FEW, id="cummax-rev"),
    Row("cummax", last(lax.cummax), TIES, id="cummax-ties"),
    Row("cummax", last(lax.cummax, reverse=True), TIES, id="cummax-ties-rev"),
    Row("cummin", last(lax.cummin), ND, id="cummin"),
    Row("cummin", first(lax.cummin, reverse=True), FEW, id="cummin-rev"),
    Row("cummin", last(lax.cummin), TIES, id="cummin-ties"),
    Row("cumlogsumexp", last(lax.cumlogsumexp), ND, id="cumlogsumexp"),
    Row("cumlogsumexp", first(lax.cumlogsumexp, reverse=True), FEW, id="cumlogsumexp-rev"),
    Row(
        "cumlogsumexp",
        last(lax.cumlogsumexp),
        [(f(12),), (f(3, 8),)],
        domain=(-800.0, 800.0),  # exp(x) alone overflows float64; the rule must not
        id="cumlogsumexp-wide",
    ),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
