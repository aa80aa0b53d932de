"""grad_norms inside a jitted optax step: a planted dead layer and vanishing depth show."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcgrad
from funcgrad.diagnostics import grad_norms, plot_grad_flow, stack_history


def _deep(n_layers=6, width=8, scale=0.3):
    keys = jax.random.split(jax.random.key(0), n_layers)
    return {
        "layers": [
            {
                "w": jax.random.normal(k, (width, width), jnp.float32) * scale,
                "b": jnp.zeros((width,), jnp.float32),
            }
            for k in keys
        ]
    }


def deep_loss(params, x, y):
    h = x
    for i, layer in enumerate(params["layers"]):
        w = jax.lax.stop_gradient(layer["w"]) if i == 2 else layer["w"]  # planted: frozen
        h = jax.nn.sigmoid(h @ w + layer["b"][None, :])
    return jnp.mean((h - y) ** 2)


def test_grad_norms_in_jit_match_numpy_and_show_the_dead_and_vanishing_layers(tmp_path):
    params = _deep()
    x = jax.random.normal(jax.random.key(1), (16, 8), jnp.float32)
    y = jnp.ones((16, 8), jnp.float32)
    opt = optax.sgd(0.5)

    @jax.jit
    def step(params, opt_state):
        loss, grads = funcgrad.value_and_grad(deep_loss)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        metrics = {"loss": loss, **grad_norms(grads, depth=2, prefix="grad/")}
        return optax.apply_updates(params, updates), opt_state, metrics, grads

    state = opt.init(params)
    history = []
    for _ in range(5):
        new_params, state, metrics, grads = step(params, state)
        history.append(jax.device_get(metrics))
        params = new_params
    last = history[-1]
    for i in range(6):
        g = grads["layers"][i]
        want = np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in g.values()))
        np.testing.assert_allclose(last[f"grad/layers/{i}"], want, rtol=1e-5)
    per_leaf = grad_norms(grads)
    assert float(per_leaf["layers/2/w"]) == 0.0 and float(per_leaf["layers/2/b"]) > 0.0
    assert last["grad/layers/0"] < 0.1 * last["grad/layers/5"]  # sigmoid stack vanishes
    series = stack_history(history, prefix="grad/")
    assert sorted(series) == [f"layers/{i}" for i in range(6)] and series["layers/0"].shape == (5,)
    fig = plot_grad_flow(history, prefix="grad/", path=str(tmp_path / "flow.png"))
    assert (tmp_path / "flow.png").stat().st_size > 10000 and len(fig.axes) == 2


def test_grad_norms_orders_and_errors():
    g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([-2.0])}
    assert {k: float(v) for k, v in grad_norms(g).items()} == {"a": 5.0, "b": 2.0}
    assert float(grad_norms(g, ord="max")["a"]) == 4.0
    assert float(grad_norms(g, ord="rms")["a"]) == pytest.approx(np.sqrt(12.5))
    with pytest.raises(ValueError, match="ord must be"):
        grad_norms(g, ord="l1")
    with pytest.raises(ValueError, match="no metric starts with prefix 'grad/'"):
        stack_history([{"loss": 1.0}], prefix="grad/")
