"""check_grads' three-way verdict: kinks, unreliable differences, a wrong rule, float32."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import primitives as p

import funcgrad
from funcgrad import _check

from ._util import line_of, planted_rule


def test_relu_at_zero_is_a_kink_not_a_failure():
    x = jnp.array([0.0, 0.0, 1.0, -1.0], jnp.float32)  # ReLU units sitting exactly on 0
    report = funcgrad.check_grads(lambda x: jnp.sum(jax.nn.relu(x) * jnp.arange(1.0, 5.0)), x)
    row = report.leaves[0]
    assert report.ok and row.verdict == "kink", str(report)
    assert "non-differentiable point" in row.note and "ok (kink)" in str(report)


def test_abs_and_max_ties_are_kinks():
    x = jnp.array([0.0, 2.0], jnp.float64)
    assert funcgrad.check_grads(lambda x: jnp.sum(jnp.abs(x)), x).leaves[0].verdict == "kink"
    tie = jnp.array([1.5, 1.5, 0.5])
    assert funcgrad.check_grads(lambda x: jnp.max(x), tie).leaves[0].verdict == "kink"


def test_float32_model_passes_with_float64_differences():
    # Without x64 recomputation, float32 central differences miss by ~1e-3 and used to fail.
    k = jax.random.split(jax.random.key(0), 3)
    w = jax.random.normal(k[0], (5, 7), jnp.float32)
    x = jax.random.normal(k[1], (9, 5), jnp.float32)

    def loss(w, x):
        return jnp.mean(jnp.tanh(x @ w) ** 2) + 1e3  # a large offset: cancellation in FD

    report = funcgrad.check_grads(loss, w, x)
    assert report.ok and all(r.verdict == "ok" for r in report.leaves), str(report)
    assert all(r.fd_rel_err < 1e-4 for r in report.leaves)


def test_tolerance_is_not_scaled_by_array_size():
    # A rule 3e-4 off on each of 200,000 entries must fail: the float32 tolerance (2e-5)
    # comes from the dtype, not loosened by sqrt(size).
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (400, 500)), jnp.float32)

    def slightly_wrong_exp(g, ans, x, *, accuracy):  # planted fault: 3e-4 relative error
        del x, accuracy
        return (g * ans * 1.0003,)

    with planted_rule(p.exp_p, slightly_wrong_exp):
        report = funcgrad.check_grads(lambda x: jnp.sum(jnp.exp(x)), x, raise_on_mismatch=False)
    row = report.leaves[0]
    assert not report.ok and row.verdict == "funcgrad-wrong", str(report)
    assert 2e-4 < row.rel_err < 4e-4


def test_wrong_rule_is_the_odd_one_out():
    def wrong_sin(g, ans, x, *, accuracy):  # planted fault: sin' = sin
        del ans, accuracy
        return (g * jnp.sin(x),)

    with planted_rule(p.sin_p, wrong_sin):
        with pytest.raises(funcgrad.GradientMismatchError, match="funcgrad's rule is wrong"):
            funcgrad.check_grads(lambda x: jnp.sum(jnp.sin(x) * x), jnp.linspace(0.5, 1.5, 4))


def _fd(value, err=1e-12, kink=False, sides=(0.0, 0.0)):
    return _check.FDResult(value, err, kink, sides)


@pytest.mark.parametrize(
    "agree, g_ok, w_ok, fdr, verdict",
    [
        (True, True, True, _fd(1.0), "ok"),
        (True, False, False, _fd(1.0), "fd-unreliable"),
        (True, False, False, _fd(1.0, kink=True, sides=(0.0, 2.0)), "kink"),
        (False, False, True, _fd(1.0), "funcgrad-wrong"),
        (False, True, False, _fd(1.0), "jax-odd"),
        (False, False, False, _fd(1.0), "all-differ"),
    ],
)
def test_verdict_table(agree, g_ok, w_ok, fdr, verdict):
    g = np.array([1.0, 0.0])
    v = np.array([1.0, 0.0])
    got, note = _check._verdict(agree, g_ok, w_ok, fdr, g, v, 0.5, 0.1, 0.2)
    assert got == verdict and (verdict == "ok") == (note == "")
    assert (got in _check._PASSING) == (verdict not in ("funcgrad-wrong", "all-differ"))


def test_kink_with_different_one_sided_choices_is_valid_only_inside_the_slopes():
    g = np.array([1.0])
    inside, _ = _check._verdict(
        False,
        False,
        False,
        _fd(0.5, kink=True, sides=(0.0, 2.0)),
        g,
        np.array([1.0]),
        1.0,
        0.5,
        0.5,
    )
    outside, _ = _check._verdict(
        False,
        False,
        False,
        _fd(0.5, kink=True, sides=(2.0, 3.0)),
        g,
        np.array([1.0]),
        1.0,
        0.5,
        0.5,
    )
    assert inside == "kink-differs" and outside == "funcgrad-wrong"


# ---------------------------------------------------------------- a wrong custom rule (9.7)


def _square_with_wrong_bwd():
    @jax.custom_vjp  # WRONG-CUSTOM-VJP
    def square(x):
        return x * x

    square.defvjp(lambda x: (square(x), x), lambda x, g: (g * x,))  # should be 2 * g * x
    return square


def _cube_with_wrong_jvp():
    @jax.custom_jvp  # WRONG-CUSTOM-JVP
    def cube(x):
        return x**3

    cube.defjvp(lambda p, t: (cube(p[0]), 2 * p[0] ** 2 * t[0]))  # should be 3 x^2 t
    return cube


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("make", [_square_with_wrong_bwd, _cube_with_wrong_jvp])
def test_check_grads_catches_a_wrong_custom_rule(dtype, make):
    fn = make()
    x = jnp.linspace(0.5, 1.5, 4, dtype=dtype)
    loss = lambda x: jnp.sum(jnp.sin(jax.jit(fn)(x)))  # noqa: E731
    report = funcgrad.check_grads(loss, x, raise_on_mismatch=False)
    assert not report.ok
    assert report.leaves[0].verdict == _check.SHARED_WRONG
    assert report.leaves[0].max_abs_err == 0.0  # funcgrad and jax.grad agree
    marker = "WRONG-CUSTOM-" + ("VJP" if make is _square_with_wrong_bwd else "JVP")
    kind = "custom_vjp" if make is _square_with_wrong_bwd else "custom_jvp"
    line = line_of(marker, sys.modules[__name__])
    text = str(report)
    assert f"{kind} function {fn.__name__} at {__file__}:{line}" in text, text
    assert "WRONG" in text and "test_check.py" in text.split("called at ")[1]
    with pytest.raises(AssertionError, match=f"{kind} function {fn.__name__}"):
        funcgrad.testing.assert_grads_match(loss, x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_right_custom_rule_still_passes(dtype):
    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (square(x), x), lambda x, g: (2 * g * x,))
    x = jnp.linspace(0.5, 1.5, 4, dtype=dtype)
    loss = lambda x: jnp.sum(jnp.sin(square(x)))  # noqa: E731
    assert funcgrad.check_grads(loss, x).ok
    assert funcgrad.testing.assert_grads_match(loss, x).ok
