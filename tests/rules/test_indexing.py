"""Rule table for the indexing family: gather and the scatters behind ``x[i]`` and ``x.at[i]``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from .table import C, I, Row, check_row, expand, f


def _distinct(n, k):
    """k distinct indices in [0, n): unique scatter targets."""
    return C(lambda rng: rng.permutation(n)[:k].astype(np.int32))


REPEATED = C(np.array([0, 2, 0, 4, 2, 0], np.int32))


def _cross_entropy_pick(logp, labels):
    """The one-hot-free cross-entropy: each row's log-probability at its label."""
    return -logp[jnp.arange(logp.shape[0]), labels]


def _raw_gather(x, i):
    """lax.gather with explicit dimension numbers: rows of x picked by i (which may be empty)."""
    dnums = lax.GatherDimensionNumbers(
        offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    return lax.gather(x, i[:, None], dnums, (1, x.shape[1]), mode="clip")


def _batched_scatter_add(x, u, i):
    """lax.scatter_add with batching dims: row b of x gets u[b, k] added at column i[b, k]."""
    dnums = lax.ScatterDimensionNumbers(
        update_window_dims=(),
        inserted_window_dims=(1,),
        scatter_dims_to_operand_dims=(1,),
        operand_batching_dims=(0,),
        scatter_indices_batching_dims=(0,),
    )
    return lax.scatter_add(x, i[..., None], u, dnums, mode="clip")


ROWS = [
    # ----- gather: numpy indexing
    Row("gather", lambda x, i: x[i], [(f(5), I((7,), 5)), (f(4, 3), I((2, 3), 4))]),
    Row("gather", _raw_gather, [(f(4, 3), I((5,), 4)), (f(4, 3), I((0,), 4))], id="lax-gather"),
    Row("gather", lambda x, i: x[:, i], [(f(3, 4), I((5,), 4))], id="gather-columns"),
    Row(
        "gather",
        lambda x, i, j: x[i, j],
        [(f(3, 4), I((5,), 3), I((5,), 4)), (f(3, 4, 2), I((2, 2), 3), I((2, 1), 4))],
        id="gather-pairs",
    ),
    Row("gather", lambda x, i: x[i, 1:], [(f(4, 3), I((6,), 4))], id="gather-mixed"),
    Row(
        "gather",
        lambda x, i: jnp.take_along_axis(x, i, axis=1),
        [(f(3, 4), I((3, 6), 4)), (f(2, 3, 4), I((2, 5, 4), 3))],
        id="take_along_axis",
    ),
    Row("gather", lambda t, tok: t[tok], [(f(6, 3), I((4, 5), 6))], id="embedding"),
    Row(
        "gather",
        _cross_entropy_pick,
        [(f(5, 4), I((5,), 4))],
        id="cross-entropy-pick",
    ),
    Row(
        "gather",
        lambda x, i: x.at[i].get(mode="clip"),
        [(f(5), I((6,), 9, -3)), (f(4, 2), I((3,), 7, -2))],
        id="gather-clip",
    ),
    Row(
        "gather",
        lambda x, i: x.at[i].get(mode="fill", fill_value=0),
        [(f(5), I((6,), 8, -7)), (f(4, 2), I((3,), 7))],
        id="gather-fill",
    ),
    Row(
        "gather",
        lambda x, i: jnp.take(x, i, axis=0, mode="fill", fill_value=-1.0),
        [(f(4, 3), I((5,), 6))],
        id="take-fill",
    ),
    # ----- scatter-add / scatter-sub
    Row(
        "scatter-add",
        lambda x, u, i: x.at[i].add(u),
        [(f(5), f(6), REPEATED), (f(5, 3), f(6, 3), REPEATED), (f(5), f(), REPEATED)],
    ),
    Row(
        "scatter-add",
        lambda x, u, i, j: x.at[i, j].add(u),
        [(f(3, 4), f(5), I((5,), 3), I((5,), 4))],
        id="scatter-add-pairs",
    ),
    Row(
        "scatter-add",
        lambda x, u, i: x.at[:, i].add(u, mode="drop"),
        [(f(3, 4), f(3, 5), I((5,), 7))],
        id="scatter-add-drop",
    ),
    Row(
        "scatter-add",
        lambda x, u, i: x.at[i].add(u, mode="clip"),
        [(f(4), f(5), I((5,), 7, -3))],
        id="scatter-add-clip",
    ),
    Row(
        "scatter-add",
        _batched_scatter_add,
        [(f(3, 4), f(3, 5), I((3, 5), 4)), (f(2, 3), f(2, 4), I((2, 4), 5, -1))],
        id="scatter-add-batched",
    ),
    Row("scatter-sub", lambda x, u, i: x.at[i].subtract(u), [(f(5), f(6), REPEATED)]),
    # ----- scatter (overwrite)
    Row(
        "scatter",
        lambda x, u, i: x.at[i].set(u),
        [
            (f(6), f(4), _distinct(6, 4)),
            (f(6, 2), f(3, 2), _distinct(6, 3)),
            (f(6), f(), _distinct(6, 2)),
        ],
    ),
    Row(
        "scatter",
        lambda x, u, i: x.at[i].set(u, unique_indices=True),
        [(f(6, 2), f(4, 2), _distinct(6, 4))],
        id="scatter-unique",
    ),
    Row("scatter", lambda x, u, i: x.at[i].set(u), [(f(5), f(6), REPEATED)], id="scatter-repeated"),
    Row(
        "scatter",
        lambda x, u, i: x.at[i].set(u, mode="drop"),
        [(f(5), f(4), C(np.array([1, 7, 3, -9], np.int32)))],
        id="scatter-drop",
    ),
    Row(
        "scatter",
        lambda x, u, i: jnp.put_along_axis(x, i, u, axis=1, inplace=False),
        [(f(3, 5), f(3, 2), C(np.array([[0, 3], [4, 1], [2, 0]], np.int32)))],
        id="put_along_axis",
    ),
    # ----- scatter-mul
    Row(
        "scatter-mul",
        lambda x, u, i: x.at[i].mul(u, unique_indices=True),
        [(f(6), f(4), _distinct(6, 4)), (f(6, 2), f(3, 2), _distinct(6, 3))],
    ),
    Row(
        "scatter-mul",
        lambda x, u, i: x.at[i].divide(u, unique_indices=True),
        [(f(6), f(4, domain=(0.5, 2.0)), _distinct(6, 4))],
        id="scatter-divide",
    ),
    # ----- scatter-min / scatter-max (no ties: continuous random values)
    Row(
        "scatter-max",
        lambda x, u, i: x.at[i].max(u),
        [(f(5), f(6), REPEATED), (f(5, 2), f(6, 2), REPEATED)],
    ),
    Row("scatter-min", lambda x, u, i: x.at[i].min(u), [(f(5), f(6), REPEATED)]),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)


def _dense_scatter_mul(x, u, i):
    """Reference for x.at[i].mul(u) on a vector, as a product of selects (jax.vjp can handle)."""
    hit = i[:, None] == jnp.arange(x.shape[0])[None, :]
    return x * jnp.prod(jnp.where(hit, u[:, None], 1.0), axis=0)


@pytest.mark.parametrize(
    "u",
    [
        [2.0, -0.5, 3.0, 1.5, 0.7, 1.2],
        [2.0, 0.0, 3.0, 1.5, 0.0, 1.2],
        [2.0, 0.0, 3.0, 1.5, 0.5, 1.2],
    ],
)
def test_scatter_mul_repeated_indices(u):
    """jax.vjp refuses scatter_mul with repeated indices; compare with a dense reference."""
    import funcgrad

    x, u, i = jnp.array([1.5, -2.0, 0.5, 3.0, 1.0]), jnp.array(u), REPEATED.value
    g = jnp.array([0.3, -1.2, 0.8, 2.0, -0.4])
    _, ref = jax.vjp(lambda a, b: _dense_scatter_mul(a, b, i), x, u)
    out, vjp = funcgrad.vjp(lambda a, b: a.at[i].mul(b), x, u)
    np.testing.assert_allclose(out, _dense_scatter_mul(x, u, i), rtol=1e-12)
    for got, want in zip(vjp(g), ref(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_scatter_extremum_ties_split_evenly():
    """A tie between k contributors to a scatter-max/min splits the cotangent 1/k each."""
    import funcgrad

    x, u, i = jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.array([5.0, 5.0, 2.0]), np.array([0, 0, 1])
    g = jnp.array([1.0, 2.0, 3.0, 4.0])
    for fn in (lambda a, b: a.at[i].max(b), lambda a, b: a.at[i].min(b)):
        got = funcgrad.vjp(fn, x, u)[1](g)
        want = jax.vjp(fn, x, u)[1](g)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)
