"""Diagnostics and grad agree by construction: a diagnostic is the engine's walk with hooks.

On a zoo of models (custom_jvp, custom_vjp, jit, remat, cond, scan, conv, attention) the
cotangents the diagnostics' walks record for the inputs equal the gradients
``funcgrad.grad`` returns (uncached eager walk), bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad
from funcgrad.diagnostics._graph import _GraphWalker
from funcgrad.diagnostics._inspect import DiagnosticWatch
from funcgrad.diagnostics._nan import _NanWalker
from funcgrad.diagnostics._zero import _ZeroWalker


def normal(key, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.key(key), shape, jnp.float64)


def mlp(p, x):
    h = jax.nn.gelu(x @ p["w1"] + p["b1"][None, :])  # gelu: a custom_jvp inside a jit
    return jnp.mean(jax.nn.log_softmax(jax.nn.relu(h) @ p["w2"]) ** 2)


def attention(p, x):
    q, k, v = jnp.split(x @ p["qkv"], 3, axis=-1)
    att = jax.nn.softmax(q @ k.T / np.sqrt(q.shape[-1]), axis=-1)
    return jnp.sum(jnp.tanh(att @ v @ p["o"]) ** 2)


def gru_scan(p, xs):
    def step(h, x):
        z = jax.nn.sigmoid(x @ p["wx"] + h @ p["wh"])
        h = (1 - z) * h + z * jnp.tanh(x @ p["wx"])
        return h, jnp.sum(h**2)

    h, ys = lax.scan(step, jnp.zeros((2, 4)), xs)
    return jnp.sum(h) + jnp.mean(ys)


@jax.custom_vjp
def safe_norm(x):
    return jnp.sqrt(jnp.sum(x**2) + 1e-12)


safe_norm.defvjp(lambda x: (safe_norm(x), x), lambda x, g: (g * x / safe_norm(x),))


def remat_custom_vjp(w, x):
    block = jax.checkpoint(lambda w, x: jnp.tanh(jnp.tanh(x @ w) @ w))
    return safe_norm(block(w, x)) + jnp.sum(block(w, x) ** 2)


def with_cond(w, x):
    y = lax.cond(jnp.sum(x) > 0, lambda a: jnp.sin(a @ w), lambda a: jnp.cos(a) @ w, x)
    return jnp.sum(y**2)


def conv_pool(w, x):
    y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = lax.reduce_window(jax.nn.relu(y), -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return jnp.mean(y**2)


ZOO = {
    "mlp": (
        mlp,
        (
            {"w1": normal(0, (5, 8)), "b1": normal(1, (8,)), "w2": normal(2, (8, 3))},
            normal(3, (4, 5)),
        ),
    ),
    "attention": (
        attention,
        ({"qkv": normal(4, (6, 12)), "o": normal(5, (4, 6))}, normal(6, (5, 6))),
    ),
    "gru_scan": (
        gru_scan,
        ({"wx": normal(7, (3, 4)), "wh": normal(8, (4, 4))}, normal(9, (5, 2, 3))),
    ),
    "remat_custom_vjp": (remat_custom_vjp, (normal(10, (6, 6), 0.4), normal(11, (3, 6)))),
    "cond": (with_cond, (normal(12, (3, 3)), jnp.abs(normal(13, (2, 3))))),
    "conv_pool": (conv_pool, (normal(14, (3, 3, 2, 4), 0.3), normal(15, (1, 6, 6, 2)))),
}

WATCHES = {
    "base": lambda: DiagnosticWatch(),
    "explain_nans": lambda: _NanWalker(64),
    "why_zero": lambda: _ZeroWalker(),
}


def _recorded(watch, f, args):
    flat, tree = jax.tree.flatten(args)
    closed = jax.make_jaxpr(lambda *leaves: f(*jax.tree.unflatten(tree, leaves)))(*flat)
    outs, tape = watch.forward(closed.jaxpr, closed.consts, flat, [True] * len(flat))
    cts = watch.backward(closed.jaxpr, tape, [jnp.ones_like(o) for o in outs])
    return cts


@pytest.mark.parametrize("watch", sorted(WATCHES))
@pytest.mark.parametrize("model", sorted(ZOO))
def test_diagnostics_record_grads_bit_for_bit(model, watch):
    f, args = ZOO[model]
    with jax.numpy_rank_promotion("allow"):
        want = jax.tree.leaves(
            funcgrad.grad(f, argnums=tuple(range(len(args))), eager_compile=False)(*args)
        )
        w = WATCHES[watch]()
        got = _recorded(w, f, args)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_zoo_opens_every_kind_of_nested_jaxpr():
    opened = set()
    for f, args in ZOO.values():
        w = DiagnosticWatch()
        with jax.numpy_rank_promotion("allow"):
            _recorded(w, f, args)
        opened.update(lbl.split(" ")[0] for lbl in _scopes(w))
    # remat is found by its primitive (p.remat_p.name), never by a hard-coded name.
    assert {"jit", "custom_jvp_call", "remat2", "cond", "scan"} <= opened, opened


def test_graph_edges_carry_the_gradient_bit_for_bit():
    f, args = ZOO["remat_custom_vjp"]
    flat = jax.tree.leaves(args)
    w = _GraphWalker(("jit", "closed_call", "remat2"), ["w", "x"], [True, True])
    got = _recorded(w, f, args)
    want = funcgrad.grad(f, argnums=(0, 1), eager_compile=False)(*args)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(flat) == 2


def _scopes(watch):
    """Labels of every opened equation the watch saw (from where the engine homed them)."""
    return [watch.label(enc) for _, enc in watch.home.values() if enc is not None]
