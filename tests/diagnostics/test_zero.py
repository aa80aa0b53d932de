"""why_zero: parameters behind argmax / round / stop_gradient, disconnected, dead, underflow."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.diagnostics import why_zero

from ._util import line_of

HERE = os.path.basename(__file__)
THIS = sys.modules[__name__]


@jax.jit
def router(params, x):
    scores = x @ params["w_route"]
    return jnp.argmax(scores, axis=-1)  # <- argmax routing


def moe_loss(params, x):
    expert = router(params, x)
    h = jax.nn.relu(x @ params["w_in"] + params["b_dead"][None, :])  # <- relu
    gate = jax.lax.stop_gradient(params["gate"])  # <- stop_gradient
    levels = jnp.round(params["scale"] * 4.0) / 4.0  # <- round
    _ = jnp.sin(params["aux"])  # computed, then discarded
    picked = h[jnp.arange(x.shape[0]), expert]
    tiny = jnp.sum(params["tiny"] * 1e-30) ** 2
    return jnp.mean(picked * gate * levels) + tiny + jnp.sum(x @ params["w_ok"])


def _setup():
    k = jax.random.split(jax.random.key(0), 3)
    params = {
        "w_route": jax.random.normal(k[0], (3, 4), jnp.float32),
        "w_in": jax.random.normal(k[1], (3, 4), jnp.float32),
        "b_dead": jnp.full((4,), -50.0, jnp.float32),  # every unit inactive
        "gate": jnp.ones((), jnp.float32),
        "scale": jnp.ones((), jnp.float32),
        "aux": jnp.ones((2,), jnp.float32),
        "unused": jnp.ones((2,), jnp.float32),
        "tiny": jnp.ones((3,), jnp.float32),
        "w_ok": jnp.ones((3, 2), jnp.float32),
    }
    return params, jax.random.normal(k[2], (5, 3), jnp.float32)


def test_every_kind_of_zero_gradient_is_explained():
    params, x = _setup()
    report = why_zero(moe_loss, params, x)
    status = {d.path: d.status for d in report.leaves}
    assert status == {
        "args[0]['aux']": "disconnected",
        "args[0]['b_dead']": "zero at this point",
        "args[0]['gate']": "blocked",
        "args[0]['scale']": "blocked",
        "args[0]['tiny']": "underflow",
        "args[0]['unused']": "unused",
        "args[0]['w_in']": "zero at this point",
        "args[0]['w_ok']": "connected",
        "args[0]['w_route']": "blocked",
    }, str(report)
    route = report["args[0]['w_route']"]
    where = f"{HERE}:{line_of('<- argmax routing', THIS)}:"
    assert any("'argmax' at" in b and where in b for b in route.blockers)
    assert any("gradient stops here" in s and where in s for s in route.route)
    assert "[inside jit 'router']" in route.blockers[0]
    assert f"{HERE}:{line_of('<- stop_gradient', THIS)}:" in report["args[0]['gate']"].blockers[0]
    assert f"{HERE}:{line_of('<- round', THIS)}:" in report["args[0]['scale']"].blockers[0]
    dead = report["args[0]['b_dead']"]
    assert any(f"{HERE}:{line_of('<- relu', THIS)}:" in b for b in dead.blockers)
    assert "float64 it is not" in report["args[0]['tiny']"].explanation
    assert "BLOCKED" in str(report)


def test_connected_model_has_nothing_to_report():
    params, x = _setup()
    report = why_zero(lambda p, x: jnp.sum(jnp.tanh(x @ p["w_ok"])), params, x)
    assert [d.path for d in report.zero] == [
        f"args[0]['{k}']" for k in sorted(params) if k != "w_ok"
    ]
    assert report["args[0]['w_ok']"].status == "connected"
    assert np.all(report["args[0]['unused']"].status == "unused")
