"""The engine's static dataflow (funcgrad/_dataflow.py): every nested jaxpr opened once per
use, every cond branch, loop carries fed back; custom_jvp/vjp calls stay single equations."""

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from funcgrad._dataflow import flow


def program(x):
    y = jax.lax.cond(x[0] > 0, jnp.sin, jnp.cos, x)
    z, _ = jax.lax.scan(lambda c, xi: (c * xi, None), 1.0, y)
    _, w = jax.lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, jnp.tanh(s[1])), (0, z))
    return jax.nn.relu(jax.jit(jnp.exp)(w))


def steps_of(prim_name, steps):
    return [s for s in steps if s.eqn is not None and s.eqn.primitive.name == prim_name]


def test_flow_opens_every_nested_jaxpr_and_feeds_carries_back():
    closed = jax.make_jaxpr(program)(jnp.ones(3))
    steps = list(flow(closed.jaxpr))
    names = {s.eqn.primitive.name for s in steps if s.eqn is not None}
    assert {"sin", "cos", "mul", "tanh", "exp"} <= names  # both branches, bodies, the jit
    (cond,) = steps_of("cond", steps)
    assert cond.opened and cond.scope == ()
    (sin,), (cos,) = steps_of("sin", steps), steps_of("cos", steps)
    assert sin.scope[0].eqn is cond.eqn and cos.scope[0].eqn is cond.eqn
    assert sin.scope != cos.scope  # one scope per branch
    (tanh,) = steps_of("tanh", steps)
    loops = [s for s in steps if s.eqn is None and s.scope and s.ins[0][0] == s.outs[0][0]]
    assert any(s.scope == tanh.scope for s in loops)  # the while's carry: out -> in
    (mul,) = steps_of("mul", steps)
    assert any(s.scope == mul.scope for s in loops)  # the scan's carry
    (relu,) = [s for s in steps if s.eqn is not None and "custom_jvp" in s.eqn.primitive.name]
    assert not relu.opened and relu.scope == ()


def test_flow_without_opening_is_the_top_level_equations():
    closed = jax.make_jaxpr(program)(jnp.ones(3))
    steps = list(flow(closed.jaxpr, open_nested=False))
    assert [s.eqn for s in steps] == list(closed.jaxpr.eqns)
    assert all(s.scope == () for s in steps)
    for s in steps:
        assert [v for _, v in s.ins] == [v for v in s.eqn.invars if isinstance(v, jcore.Var)]
