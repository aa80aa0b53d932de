"""funcgrad.testing: assert_grads_match and check_rule catch planted faults."""

import os

import jax
import jax.numpy as jnp
import pytest
from jax.extend.core import Primitive
from jax.extend.core import primitives as p

import funcgrad
from funcgrad.testing import assert_grads_match, check_rule

from ._util import planted_rule

HERE = os.path.basename(__file__)


def loss(params, x):
    h = jnp.tanh(x @ params["w"])
    return jnp.mean(jnp.log1p(h**2))


def _setup():
    k = jax.random.split(jax.random.key(0), 2)
    return {"w": jax.random.normal(k[0], (3, 4))}, jax.random.normal(k[1], (5, 3))


def test_assert_grads_match_passes_and_fails_with_table_and_blame():
    params, x = _setup()
    assert assert_grads_match(loss, params, x).ok

    def wrong_log1p(g, ans, x, *, accuracy):  # planted fault: 1/x instead of 1/(1+x)
        del ans, accuracy
        return (g / x,)

    with planted_rule(p.log1p_p, wrong_log1p):
        with pytest.raises(AssertionError) as err:
            assert_grads_match(loss, params, x, argnums=0)
    msg = str(err.value)
    assert "args[0]['w']" in msg and "MISMATCH" in msg and "funcgrad's rule is wrong" in msg
    assert "'log1p'" in msg and HERE in msg


scaled_p = Primitive("scaled_square")  # y = s * x**2, a user's primitive
scaled_p.def_impl(lambda x, *, s: s * x * x)
scaled_p.def_abstract_eval(lambda x, *, s: jax.core.ShapedArray(x.shape, x.dtype))


def right_rule(g, ans, x, *, s):
    return (2.0 * s * x * g,)


def test_check_rule_accepts_a_right_rule():
    report = check_rule(scaled_p, (3, 4), rule=right_rule, s=1.5)
    assert report.ok and "[ok] finite differences" in str(report)
    assert "skipped: JAX cannot differentiate" in str(report)


@pytest.mark.parametrize(
    "rule, failing",
    [
        (lambda g, ans, x, *, s: (2.0 * s * x * g**2,), "linear in the cotangent"),
        (lambda g, ans, x, *, s: (s * x * g,), "finite differences"),
        (lambda g, ans, x, *, s: (jnp.sum(g),), "structure"),
        (lambda g, ans, x, *, s: 2.0 * s * x * g, "structure"),
    ],
    ids=["nonlinear", "wrong-math", "wrong-shape", "not-a-tuple"],
)
def test_check_rule_names_the_failing_check(rule, failing):
    with pytest.raises(AssertionError, match=rf"\[FAIL\] {failing}"):
        check_rule(scaled_p, (3, 4), rule=rule, s=1.5)


def test_check_rule_on_a_registered_jax_primitive():
    assert check_rule(p.atan2_p, (4,), (4,)).ok
    with pytest.raises(LookupError, match="no VJP rule is registered for 'scaled_square'"):
        check_rule(scaled_p, (2,), s=1.0)
    assert funcgrad.testing is not None
