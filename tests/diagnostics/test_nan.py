"""NaN provenance: the jnp.where trap in a real layer, masked NaNs, NaNs reaching the loss."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad
from funcgrad.diagnostics import NonFiniteGradientError, debug_grad, explain_nans

from ._util import line_of

HERE = os.path.basename(__file__)
THIS = sys.modules[__name__]


@jax.jit
def rbf_features(points, centers):
    d2 = jnp.sum((points[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    return jnp.where(d2 > 0, jnp.sqrt(d2), 0.0)  # <- the where trap


def rbf_loss(centers, points, targets):
    dist = rbf_features(points, centers)
    return jnp.mean((dist @ jnp.ones((dist.shape[1],)) - targets) ** 2)


def _rbf_setup():
    points = jnp.asarray(np.random.default_rng(0).standard_normal((5, 2)))
    centers = jnp.concatenate([points[:1], jnp.ones((2, 2))])  # a center ON a data point
    return centers, points, jnp.zeros(5)


def test_where_trap_is_traced_to_its_line_with_the_double_where_fix():
    centers, points, targets = _rbf_setup()
    assert not np.all(np.isfinite(funcgrad.grad(rbf_loss)(centers, points, targets)))
    report = explain_nans(rbf_loss, centers, points, targets)
    assert not report.gradient_finite and report.bad_leaves == ["args[0]"]
    trap = report.traps[0]
    line = line_of("<- the where trap", THIS)
    assert trap.primitive == "sqrt" and f"{HERE}:{line}:" in trap.where
    assert "0 * inf = NaN" in trap.detail and "input 0 = 0" in trap.detail
    assert "d2_safe = jnp.where(d2 > 0, d2, 1.0)" in trap.fix
    assert "jnp.where(d2 > 0, jnp.sqrt(d2_safe), 0.0)" in trap.fix
    assert f"{HERE}:{line}" in trap.fix  # the jnp.where's own line
    assert "jnp.where trap first arises" in str(report)


def test_debug_grad_raises_with_the_report_and_passes_finite_gradients():
    centers, points, targets = _rbf_setup()
    with pytest.raises(NonFiniteGradientError, match="jnp.where trap.*sqrt"):
        debug_grad(rbf_loss)(centers, points, targets)
    ok = debug_grad(rbf_loss)(centers + 0.5, points, targets)
    np.testing.assert_allclose(ok, jax.grad(rbf_loss)(centers + 0.5, points, targets), rtol=1e-10)


def safe_log_loss(w, x):
    z = x @ w
    logs = jnp.where(z > 0, jnp.log(z), 0.0)  # <- masked log
    return jnp.sum(logs)


def test_masked_nan_is_reported_apart_and_does_not_reach_the_gradient():
    w = jnp.array([1.0, -1.0])
    x = jnp.array([[2.0, 1.0], [1.0, 3.0]])  # z = [1, -2]: log(-2) = NaN, masked
    report = explain_nans(safe_log_loss, w, x)
    assert report.gradient_finite and report.value_finite and not report.origins
    (masked,) = report.masked
    line = line_of("<- masked log", THIS)
    assert masked.primitive == "log" and f"{HERE}:{line}:" in masked.where
    assert "jnp.where" in masked.masked_by and f"{HERE}:{line}" in masked.masked_by
    assert "Produced but masked" in str(report)


def test_forward_nan_reaching_the_loss_is_named():
    def loss(w, x):
        return jnp.sum(jnp.log(x @ w))  # <- unmasked log

    report = explain_nans(loss, jnp.array([1.0, -1.0]), jnp.array([[1.0, 3.0]]))
    (ev,) = [e for e in report.forward if e.reaches_output]
    assert ev.primitive == "log" and f":{line_of('<- unmasked log', THIS)}:" in ev.where
    assert not report.value_finite
