"""Eager calls mean what jax.grad means: Python runs at every call, programs are reused.

Each case runs the same calls through funcgrad.grad and jax.grad and compares, after
mutating one kind of state the function reads.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad
from funcgrad import _eager

SCALE = jnp.asarray(2.0)
TABLE = {"w": jnp.asarray(1.0)}
NP_WEIGHTS = np.ones(3)


def _scale():
    return SCALE


def _loss_global_via_helper(x):
    return jnp.sum(_scale() * x * x)


def _loss_dict(x):
    return jnp.sum(TABLE["w"] * jnp.sin(x))


def _loss_numpy(x):
    return jnp.sum(jnp.asarray(NP_WEIGHTS) * x**2)


def _both(f, *args, **kwargs):
    """funcgrad's and jax.grad's gradient of ``f`` at the same call."""
    return funcgrad.grad(f)(*args, **kwargs), jax.grad(f)(*args, **kwargs)


def _assert_same(f, *args):
    ours, ref = _both(f, *args)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    return ours


@pytest.fixture(autouse=True)
def _fresh_cache():
    _eager.clear_cache()
    yield
    _eager.clear_cache()


def test_global_read_by_a_helper_is_read_at_every_call():
    global SCALE
    x = jnp.ones(3)
    g = funcgrad.grad(_loss_global_via_helper)
    np.testing.assert_allclose(g(x), 4.0 * np.ones(3))
    old = SCALE
    try:
        SCALE = 2 * SCALE * 2  # rebinding the global
        np.testing.assert_allclose(g(x), jax.grad(_loss_global_via_helper)(x))
        np.testing.assert_allclose(g(x), 16.0 * np.ones(3))
    finally:
        SCALE = old
    assert _eager.eager_stats()["compiled"] == 1  # a new constant value is an argument


def test_bound_method_reads_self_data_at_every_call():
    class Model:
        def __init__(self):
            self.data = jnp.asarray([1.0, 2.0, 3.0])

        def loss(self, x):
            return jnp.sum(self.data * jnp.tanh(x))

    m = Model()
    g = funcgrad.grad(m.loss)
    x = jnp.linspace(0.0, 1.0, 3)
    first = g(x)
    m.data = m.data * 10.0
    np.testing.assert_allclose(g(x), jax.grad(m.loss)(x), rtol=1e-12)
    np.testing.assert_allclose(g(x), 10.0 * first, rtol=1e-12)


def test_dict_mutated_in_place_and_numpy_edited_in_place():
    x = jnp.linspace(0.1, 0.9, 3)
    g_dict, g_np = funcgrad.grad(_loss_dict), funcgrad.grad(_loss_numpy)
    g_dict(x), g_np(x)
    old_w = TABLE["w"]
    try:
        TABLE["w"] = jnp.asarray(-3.0)
        NP_WEIGHTS[1] = 5.0
        np.testing.assert_allclose(g_dict(x), jax.grad(_loss_dict)(x), rtol=1e-12)
        np.testing.assert_allclose(g_np(x), jax.grad(_loss_numpy)(x), rtol=1e-12)
        np.testing.assert_allclose(g_np(x)[1], 10.0 * x[1], rtol=1e-12)
    finally:
        TABLE["w"] = old_w
        NP_WEIGHTS[1] = 1.0


def test_side_effects_run_at_every_call_like_jax_grad():
    ours, theirs = [], []

    def make(log):
        def f(x):
            log.append(float(jnp.size(x)))  # a Python side effect
            return jnp.sum(jnp.sin(x))

        return f

    g, ref = funcgrad.grad(make(ours)), jax.grad(make(theirs))
    for _ in range(4):
        g(jnp.ones(3))
        ref(jnp.ones(3))
    assert ours == theirs == [3.0] * 4
    assert _eager.eager_stats()["compiled"] == 1 and _eager.eager_stats()["reused"] == 3


def test_python_int_and_float_arguments_do_not_recompile():
    def loss(w, x, step, beta=1.0):
        return jnp.sum(jnp.tanh(w * x)) * (1.0 + 0.01 * step) + beta * jnp.sum(w**2)

    g = funcgrad.value_and_grad(loss)
    w, x = jnp.linspace(-1.0, 1.0, 4), jnp.ones(4)
    for step in range(6):
        beta = 1.0 / (1.0 + step)
        (val, gw), (rval, rgw) = (
            g(w, x, step, beta=beta),
            jax.value_and_grad(loss)(w, x, step, beta=beta),
        )
        np.testing.assert_allclose(val, rval, rtol=1e-12)
        np.testing.assert_allclose(gw, rgw, rtol=1e-12)
        w = w - 0.1 * gw
    stats = _eager.eager_stats()
    assert stats["compiled"] == 1 and stats["jaxpr"] == 6, stats


def test_new_array_values_do_not_recompile_but_new_shapes_do():
    g = funcgrad.grad(lambda x: jnp.sum(jnp.cos(x) ** 2))
    for k in range(3):
        g(jnp.full(3, float(k)))
    assert _eager.eager_stats()["compiled"] == 1
    g(jnp.ones(5))
    assert _eager.eager_stats()["compiled"] == 2


def test_python_int_used_by_range_gets_a_program_per_value():
    def f(x, n):
        for _ in range(n):
            x = jnp.sin(x)
        return jnp.sum(x)

    x = jnp.linspace(0.0, 1.0, 4)
    for n in (2, 3, 2):
        np.testing.assert_allclose(funcgrad.grad(f)(x, n), jax.grad(f)(x, n), rtol=1e-12)
    stats = _eager.eager_stats()
    assert stats["jaxpr-static"] == 3 and stats["compiled"] == 2, stats


def test_signature_mode_is_the_opt_in_jit_semantics():
    calls = []

    def f(x):
        calls.append(1)
        return jnp.sum(x**2)

    g = funcgrad.grad(f, eager_compile="signature")
    for _ in range(3):
        np.testing.assert_allclose(g(jnp.ones(2)), 2.0 * np.ones(2))
    assert len(calls) == 1  # traced once, as under jax.jit


def test_walk_mode_tracers_and_disable_jit():
    calls = []

    def f(x):
        calls.append(1)
        return jnp.sum(x**3)

    with _eager.eager_compile_disabled():
        funcgrad.grad(f)(jnp.ones(2))
        funcgrad.grad(f)(jnp.ones(2))
    assert len(calls) == 2 and _eager.eager_compile_enabled()
    assert _eager.eager_stats()["compiled"] == 0 and _eager.eager_stats()["walked"] == 2
    xs = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(jax.vmap(funcgrad.grad(f))(xs), 3 * xs**2)
    np.testing.assert_allclose(jax.jit(funcgrad.grad(f))(xs[0]), 3 * xs[0] ** 2)
    with jax.disable_jit():
        np.testing.assert_allclose(funcgrad.grad(f)(xs[0]), 3 * xs[0] ** 2)


def test_a_primitive_without_lowering_is_walked_not_refused():
    prim = jax.extend.core.Primitive("eager_only_square")
    prim.def_impl(lambda x: x * x)
    prim.def_abstract_eval(lambda x: x)

    @funcgrad.register_vjp(prim)
    def eager_only_square_vjp(g, ans, x):
        del ans
        return (2 * g * x,)

    x = jnp.arange(3.0)
    np.testing.assert_allclose(funcgrad.grad(lambda x: jnp.sum(prim.bind(x)))(x), 2 * x)


def test_errors_and_bad_options():
    with pytest.raises(TypeError, match=r"scalar output, got shape \(3,\)"):
        funcgrad.grad(lambda x: x * 2)(jnp.ones(3))
    with pytest.raises(TypeError, match="eager_compile must be None, True, False or 'signature'"):
        funcgrad.grad(jnp.sum, eager_compile="yes")
    with pytest.raises(TypeError, match="set_eager_compile expected True, False or 'signature'"):
        funcgrad.set_eager_compile(1)


def test_reregistering_a_rule_is_not_served_a_stale_program():
    from jax.extend.core import primitives as p

    from funcgrad._registry import VJP_RULES

    g = funcgrad.grad(lambda x: jnp.sum(jnp.sin(x)))
    x = jnp.linspace(0.0, 1.0, 3)
    np.testing.assert_allclose(g(x), jnp.cos(x), rtol=1e-12)
    saved = VJP_RULES[p.sin_p]

    @funcgrad.register_vjp(p.sin_p)
    def planted_sin_vjp(g, ans, x, **params):
        return (g * 0.0,)

    try:
        np.testing.assert_allclose(g(x), np.zeros(3))
    finally:
        VJP_RULES[p.sin_p] = saved


def test_eager_doc_code_runs():
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "eager.md"
    code = "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
    assert "eager_stats" in code
    exec(compile(code, str(page), "exec"), {"__name__": "docs_eager"})


def test_a_structure_new_at_every_call_is_walked_not_recompiled_forever():
    counter = [0]

    def f(x):
        counter[0] += 1
        lr = 0.5 ** counter[0]  # a Python float computed inside f: a new literal every call
        return jnp.sum(jnp.sin(x) * lr)

    x = jnp.linspace(0.0, 1.0, 3)
    for k in range(1, 7):
        np.testing.assert_allclose(funcgrad.grad(f)(x), jnp.cos(x) * 0.5**k, rtol=1e-12)
    stats = _eager.eager_stats()
    assert stats["compiled"] == 3 and stats["walked"] == 3, stats
