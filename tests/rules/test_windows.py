"""Rule table for windowed reductions: sum / average / max / min pooling on NHWC and 1-D inputs,
strides, 'SAME' and negative padding, overlapping windows, dilations, ties; and the
select-and-scatter pair that max pooling's backward pass is made of."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend.core import primitives as p

from .table import C, Row, check_row, expand, f


def pool(op, init, window, strides, padding="VALID", **dilation):
    return lambda x: lax.reduce_window(x, init, op, window, strides, padding, **dilation)


sum_pool = functools.partial(pool, lax.add, 0.0)
max_pool = functools.partial(pool, lax.max, -jnp.inf)
min_pool = functools.partial(pool, lax.min, jnp.inf)


def avg_pool(x):
    return sum_pool((1, 3, 3, 1), (1, 1, 1, 1), "SAME")(x) / 9.0


NHWC = [(f(2, 4, 4, 3),), (f(1, 5, 4, 1),)]
ODD = [(f(1, 5, 7, 2),)]
LINE = [(f(9),), (f(4),)]
# Integer-valued inputs: many windows hold several equal maxima / minima.
TIES = [(C(lambda rng: rng.integers(0, 3, size=(2, 4, 6, 1)).astype(np.float64)),)]

SAME_3x3 = ((1, 3, 3, 1), (1, 1, 1, 1), "SAME")
OVERLAP = ((1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (0, 1), (0, 0)))
CROP = ((1, 2, 3, 1), (1, 1, 2, 1), ((0, 0), (-1, 1), (1, -1), (0, 0)))
DILATED = dict(base_dilation=(1, 2, 1, 1), window_dilation=(1, 1, 2, 1))

# select_and_scatter_add / select_and_gather_add: differentiated in their linear argument,
# the operand that drives the selection is held fixed.
_OPERAND = np.random.default_rng(7).uniform(-2, 2, size=(2, 4, 6, 3))
_SAS = dict(
    select_prim=p.ge_p,
    window_dimensions=(1, 2, 3, 1),
    window_strides=(1, 2, 2, 1),
    padding=((0, 0), (0, 0), (1, 0), (0, 0)),
)


def scatter_to_max(g):
    return p.select_and_scatter_add_p.bind(g, jnp.asarray(_OPERAND), **_SAS)


def gather_from_max(t):
    return p.select_and_gather_add_p.bind(
        t, jnp.asarray(_OPERAND), base_dilation=(1,) * 4, window_dilation=(1,) * 4, **_SAS
    )


ROWS = [
    # ----- sum / average pooling
    Row("reduce_window_sum", sum_pool((1, 2, 2, 1), (1, 2, 2, 1)), NHWC, id="sum-2x2-s2"),
    Row("reduce_window_sum", sum_pool(*SAME_3x3), NHWC + ODD, id="sum-3x3-same"),
    Row("reduce_window_sum", avg_pool, NHWC, id="avg-3x3-same"),
    Row("reduce_window_sum", sum_pool(*OVERLAP), NHWC + ODD, id="sum-overlap"),
    Row("reduce_window_sum", sum_pool((3,), (2,), "SAME"), LINE, id="sum-1d"),
    Row("reduce_window_sum", sum_pool(*CROP), ODD, id="sum-negative-pad"),
    Row("reduce_window_sum", sum_pool(*OVERLAP, **DILATED), NHWC + ODD, id="sum-dilated"),
    Row(
        "reduce_window_sum",
        sum_pool((2,), (3,), ((2, 0),), base_dilation=(3,), window_dilation=(2,)),
        LINE,
        id="sum-1d-dilated",
    ),
    # ----- max / min pooling: g goes to the first extremal element of each window
    Row("reduce_window_max", max_pool((1, 2, 2, 1), (1, 2, 2, 1)), NHWC, id="max-2x2-s2"),
    Row("reduce_window_max", max_pool(*SAME_3x3), NHWC + ODD, id="max-3x3-same"),
    Row("reduce_window_max", max_pool(*OVERLAP), ODD, id="max-overlap"),
    Row("reduce_window_max", max_pool((3,), (2,), "SAME"), LINE, id="max-1d"),
    # jax.vjp rejects negative padding for max pooling (it slices at a negative start), so
    # there is no reference; funcgrad crops x first. Checked by hand against pooling x[:, 1:].
    # Row("reduce_window_max", max_pool(*CROP), ODD, id="max-negative-pad"),
    Row(
        "reduce_window_max",
        max_pool(*OVERLAP, base_dilation=(1, 2, 1, 1)),
        ODD,
        id="max-base-dilated",
    ),
    Row("reduce_window_max", max_pool(*SAME_3x3), TIES, id="max-ties"),
    Row("reduce_window_max", max_pool((1, 2, 2, 1), (1, 2, 2, 1)), TIES, id="max-ties-s2"),
    Row("reduce_window_min", min_pool(*SAME_3x3), NHWC, id="min-3x3-same"),
    Row("reduce_window_min", min_pool((2,), (1,)), LINE, id="min-1d"),
    Row("reduce_window_min", min_pool(*OVERLAP), TIES, id="min-ties"),
    # ----- max pooling's backward pass, for second derivatives
    Row("select_and_scatter_add", scatter_to_max, [(f(2, 2, 3, 3),)]),
    Row("select_and_gather_add", gather_from_max, [(f(2, 4, 6, 3),)]),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
