"""NaN and inf in gradients land where jax.vjp puts them, op by op and under jit.

Found by an audit that pulled non-finite cotangents (one NaN, one inf, all NaN) and
non-finite inputs through every row of the rule table and compared where NaN and inf appear.
Where JAX's rule multiplies a cotangent by a 0/1 mask, a NaN cotangent reaches the values
not selected as NaN (0 * nan), and funcgrad's rule selected (a silent 0 there). A mask made
by converting a boolean is not enough under jit: XLA rewrites ``g * convert(mask)`` into a
select, so the masks are chosen by ``where``. The differences the audit found and that are
left are listed in ``docs/non-finite.md``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad

NAN, INF = np.nan, np.inf
X8 = [1.0, 3.0, 2.0, 4.0, 0.0, 5.0, -1.0, 6.0]


def _agree(fn, xs, ct):
    xs = [jnp.asarray(x) for x in xs]
    ct = jnp.asarray(ct, jnp.float64)
    want = jax.vjp(fn, *xs)[1](ct)
    got = funcgrad.vjp(fn, *xs)[1](ct)
    jitted = jax.jit(lambda xs, ct: funcgrad.vjp(fn, *xs)[1](ct))(xs, ct)
    for w, g, j in zip(want, got, jitted, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)  # NaN and inf positions included
        np.testing.assert_allclose(j, w, rtol=1e-12)


def _cum(fn, **kw):
    return lambda x: fn(x, **kw)


@pytest.mark.parametrize(
    "fn, x, ct",
    [
        # A non-finite g[i] reaches every earlier input: NaN where not selected (0 * nan).
        (_cum(lax.cummax), X8, [1, 1, NAN, 1, 1, 1, 1, 1]),
        (_cum(lax.cummax, reverse=True), X8, [1, 1, NAN, 1, 1, 1, 1, 1]),
        (_cum(lax.cummin), [-v for v in X8], [1, 1, 1, 1, 1, INF, 1, 1]),
        (_cum(lax.cummax), [1.0, 3.0, 2.0, 4.0], [1, 1, INF, 1]),
        (_cum(lax.cummax, axis=1), [[1.0, NAN, 2.0], [3.0, 1.0, 5.0]], [[1, 1, 1], [1, NAN, 1]]),
        # The first output is the first input: it takes g[0] even when it is NaN.
        (_cum(lax.cummax), [NAN, 1.0, 2.0], [1, 1, 1]),
        (_cum(lax.cummin, reverse=True), [1.0, 2.0, NAN], [1, 1, 1]),
        # A masked (-inf) prefix: the first input's factor is 1, later ones are 0 / 0.
        (_cum(lax.cumlogsumexp), [-INF, 1.0, 2.0], [1, 1, 1]),
        (_cum(lax.cumlogsumexp), [-INF, -INF, 2.0], [1, 1, 1]),
        (_cum(lax.cumlogsumexp, reverse=True), [1.0, 2.0, -INF], [1, 2, 3]),
        (_cum(lax.cumlogsumexp), [1.0, -INF, 2.0], [1, 1, 1]),
    ],
)
def test_cumulative(fn, x, ct):
    _agree(fn, [x], ct)


def test_maximum_and_minimum_send_a_nan_cotangent_to_both_operands():
    """atan2(a, minimum(a, b)) at a = 0 (found by the property test)."""
    _agree(lambda a, b: jnp.arctan2(a, jnp.minimum(a, b)), [[0.0, 0.0], [1.0, 2.0]], [1, 1])
    _agree(jnp.maximum, [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [NAN, NAN, 1])


def test_scatter_max_sends_a_nan_cotangent_to_every_update_of_its_slot():
    idx = jnp.array([0, 2, 0])
    xu = [[1.0, 2.0, 3.0], [5.0, 1.0, 0.0]]
    _agree(lambda x, u: x.at[idx].max(u), xu, [NAN, 1, 1])
    _agree(lambda x, u: x.at[idx].min(u), xu, [1, 1, NAN])


def test_lax_reduce_with_max_sends_a_nan_cotangent_to_every_element():
    x = [[1.0, 3.0, 0.0], [2.0, 0.0, 4.0], [5.0, 4.0, 1.0]]
    _agree(lambda x: lax.reduce(x, -9.0, lax.max, (0,)), [x], [NAN, 1, 1])
    _agree(lambda x: lax.reduce(x, 9.0, lax.min, (1,)), [x], [1, 1, NAN])
