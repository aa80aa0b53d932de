"""blame: a planted wrong rule inside a real model is named, with the test file's line."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import Primitive
from jax.extend.core import primitives as p

import funcgrad
from funcgrad.diagnostics import blame

from ._util import line_of, planted_rule

HERE = os.path.basename(__file__)


@jax.jit
def dense_tanh(w, b, x):
    return jnp.tanh(x @ w + b[None, :])  # <- tanh in a jitted layer


def mlp_loss(params, x, y):
    h = dense_tanh(params["w1"], params["b1"], x)
    h = jax.nn.relu(h @ params["w2"])
    return jnp.mean((h @ params["w3"] - y) ** 2)


def rnn_loss(params, xs):
    def cell(h, x):
        h = jax.nn.sigmoid(h @ params["u"] + x @ params["v"])  # <- logistic in a scan body
        return h, jnp.sum(h)

    _, ys = jax.lax.scan(cell, jnp.zeros(3, jnp.float32), xs)
    return jnp.sum(ys**2)


def _mlp_setup():
    k = jax.random.split(jax.random.key(0), 5)
    params = {
        "w1": jax.random.normal(k[0], (4, 8), jnp.float32) * 0.5,
        "b1": jnp.full((8,), 0.1, jnp.float32),
        "w2": jax.random.normal(k[1], (8, 8), jnp.float32) * 0.5,
        "w3": jax.random.normal(k[2], (8, 2), jnp.float32) * 0.5,
    }
    return params, jax.random.normal(k[3], (6, 4), jnp.float32), jnp.ones((6, 2), jnp.float32)


def wrong_tanh_vjp(g, ans, x, *, accuracy):  # planted fault: tanh' = 1 - tanh (not squared)
    del x, accuracy
    return (g * (1 - ans),)


def test_blame_names_planted_tanh_rule_and_its_line():
    params, x, y = _mlp_setup()
    with planted_rule(p.tanh_p, wrong_tanh_vjp):
        report = blame(mlp_loss, params, x, y, argnums=0)
    d = report.first
    assert d is not None and d.primitive == "tanh" and d.kind == "rule"
    assert f"{HERE}:{line_of('<- tanh in a jitted layer', sys.modules[__name__])}:" in d.where
    assert "jit 'dense_tanh'" in d.context
    assert "side with jax.vjp" in d.verdict and "funcgrad's rule is wrong" in d.verdict
    assert "p.tanh_p.bind" in d.repro and "shows the disagreement" in d.repro_note
    assert d.rel_err > 1e-2 and len(report.divergences) == 1
    text = str(report)
    assert "blame: funcgrad's VJP rule for 'tanh'" in text and HERE in text


def test_blame_reports_nothing_when_rules_are_right():
    params, x, y = _mlp_setup()
    report = blame(mlp_loss, params, x, y, argnums=0)
    assert report.ok and report.first is None and report.n_checked >= 10
    assert "no equation diverges" in str(report)


def test_blame_opens_scan_body():
    k = jax.random.split(jax.random.key(1), 3)
    params = {
        "u": jax.random.normal(k[0], (3, 3), jnp.float32),
        "v": jax.random.normal(k[1], (2, 3), jnp.float32),
    }
    xs = jax.random.normal(k[2], (4, 2), jnp.float32)

    def wrong_logistic_vjp(g, ans, x, *, accuracy):  # planted fault: drops the (1 - s) factor
        del x, accuracy
        return (g * ans,)

    with planted_rule(p.logistic_p, wrong_logistic_vjp):
        report = blame(rnn_loss, params, xs)
    d = report.first
    assert d.primitive == "logistic"
    assert f"{HERE}:{line_of('<- logistic in a scan body', sys.modules[__name__])}:" in d.where
    assert d.context.startswith("scan > step 3")  # backward order: the last step comes first


softclip_p = Primitive("softclip")  # a user's own primitive: JAX has no derivative for it
softclip_p.def_impl(lambda x: x / (1 + jnp.abs(x)))
softclip_p.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))


def test_blame_falls_back_to_finite_differences_for_user_primitive():
    def loss(w, x):
        return jnp.sum(softclip_p.bind(x @ w) ** 2)  # <- user primitive

    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 2)))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)))

    def right(g, ans, z):
        return (g / (1 + jnp.abs(z)) ** 2,)

    def wrong(g, ans, z):  # planted fault: forgets the square
        return (g / (1 + jnp.abs(z)),)

    with planted_rule(softclip_p, right):
        assert blame(loss, w, x, argnums=0).ok
    with planted_rule(softclip_p, wrong):
        report = blame(loss, w, x, argnums=0)
    d = report.first
    assert d.primitive == "softclip" and d.kind == "fd-only"
    assert "JAX cannot differentiate 'softclip'" in d.verdict
    assert f"{HERE}:{line_of('<- user primitive', sys.modules[__name__])}:" in d.where


def test_blame_reports_a_rule_that_raises():
    def broken(g, ans, x, *, accuracy):
        raise ValueError("boom in the rule")

    params, x, y = _mlp_setup()
    with planted_rule(p.tanh_p, broken):
        d = blame(mlp_loss, params, x, y, argnums=0).first
    assert d.kind == "error" and "boom in the rule" in d.verdict and d.primitive == "tanh"


def test_check_grads_verdict_names_the_wrong_rule():
    params, x, y = _mlp_setup()
    with planted_rule(p.tanh_p, wrong_tanh_vjp):
        with pytest.raises(funcgrad.GradientMismatchError) as err:
            funcgrad.check_grads(mlp_loss, params, x, y, argnums=0)
    msg = str(err.value)
    assert "funcgrad's rule is wrong" in msg and "MISMATCH (funcgrad-wrong)" in msg
    assert "blame: funcgrad's VJP rule for 'tanh'" in msg and HERE in msg
