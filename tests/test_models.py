"""Whole models, written as users write them: funcgrad's gradients equal jax.grad's (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad

RTOL = 1e-6


@pytest.fixture(autouse=True)
def _numpy_style_broadcasting():
    # Models are written as users write them, with NumPy rank promotion (bias adds, scales).
    with jax.numpy_rank_promotion("allow"):
        yield


def assert_same_grads(loss, *args):
    got = jax.jit(funcgrad.grad(loss, argnums=tuple(range(len(args)))))(*args)
    want = jax.grad(loss, argnums=tuple(range(len(args))))(*args)
    for path, (a, b) in zip(
        jax.tree_util.tree_flatten_with_path(want)[0],
        zip(jax.tree.leaves(got), jax.tree.leaves(want)),
    ):
        assert a.shape == b.shape and a.dtype == b.dtype, path
        scale = max(float(jnp.max(jnp.abs(b))), 1e-12)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale, err_msg=str(path[0]))


def normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float64)


def test_mlp():
    k = jax.random.split(jax.random.key(0), 5)
    params = [
        (normal(k[0], (10, 32), 0.3), jnp.zeros(32)),
        (normal(k[1], (32, 3), 0.3), jnp.zeros(3)),
    ]
    x, labels = normal(k[2], (16, 10)), jax.random.randint(k[3], (16,), 0, 3)

    def loss(params, x):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b[None, :]
            h = jax.nn.gelu(h) if i < len(params) - 1 else h
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    assert_same_grads(loss, params, x)


def test_cnn_with_pooling():
    k = jax.random.split(jax.random.key(1), 5)
    params = {
        "c1": normal(k[0], (3, 3, 1, 4), 0.3),
        "c2": normal(k[1], (3, 3, 4, 8), 0.3),
        "w": normal(k[2], (8 * 3 * 3, 5), 0.1),
    }
    x = normal(k[3], (2, 12, 12, 1))
    dn = ("NHWC", "HWIO", "NHWC")

    def loss(p, x):
        h = jax.nn.relu(lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME", dimension_numbers=dn))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = jnp.tanh(lax.conv_general_dilated(h, p["c2"], (2, 2), "SAME", dimension_numbers=dn))
        h = lax.reduce_window(h, 0.0, lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "SAME") / 4.0
        logits = h.reshape(h.shape[0], -1) @ p["w"]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])

    assert_same_grads(loss, params, x)


def _layer_norm(x, g, b, eps=1e-5):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True)
    return (x - mu) * lax.rsqrt(var + eps) * g + b


def test_transformer_block():
    vocab, d, heads, seq, batch = 11, 16, 4, 6, 2
    k = jax.random.split(jax.random.key(2), 8)
    p = {
        "emb": normal(k[0], (vocab, d), 0.5),
        "qkv": normal(k[1], (d, 3 * d), d**-0.5),
        "o": normal(k[2], (d, d), d**-0.5),
        "ff1": normal(k[3], (d, 4 * d), d**-0.5),
        "ff2": normal(k[4], (4 * d, d), (4 * d) ** -0.5),
        "ln": (jnp.ones(d), jnp.zeros(d)),
    }
    tokens = jax.random.randint(k[5], (batch, seq), 0, vocab)
    targets = jax.random.randint(k[6], (batch, seq), 0, vocab)

    def loss(p):
        x = p["emb"][tokens]
        h = _layer_norm(x, *p["ln"])
        q, kk, v = jnp.split(h @ p["qkv"], 3, axis=-1)
        split = lambda t: t.reshape(batch, seq, heads, d // heads)  # noqa: E731
        att = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(kk)) / np.sqrt(d // heads)
        mask = jnp.tril(jnp.ones((seq, seq), bool))
        att = jnp.where(mask[None, None], att, -1e9)
        att = jax.nn.softmax(att, axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", att, split(v)).reshape(batch, seq, d)
        x = x + y @ p["o"]
        x = x + jax.nn.gelu(_layer_norm(x, *p["ln"]) @ p["ff1"]) @ p["ff2"]
        logits = x @ p["emb"].T
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))

    assert_same_grads(loss, p)


def test_gru_over_scan():
    d_in, d_h, steps = 3, 5, 7
    k = jax.random.split(jax.random.key(3), 4)
    p = {
        "wx": normal(k[0], (d_in, 3 * d_h), 0.5),
        "wh": normal(k[1], (d_h, 3 * d_h), 0.5),
        "b": jnp.zeros(3 * d_h),
    }
    xs = normal(k[2], (steps, 2, d_in))

    def cell(p, h, x):
        gx, gh = x @ p["wx"] + p["b"][None, :], h @ p["wh"]
        rx, zx, nx = jnp.split(gx, 3, axis=-1)
        rh, zh, nh = jnp.split(gh, 3, axis=-1)
        r, z = jax.nn.sigmoid(rx + rh), jax.nn.sigmoid(zx + zh)
        n = jnp.tanh(nx + r * nh)
        return (1 - z) * n + z * h

    def loss(p, xs):
        def step(h, x):
            h = cell(p, h, x)
            return h, jnp.sum(h**2)

        h, ys = lax.scan(step, jnp.zeros((2, d_h)), xs)
        return jnp.sum(h) + jnp.mean(ys)

    assert_same_grads(loss, p, xs)


def test_checkpointed_block_and_custom_vjp():
    @jax.custom_vjp
    def safe_norm(x):
        return jnp.sqrt(jnp.sum(x**2) + 1e-12)

    safe_norm.defvjp(lambda x: (safe_norm(x), x), lambda x, g: (g * x / safe_norm(x),))

    @jax.checkpoint
    def block(w, x):
        return jnp.tanh(jnp.tanh(x @ w) @ w)

    k = jax.random.split(jax.random.key(4), 2)
    w, x = normal(k[0], (6, 6), 0.4), normal(k[1], (3, 6))
    assert_same_grads(lambda w, x: safe_norm(block(w, x)) + jnp.sum(block(w, x) ** 2), w, x)


@pytest.mark.parametrize("dtype", [jnp.float32])
def test_mlp_float32_under_jit(dtype):
    k = jax.random.split(jax.random.key(5), 3)
    w = jax.random.normal(k[0], (8, 8), dtype)
    x = jax.random.normal(k[1], (4, 8), dtype)
    loss = lambda w, x: jnp.mean(jnp.tanh(x @ w) ** 2)  # noqa: E731
    got = jax.jit(funcgrad.grad(loss))(w, x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, jax.grad(loss)(w, x), rtol=1e-5, atol=1e-6)
