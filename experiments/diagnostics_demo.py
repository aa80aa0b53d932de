"""Every gradient diagnostic on a real example: the reports and pictures of docs/diagnostics.md.

    python experiments/diagnostics_demo.py            # full: writes docs/img/, prints reports
    python experiments/diagnostics_demo.py --quick    # small and fast (the smoke test)

Planted faults, each in a realistic model: a wrong tanh rule (blame, check_grads), a
``jnp.where`` around ``sqrt`` (explain_nans), a router behind argmax and a frozen gate
(why_zero), a deep sigmoid network (gradient flow).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend.core import primitives as p

import funcgrad
from funcgrad import diagnostics as dx
from funcgrad.rules.elementwise import tanh_vjp


@contextlib.contextmanager
def wrong_tanh_rule():
    """Plant tanh' = 1 - tanh (the square forgotten), then put the real rule back."""

    @funcgrad.register_vjp(p.tanh_p)
    def wrong_tanh_vjp(g, ans, x, *, accuracy):
        del x, accuracy
        return (g * (1 - ans),)

    try:
        yield
    finally:
        funcgrad.register_vjp(p.tanh_p)(tanh_vjp)


def difference_of_squares(x, y):
    return (x + y) * (x - y)


@jax.jit
def dense(w, b, x):
    return jnp.tanh(x @ w + b[None, :])


def two_layer(params, x, y):
    h = dense(params["w1"], params["b1"], x)
    return jnp.mean((h @ params["w2"] - y) ** 2)


def transformer_block(params, x):
    def layer_norm(h):
        mu = jnp.mean(h, -1, keepdims=True)
        return (h - mu) / jnp.sqrt(jnp.var(h, -1, keepdims=True) + 1e-5)

    def attention(h):
        q, k, v = h @ params["wq"], h @ params["wk"], h @ params["wv"]
        a = jax.nn.softmax(q @ k.T / np.sqrt(q.shape[-1]), axis=-1)
        return (a @ v) @ params["wo"]

    def mlp(h):
        return jax.nn.gelu(h @ params["w1"]) @ params["w2"]

    h = x + attention(layer_norm(x))
    h = h + mlp(layer_norm(h))
    return jnp.mean(h**2)


@jax.jit
def rbf_features(points, centers):
    d2 = jnp.sum((points[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    return jnp.where(d2 > 0, jnp.sqrt(d2), 0.0)


def rbf_loss(centers, points):
    return jnp.mean(rbf_features(points, centers) ** 2)


def routed_loss(params, x):
    expert = jnp.argmax(x @ params["router"], axis=-1)
    gate = jax.lax.stop_gradient(params["gate"])
    h = jnp.tanh(x @ params["experts"])
    return jnp.mean(h[jnp.arange(x.shape[0]), expert] * gate)


def deep_sigmoid_loss(params, x, y):
    h = x
    for layer in params:
        h = jax.nn.sigmoid(h @ layer["w"] + layer["b"][None, :])
    return jnp.mean((h - y) ** 2)


def _normal(key, shape, scale=1.0):
    return jax.random.normal(key, shape, jnp.float32) * scale


def section(title: str, body: str) -> str:
    text = f"\n## {title}\n{body}\n"
    print(text)
    return text


def run(out: str, quick: bool) -> dict:
    os.makedirs(out, exist_ok=True)
    k = jax.random.split(jax.random.key(0), 12)
    results = {}
    pic = dx.draw_graph(
        difference_of_squares,
        3.0,
        2.0,
        argnums=(0, 1),
        arg_names=["x", "y"],
        path=[f"{out}/graph_difference_of_squares.svg", f"{out}/graph_difference_of_squares.png"],
    )
    results["graph_dos"] = pic
    params = {
        "w1": _normal(k[0], (3, 4)),
        "b1": jnp.zeros(4, jnp.float32),
        "w2": _normal(k[1], (4, 1)),
    }
    x, y = _normal(k[2], (8, 3)), jnp.ones((8, 1), jnp.float32)
    dx.draw_graph(
        two_layer,
        params,
        x,
        y,
        arg_names=["params", "x", "y"],
        path=[f"{out}/graph_two_layer.svg", f"{out}/graph_two_layer.png"],
    )
    with wrong_tanh_rule():
        blame = dx.blame(two_layer, params, x, y, argnums=0)
        check = funcgrad.check_grads(two_layer, params, x, y, argnums=0, raise_on_mismatch=False)
    results["blame"] = section("blame (planted: wrong tanh rule)", str(blame))
    results["check"] = section("check_grads (planted: wrong tanh rule)", str(check))
    kink = funcgrad.check_grads(lambda z: jnp.sum(jax.nn.relu(z)), jnp.array([0.0, 1.0, -2.0]))
    results["kink"] = section("check_grads at a ReLU kink", str(kink))
    pts = _normal(k[3], (5, 2))
    centers = jnp.concatenate([pts[:1], jnp.ones((2, 2), jnp.float32)])
    results["nans"] = section(
        "explain_nans (planted: jnp.where around sqrt)",
        str(dx.explain_nans(rbf_loss, centers, pts)),
    )
    rparams = {
        "router": _normal(k[4], (3, 4)),
        "gate": jnp.ones((), jnp.float32),
        "experts": _normal(k[5], (3, 4)),
        "unused": jnp.ones(2, jnp.float32),
    }
    results["zero"] = section(
        "why_zero (planted: argmax router, frozen gate, unused leaf)",
        str(dx.why_zero(routed_loss, rparams, _normal(k[6], (6, 3)))),
    )
    if not quick:
        d = 16
        bparams = {
            n: _normal(k[7 + i % 4], (d, d), 1 / np.sqrt(d))
            for i, n in enumerate(["wq", "wk", "wv", "wo", "w1", "w2"])
        }
        pic = dx.draw_graph(
            transformer_block,
            bparams,
            _normal(k[11], (6, d)),
            max_nodes=30,
            path=[f"{out}/graph_transformer_block.svg", f"{out}/graph_transformer_block.png"],
        )
        results["block_mode"] = pic.mode
    results["flow"] = gradient_flow(out, steps=5 if quick else 200)
    return results


def gradient_flow(out: str, steps: int) -> list[dict]:
    """Train a deep sigmoid network; per-layer gradient norms come out of the jitted step."""
    keys = jax.random.split(jax.random.key(1), 9)
    params = [{"w": _normal(kk, (16, 16), 0.5), "b": jnp.zeros(16, jnp.float32)} for kk in keys[:8]]
    x = _normal(keys[8], (64, 16))
    y = (jnp.sin(x) > 0).astype(jnp.float32)
    opt = optax.sgd(0.5)

    @jax.jit
    def step(params, state):
        loss, grads = funcgrad.value_and_grad(deep_sigmoid_loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        metrics = {"loss": loss, **dx.grad_norms(grads, depth=1, prefix="grad/layer ")}
        return optax.apply_updates(params, updates), state, metrics

    state, history = opt.init(params), []
    for _ in range(steps):
        params, state, metrics = step(params, state)
        history.append(jax.device_get(metrics))
    dx.plot_grad_flow(
        history,
        prefix="grad/",
        path=f"{out}/grad_flow.png",
        title="8-layer sigmoid network: gradients vanish towards the input",
    )
    first, last = history[-1]["grad/layer 0"], history[-1]["grad/layer 7"]
    print(
        f"\ngradient norm, last step: layer 0 {first:.2e}, layer 7 {last:.2e} "
        f"(ratio {first / last:.1e})"
    )
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run (smoke test)")
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "..", "docs", "img"),
        help="where pictures go",
    )
    args = parser.parse_args(argv)
    return run(os.path.abspath(args.out), args.quick)


if __name__ == "__main__":
    main()
