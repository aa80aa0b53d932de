"""funcgrad/rules/_custom_layout.py: placing a custom_jvp rule's outputs as the call declares.

The programs that need it are in tests/fuzz/test_regressions.py (fuzz seed 424290 program
6505 and seed 424254 program 5137); here, the pieces: which layouts fit, that ``unapply`` is
the transpose of ``apply``, which layout is chosen when values cannot tell, and when the
function is not evaluated on generated values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad
from funcgrad.rules import _custom_layout as layout


def test_fits_lists_each_distinct_data_layout_once():
    assert layout.fits((2, 3), (2, 3)) == [(0, 1)]  # no other placement keeps the shape
    assert layout.fits((4, 4, 1), (4, 4, 1)) == [(0, 1, 2), (1, 0, 2)]
    assert layout.fits((2, 4, 1), (4, 2, 1)) == [(1, 0, 2)]
    assert layout.fits((1, 3), (1, 3)) == [(0, 1)]  # moving a size-1 axis moves no data
    assert layout.fits((5,), (2, 5)) == [(None, 0)]  # the batch axis broadcast
    assert len(layout.fits((0, 2), (2, 0, 2))) == 1  # an empty output: nothing to place
    assert len(layout.fits((2, 3, 4), (3, 4, 2))) == 1  # the shapes place each axis
    assert layout.fits((4, 2, 4), (2, 4, 4)) == [(1, 0, 2), (1, 2, 0)]  # two batch axes?
    assert sorted(layout.fits((3,), (3, 3)), key=str) == [(0, None), (None, 0)]
    assert layout.fits((2, 3), (5, 7)) == []


@pytest.mark.parametrize(
    "lay,rule_shape,declared",
    [
        ((1, 0, 2), (2, 4, 1), (4, 2, 1)),
        ((2, 0, 1), (3, 4, 5), (5, 3, 4)),
        ((0, None), (3,), (3, 2)),
    ],
)
def test_unapply_is_the_transpose_of_apply(lay, rule_shape, declared):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=rule_shape))
    ct = jnp.asarray(rng.normal(size=declared))
    out, pullback = jax.vjp(lambda x: layout.apply(lay, x, declared), x)
    assert out.shape == declared
    np.testing.assert_allclose(layout.unapply(lay, ct, rule_shape), pullback(ct)[0], rtol=1e-12)
    np.testing.assert_array_equal(layout._apply_np(lay, np.asarray(x), declared), out)


def test_values_that_cannot_tell_keep_the_rules_own_layout():
    # Both placements reproduce a symmetric output exactly: the rule's layout is kept.
    assert layout._best([(0, 1), (1, 0)], [0.0, 0.0], (3, 3)) == (0, 1)
    assert layout._best([(0, 1), (1, 0)], [0.5, 0.0], (3, 3)) == (1, 0)
    assert layout._best([(0, 1), (1, 0)], [0.5, 0.45], (3, 3)) == (0, 1)  # no clear winner
    assert layout._best([(0, 1), (1, 0)], [np.inf, np.inf], (3, 3)) == (0, 1)


def _jvp_eqn(f, x):
    (eqn,) = [e for e in jax.make_jaxpr(f)(x).jaxpr.eqns if e.primitive.name == "custom_jvp_call"]
    return eqn


def test_elementwise_functions_are_not_evaluated():
    """relu on a square batch: the layout is proved by the jaxprs' structure."""
    eqn = _jvp_eqn(jax.vmap(jax.nn.relu), jnp.ones((3, 3)))
    assert layout._aligned(eqn.params["call_jaxpr"].jaxpr, eqn.params["call_jaxpr"].jaxpr)
    eqn = _jvp_eqn(jax.vmap(_cumsum_with_rule), jnp.ones((3, 3)))
    assert not layout._aligned(eqn.params["call_jaxpr"].jaxpr)


@jax.custom_jvp
def _cumsum_with_rule(x):
    return jnp.cumsum(x, axis=0)


@_cumsum_with_rule.defjvp
def _cumsum_jvp(primals, tangents):
    return _cumsum_with_rule(primals[0]), jnp.cumsum(tangents[0], axis=0)


def _with_print(x):
    jax.debug.print("inside {}", jnp.sum(x))
    return jnp.cumsum(x, axis=0)


def _with_while(x):
    return lax.while_loop(
        lambda c: c[1] < 3, lambda c: (jnp.cumsum(c[0], axis=0), c[1] + 1), (x, 0)
    )[0]


@pytest.mark.parametrize("g", [_with_print, _with_while], ids=["effect", "while"])
def test_calls_with_effects_or_while_loops_are_not_evaluated(g, capsys):
    f = jax.custom_jvp(g)
    f.defjvp(lambda p, t: (f(p[0]), jnp.cumsum(t[0], axis=0)))
    eqn = _jvp_eqn(jax.vmap(f), jnp.ones((3, 3)))
    assert not layout._evaluable(eqn.params["call_jaxpr"].jaxpr)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    h = lambda x: jnp.sum(jax.vmap(f)(x) ** 2)  # noqa: E731
    capsys.readouterr()
    want = jax.grad(h)(x)
    jax.effects_barrier()
    printed_by_jax = capsys.readouterr().out.count("inside")
    np.testing.assert_allclose(funcgrad.grad(h)(x), want, rtol=1e-10)
    jax.effects_barrier()
    assert capsys.readouterr().out.count("inside") == printed_by_jax  # never for a probe


def test_a_square_custom_jvp_outside_vmap_keeps_its_layout():
    """Not batched, square: evaluated (cumsum is not elementwise), the identity wins."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    h = lambda x: jnp.sum(jnp.sin(_cumsum_with_rule(x)) * x)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(h)(x), jax.grad(h)(x), rtol=1e-10)
