"""Compiled eager mode: one program per input signature, jit's semantics, safe fallbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad
from funcgrad import _eager

SCALE = jnp.asarray(2.0)


def _scaled(x):
    return jnp.sum(SCALE * jnp.sin(x))


def test_side_effect_runs_once_per_signature_and_results_match_jax():
    calls = []

    def pure(x, y):
        return jnp.sum(jnp.tanh(x) * y)

    def f(x, y):
        calls.append(x.shape)
        return pure(x, y)

    g = funcgrad.grad(f, argnums=(0, 1))
    for shape in [(3,), (3,), (5,), (3,)]:
        x, y = jnp.linspace(0.0, 1.0, shape[0]), jnp.ones(shape)
        for a, b in zip(g(x, y), jax.grad(pure, argnums=(0, 1))(x, y), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    assert calls == [(3,), (5,)]  # traced once per signature, as under jit
    calls.clear()
    funcgrad.grad(f, eager_compile=False)(x, y)
    funcgrad.grad(f, eager_compile=False)(x, y)
    assert len(calls) == 2  # opting out walks the jaxpr on every call


def test_rebinding_a_global_array_is_not_served_stale():
    global SCALE
    x = jnp.zeros(3)
    g = funcgrad.grad(_scaled)
    np.testing.assert_allclose(g(x), 2.0 * np.ones(3))
    old, SCALE = SCALE, jnp.asarray(5.0)
    try:
        np.testing.assert_allclose(g(x), 5.0 * np.ones(3))
    finally:
        SCALE = old


def test_python_control_flow_on_a_static_argument_falls_back_to_the_walk():
    def f(x, n):
        for _ in range(int(n)):  # needs a concrete n: not traceable abstractly if n is an array
            x = jnp.sin(x)
        return jnp.sum(x)

    x = jnp.linspace(0.0, 1.0, 4)
    for n in (2, jnp.asarray(3)):
        np.testing.assert_allclose(funcgrad.grad(f)(x, n), jax.grad(f)(x, n), rtol=1e-12)


def test_tracers_and_disable_jit_take_the_uncached_path():
    def f(x):
        return jnp.sum(x**3)

    xs = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(jax.vmap(funcgrad.grad(f))(xs), 3 * xs**2)
    with jax.disable_jit():
        np.testing.assert_allclose(funcgrad.grad(f)(xs[0]), 3 * xs[0] ** 2)


def test_errors_are_the_walks_errors():
    with pytest.raises(TypeError, match=r"scalar output, got shape \(3,\)"):
        funcgrad.grad(lambda x: x * 2)(jnp.ones(3))


def test_global_switch_and_bad_option():
    calls = []

    def f(x):
        calls.append(1)
        return jnp.sum(x)

    with _eager.eager_compile_disabled():
        funcgrad.grad(f)(jnp.ones(2))
        funcgrad.grad(f)(jnp.ones(2))
    assert len(calls) == 2 and _eager.eager_compile_enabled()
    with pytest.raises(TypeError, match="eager_compile must be None, True or False, got 'yes'"):
        funcgrad.grad(f, eager_compile="yes")
