"""Shrunk findings of the program fuzzer, one test each; xfail(strict) while the rule that
fixes it belongs to another part of the table (the xfail turns into a failure once fixed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad


def _agree(f, *args):
    out, pb = jax.vjp(f, *args)
    ct = jax.tree.map(
        lambda o: jnp.asarray(np.random.default_rng(0).normal(size=o.shape), o.dtype), out
    )
    got_out, fpb = funcgrad.vjp(f, *args)
    for g, w in zip(
        jax.tree.leaves((got_out, fpb(ct))), jax.tree.leaves((out, pb(ct))), strict=True
    ):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-7, atol=1e-7)


@pytest.mark.xfail(
    strict=True,
    raises=funcgrad.MissingRuleError,
    reason="no VJP rule for the 'stack' primitive that jnp.stack emits on JAX >= 0.10 "
    "(fuzz seed 2 program 7, seed 100; a rule-table fix, not the fuzzer's)",
)
def test_stack_has_a_rule():
    # shrunk from a scan whose body stacks its carry with a closed-over value
    def program(x):
        def body(c, xe):
            s = jnp.stack([x, c], axis=1)
            return jnp.broadcast_to(jnp.sum(s), c.shape), s

        return lax.scan(body, x, x)

    _agree(program, jnp.linspace(-1.0, 1.0, 6).reshape(2, 1, 3))


@pytest.mark.xfail(
    strict=True,
    raises=AttributeError,
    reason="jax.checkpoint with a saving policy around a cond: the policy saves the cond's "
    "outputs, but cond_vjp then gets that list instead of its Residual (\"'list' object has "
    "no attribute 'static'\"); fuzz seed 100 program 4. Fix in rules/control_flow.py "
    "(_remat_forward should not treat equations with their own residuals as saved values).",
)
def test_checkpoint_policy_saving_a_cond():
    def f(x):
        return lax.cond(jnp.sum(x) > 0, jnp.sin, jnp.cos, x)

    g = jax.checkpoint(f, policy=jax.checkpoint_policies.everything_saveable)
    _agree(g, jnp.arange(3.0))
