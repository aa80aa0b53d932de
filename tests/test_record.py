"""Python control flow on values: recorded on concrete values outside jit, JAX's error inside."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad
from funcgrad import _eager
from funcgrad._record import record


def cookbook(x):  # JAX's autodiff cookbook: differentiated with jax.vjp(f, 4.)
    if x < 3:
        return 2 * x**3
    return 3 * x


def abs_like(x):
    return x**2 if x > 0 else -x


def gated(x, n):  # control flow on a non-differentiated array
    if n > 0:
        return jnp.sum(jnp.sin(x) * n)
    return jnp.sum(x)


def newton_sqrt(a):  # a while loop on a differentiated value, with relu (a custom_jvp)
    x = a
    while jnp.abs(x * x - a) > 1e-10:
        x = 0.5 * (x + a / x)
    return jax.nn.relu(x) + jnp.tanh(a)


@pytest.mark.parametrize("x", [2.0, 4.0])
def test_cookbook_vjp_and_grad_match_jax(x):
    out, pull = funcgrad.vjp(cookbook, x)
    ref_out, ref_pull = jax.vjp(cookbook, x)
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(pull(1.0)[0], ref_pull(1.0)[0])
    np.testing.assert_allclose(funcgrad.grad(cookbook)(x), jax.grad(cookbook)(x))


@pytest.mark.parametrize("x", [-2.0, 3.0])
def test_conditional_expression_on_the_differentiated_value(x):
    np.testing.assert_allclose(funcgrad.grad(abs_like)(x), jax.grad(abs_like)(x))


@pytest.mark.parametrize("n", [-1.0, 2.0])
def test_control_flow_on_a_non_differentiated_array(n):
    x = jnp.linspace(0.0, 1.0, 3)
    ours = funcgrad.grad(gated)(x, jnp.asarray(n))
    np.testing.assert_allclose(ours, jax.grad(gated)(x, jnp.asarray(n)), rtol=1e-12)


def test_while_loop_on_values_with_a_custom_jvp_inside():
    for a in (2.0, 9.0):
        np.testing.assert_allclose(
            funcgrad.grad(newton_sqrt)(a), jax.grad(newton_sqrt)(a), rtol=1e-9
        )
    assert _eager.eager_stats()["last_path"] == "recorded"


def test_recorded_path_runs_the_branch_taken_at_each_call():
    seen = []

    def f(x):
        seen.append("low" if x < 0 else "high")
        return jnp.where(x < 0, 0.0, 1.0) * x**2 if x < 0 else jnp.sin(x)

    for x in (-1.0, 1.0, -2.0):
        np.testing.assert_allclose(funcgrad.grad(f)(x), jax.grad(f)(x))
    assert seen[-1] == "low" and seen.count("high") >= 1


def test_under_jit_the_error_is_jaxs_own():
    with pytest.raises(jax.errors.TracerBoolConversionError) as ours:
        jax.jit(funcgrad.grad(cookbook))(4.0)
    with pytest.raises(jax.errors.TracerBoolConversionError) as theirs:
        jax.jit(jax.grad(cookbook))(4.0)
    assert type(ours.value) is type(theirs.value)


def test_float_of_a_differentiated_value_behaves_as_in_jax():
    def f(x):
        return x * int(x)  # int() of a traced value: allowed by jax.grad, cuts the gradient

    np.testing.assert_allclose(funcgrad.grad(f)(3.5), jax.grad(f)(3.5))


def test_numpy_conversion_of_a_differentiated_value_raises_like_jax():
    def f(x):
        return jnp.sum(np.asarray(x) * x)

    with pytest.raises(jax.errors.TracerArrayConversionError):
        jax.grad(f)(jnp.ones(2))
    with pytest.raises(jax.errors.TracerArrayConversionError):
        funcgrad.grad(f)(jnp.ones(2))


def test_record_writes_only_equations_that_depend_on_the_inputs():
    const = jnp.arange(3.0)

    def f(x):
        c = jnp.cos(const)  # depends on no input: evaluated, not recorded
        return [jnp.sum(c * x) if x[0] > 0 else jnp.sum(x)]

    closed, outs = record(f, [jnp.ones(3)])
    text = str(closed.jaxpr)
    assert "cos" not in text and "mul" in text, text
    np.testing.assert_allclose(outs[0], jnp.sum(jnp.cos(const)))


def test_recorded_call_with_lax_cond_and_jit_inside():
    @jax.jit
    def inner(c):
        return jnp.sin(c) * c

    def f(x):
        c = jax.lax.cond(x[0] > 5, lambda c: c * 2.0, inner, x)
        return jnp.sum(c) if jnp.sum(x) > 0 else 0.0

    x = jnp.linspace(0.5, 1.0, 2)
    np.testing.assert_allclose(funcgrad.grad(f)(x), jax.grad(f)(x), rtol=1e-12)
    assert _eager.eager_stats()["last_path"] == "recorded"
