"""The tape of an eager pullback keeps what the rules read, not every intermediate."""

import jax
import jax.numpy as jnp
import numpy as np

import funcgrad
from funcgrad import _backward
from funcgrad._liveness import rule_reads


def _tape(pullback):
    cells = [c.cell_contents for c in pullback.__closure__]
    return next(c for c in cells if isinstance(c, _backward.Tape))


def test_a_chain_of_adds_keeps_nothing_but_what_sin_and_exp_read():
    def f(x):
        a = x + 1.0  # add reads neither operand
        b = jnp.sin(a)  # sin reads a
        c = b * 2.0  # mul by a literal reads nothing it does not already have
        d = jnp.exp(c)  # exp reads its output
        return jnp.sum(d + x)

    x = jnp.linspace(0.0, 1.0, 5)
    _, pull = funcgrad.vjp(f, x)
    kept = list(_tape(pull).env.values())
    # a (for sin) and exp's output; the input x, b, c and the sums are not kept.
    assert len(kept) == 2, [np.shape(v) for v in kept]
    np.testing.assert_allclose(pull(1.0)[0], jax.grad(f)(x), rtol=1e-12)


def test_rule_reads_is_traced_from_the_rule():
    jaxpr = jax.make_jaxpr(lambda x, y: (x + y, jnp.sin(x), jnp.exp(y)))(1.0, 2.0).jaxpr
    add, sin, exp = (e for e in jaxpr.eqns)
    lookup = funcgrad._registry.lookup
    assert rule_reads(add, lookup(add.primitive).rule) == (False, [False, False])
    assert rule_reads(sin, lookup(sin.primitive).rule) == (False, [True])
    assert rule_reads(exp, lookup(exp.primitive).rule) == (True, [False])
