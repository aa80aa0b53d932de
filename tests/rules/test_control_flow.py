"""Rows for the nested-jaxpr rules (jit, custom_jvp/vjp, remat, cond, scan, while)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from .table import C, Row, check_row, expand, f


def _jit_fn(x, y):
    return jax.jit(lambda a, b: jnp.sin(a) * b + a)(x, y)


@jax.custom_vjp
def _scale_by_cos(x, y):
    return jnp.cos(x) * y


_scale_by_cos.defvjp(
    lambda x, y: (jnp.cos(x) * y, (x, y)),
    lambda r, g: (-jnp.sin(r[0]) * r[1] * g, jnp.cos(r[0]) * g),
)


def _cond_fn(x, y):
    return lax.cond(jnp.sum(y) > 0, lambda a, b: a * b, lambda a, b: jnp.exp(a) - b, x, y)


def _scan_fn(x, y):
    def body(c, xy):
        a, b = xy
        c = jnp.tanh(c * a + b)
        return c, c * b

    return lax.scan(body, jnp.ones_like(x[0]), (x, y))


def _scan_closed_over_fn(x, w):
    """The body closes over ``w``: its cotangent is a sum over every step."""

    def body(c, a):
        c = jnp.tanh(c * w + a)
        return c, c * w

    return lax.scan(body, jnp.full_like(w, 0.5), x)


@jax.custom_jvp
def _leaky(x):
    return jnp.where(x > 0, x, 0.1 * x)


@_leaky.defjvp
def _leaky_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _leaky(x), jnp.where(x >= 0, 1.0, 0.1) * t  # at the kink: the custom slope, 1


def _kinks_fn(x):
    return jax.nn.relu(x) * 3.0 + _leaky(x) + jnp.abs(jax.nn.relu(-x))


KINKS = C(np.array([0.0, 1.5, -1.0, 0.0, -0.0, 2.0]))


def _remat_fn(x, y):
    return jax.checkpoint(lambda a, b: jnp.sin(jnp.sin(a) * b))(x, y)


def _remat_policy_fn(x, y):
    block = jax.checkpoint(
        lambda a, b: jnp.tanh((a @ b) @ b.T), policy=jax.checkpoint_policies.checkpoint_dots
    )
    return block(x, y)


def _closed_call_fn(x, y):
    prim = jax.extend.core.primitives.closed_call_p
    call_jaxpr = jax.make_jaxpr(lambda a, b: jnp.cos(a) * b)(x, y)
    return prim.bind(x, y, **prim.get_bind_params({"call_jaxpr": call_jaxpr}))[0]


def _barrier_fn(x, y):
    a, b = lax.optimization_barrier((jnp.sin(x), y * 2.0))
    return a * b


PAIRS = [(f(3, 4), f(3, 4)), (f(5), f(5)), (f(1, 4), f(1, 4)), (f(), f())]
SEQ = [(f(6, 3), f(6, 3)), (f(4), f(4)), (f(1, 2), f(1, 2))]

ROWS = [
    Row("jit", _jit_fn, PAIRS),
    Row("custom_jvp_call", lambda x, y: jax.nn.softplus(x) * jax.nn.relu(y), PAIRS),
    Row("custom_vjp_call", _scale_by_cos, PAIRS),
    Row("remat2", _remat_fn, PAIRS),
    Row("remat2", _remat_policy_fn, [(f(3, 4), f(4, 4)), (f(2, 2), f(2, 2))], id="remat_policy"),
    Row("cond", _cond_fn, [(f(3, 4), f(3, 4, domain=(0.1, 1.0))), (f(3), f(3, domain=(-1, -0.1)))]),
    Row("scan", _scan_fn, SEQ),
    Row("scan", _scan_closed_over_fn, [(f(6, 3), f(3)), (f(4), f())], id="scan_closed_over"),
    Row("custom_jvp_call", _kinks_fn, [(KINKS,)], id="custom_jvp_kinks"),
    Row(jax.extend.core.primitives.closed_call_p.name, _closed_call_fn, PAIRS, id="closed_call"),
    Row("optimization_barrier", _barrier_fn, PAIRS),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)


def test_while_loop_row_refuses_reverse_mode():
    import funcgrad

    def f_while(x):
        return lax.while_loop(lambda c: c[1] < 2, lambda c: (jnp.sin(c[0]), c[1] + 1), (x, 0))[0]

    assert "while" in {e.primitive.name for e in jax.make_jaxpr(f_while)(1.0).jaxpr.eqns}
    with pytest.raises(funcgrad.NonDifferentiableError, match="while_loop"):
        funcgrad.vjp(f_while, np.float64(1.0))
