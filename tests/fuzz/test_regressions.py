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
    "(fuzz seeds 2 and 100; a rule-table fix, not the fuzzer's)",
)
def test_stack_has_a_rule():
    # shrunk from fuzz seed 100 program 25: v6 = jnp.stack([jsp.i0e(x3), jnp.expm1(jnp.sin(x3))])
    _agree(lambda x: jnp.stack([jnp.sin(x), x], axis=0), jnp.linspace(-1.0, 1.0, 4))


@pytest.mark.xfail(
    strict=True,
    raises=AttributeError,
    reason="jax.checkpoint with a saving policy around a cond: the policy saves the cond's "
    "outputs, but cond_vjp then gets that list instead of its Residual (\"'list' object has "
    "no attribute 'static'\"); fuzz seed 100 program 4. Fix: remat's policy must not save "
    "equations whose rule keeps its own residuals (entry.forward), e.g. in "
    "rules/control_flow.py _remat_forward's `keep`, or in _backward.forward's `saved` branch.",
)
def test_checkpoint_policy_saving_a_cond():
    def f(x):
        return lax.cond(jnp.sum(x) > 0, jnp.sin, jnp.cos, x)

    g = jax.checkpoint(f, policy=jax.checkpoint_policies.everything_saveable)
    _agree(g, jnp.arange(3.0))


@pytest.mark.xfail(
    strict=True,
    raises=funcgrad.MissingRuleError,
    reason="a custom_jvp whose rule calls jax.jvp through a custom_vjp function: the traced "
    "tangent map holds JAX's 'custom_lin' (the custom_vjp's linearisation), which funcgrad "
    "has no rule for (jax.vjp transposes it to the user's bwd); fuzz seed 100 program 85. "
    "A control-flow rule to add (custom_lin's VJP is the user's bwd), not the fuzzer's.",
)
def test_custom_jvp_around_custom_vjp():
    @jax.custom_vjp
    def h(x):
        return jnp.sin(x)

    def h_fwd(x):
        return jnp.sin(x), x

    def h_bwd(x, g):
        return (g * jnp.cos(x),)

    h.defvjp(h_fwd, h_bwd)

    def f(x):
        return h(x) * x

    fc = jax.custom_jvp(f)

    @fc.defjvp
    def fc_jvp(primals, tangents):
        return jax.jvp(f, primals, tangents)

    _agree(fc, jnp.linspace(-1.0, 1.0, 4))


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="lax.clamp(lo, x, hi) with lo > hi: the result is hi, and JAX sends the whole "
    "cotangent to hi; funcgrad's clamp rule (rules/special.py) also sends it to lo. Found by "
    "the discovery gradient check (docs/coverage.md); a rule fix, not the fuzzer's.",
)
def test_clamp_with_crossed_bounds():
    _agree(lax.clamp, jnp.array([0.7, 0.1]), jnp.array([0.5, 0.5]), jnp.array([0.3, 0.9]))
