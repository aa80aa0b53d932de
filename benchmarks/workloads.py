"""The benchmark workloads, written as users write them: a pure loss over (params, batch).

Each workload is a ``Workload``: ``make(dtype, quick) -> (loss, params, batch, sizes)``, where
``loss(params, *batch)`` returns a scalar and ``params`` is a dict of arrays in JAX layouts
(NHWC images, HWIO kernels, (in, out) weights). ``sizes`` records the dimensions used, for the
report. The PyTorch and autograd versions in ``peers.py`` compute the same function.

Example:
    >>> wl = WORKLOADS["mlp"]
    >>> loss, params, batch, sizes = wl.make("float32", quick=True)
    >>> float(loss(params, *batch)) > 0
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    title: str
    make: Callable  # (dtype, quick) -> (loss, params, batch, sizes)
    dtypes: tuple[str, ...]  # dtypes that are meaningful for this workload
    dtype_note: str = ""  # why a dtype is left out
    # The loss also takes keywords ``step`` (a Python int) and ``beta`` (a Python float) that
    # change at every call, as in a training loop with a schedule: see ``step_kwargs``.
    python_step: bool = False


def step_kwargs(k: int) -> dict:
    """The Python-scalar keywords of call ``k`` of a ``python_step`` workload."""
    return {"step": k, "beta": 1.0 / (1.0 + k)}


def _normal(rng, shape, scale, dtype):
    return jnp.asarray(rng.standard_normal(shape) * scale, dtype)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy; logits (N, K) float, labels (N,) int."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# ----- MLP 784-1024-1024-10 ------------------------------------------------------------------


def make_mlp(dtype, quick):
    dims, n = ((64, 32, 32, 10), 16) if quick else ((784, 1024, 1024, 10), 256)
    rng = np.random.default_rng(0)
    params = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        params[f"w{i}"] = _normal(rng, (a, b), a**-0.5, dtype)
        params[f"b{i}"] = jnp.zeros((b,), dtype)
    x = _normal(rng, (n, dims[0]), 1.0, dtype)
    labels = jnp.asarray(rng.integers(0, dims[-1], n), jnp.int32)

    def loss(params, x, labels):
        h = x
        for i in range(len(dims) - 1):
            h = h @ params[f"w{i}"] + params[f"b{i}"][None, :]
            h = jax.nn.relu(h) if i < len(dims) - 2 else h
        return cross_entropy(h, labels)

    return loss, params, (x, labels), {"dims": dims, "batch": n}


# ----- CNN: conv32, conv64, 2x2 max pool, dense 128, dense 10 -------------------------------


def make_cnn(dtype, quick):
    n, hw, c1, c2, d = (4, 8, 4, 8, 16) if quick else (128, 28, 32, 64, 128)
    rng = np.random.default_rng(1)
    flat = (hw // 2) ** 2 * c2
    params = {
        "k1": _normal(rng, (3, 3, 1, c1), 3**-1, dtype),
        "k2": _normal(rng, (3, 3, c1, c2), (9 * c1) ** -0.5, dtype),
        "w1": _normal(rng, (flat, d), flat**-0.5, dtype),
        "b1": jnp.zeros((d,), dtype),
        "w2": _normal(rng, (d, 10), d**-0.5, dtype),
        "b2": jnp.zeros((10,), dtype),
    }
    x = _normal(rng, (n, hw, hw, 1), 1.0, dtype)
    labels = jnp.asarray(rng.integers(0, 10, n), jnp.int32)

    def loss(p, x, labels):
        h = jax.nn.relu(
            lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME", dimension_numbers=NHWC)
        )
        h = jax.nn.relu(
            lax.conv_general_dilated(h, p["k2"], (1, 1), "SAME", dimension_numbers=NHWC)
        )
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["w1"] + p["b1"][None, :])
        return cross_entropy(h @ p["w2"] + p["b2"][None, :], labels)

    return loss, params, (x, labels), {"batch": n, "image": hw, "channels": (c1, c2), "dense": d}


# ----- transformer block: embedding, causal MHA, MLP, layer norms, cross-entropy -------------


def layer_norm(x, eps=1e-5):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * lax.rsqrt(var + eps)


def make_transformer(dtype, quick):
    b, t, d, heads, vocab = (2, 8, 16, 2, 32) if quick else (16, 128, 256, 4, 512)
    rng = np.random.default_rng(2)
    s = d**-0.5
    params = {
        "embed": _normal(rng, (vocab, d), 1.0, dtype),
        "pos": _normal(rng, (t, d), 0.1, dtype),
        "wq": _normal(rng, (d, d), s, dtype),
        "wk": _normal(rng, (d, d), s, dtype),
        "wv": _normal(rng, (d, d), s, dtype),
        "wo": _normal(rng, (d, d), s, dtype),
        "w1": _normal(rng, (d, 4 * d), s, dtype),
        "w2": _normal(rng, (4 * d, d), (4 * d) ** -0.5, dtype),
        "unembed": _normal(rng, (d, vocab), s, dtype),
    }
    tokens = jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)
    causal = np.tril(np.ones((t, t), bool))

    def loss(p, tokens, targets):
        h = p["embed"][tokens] + p["pos"][None]
        a = layer_norm(h)
        split = lambda z: z.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(a @ p["wq"]), split(a @ p["wk"]), split(a @ p["wv"])
        scores = (q @ k.transpose(0, 1, 3, 2)) * (d // heads) ** -0.5
        scores = jnp.where(causal[None, None], scores, jnp.asarray(-1e9, scores.dtype))
        att = jax.nn.softmax(scores, axis=-1) @ v
        h = h + att.transpose(0, 2, 1, 3).reshape(b, t, d) @ p["wo"]
        h = h + jax.nn.gelu(layer_norm(h) @ p["w1"], approximate=True) @ p["w2"]
        logits = layer_norm(h) @ p["unembed"]
        return cross_entropy(logits.reshape(b * t, vocab), targets.reshape(b * t))

    return loss, params, (tokens, targets), {"batch": b, "seq": t, "d": d, "heads": heads}


# ----- 2,000 chained elementwise operations on 16 numbers ------------------------------------


def chain_ops(xp, n):
    """The op sequence, for any array module with sin and tanh (jnp, torch, autograd.numpy)."""

    def run(x):
        for i in range(n):
            k = i % 4
            if k == 0:
                x = xp.sin(x)
            elif k == 1:
                x = x * 1.01
            elif k == 2:
                x = x + 0.5
            else:
                x = xp.tanh(x)
        return x

    return run


def make_chain(dtype, quick):
    n = 100 if quick else 2000
    x = jnp.linspace(-1.0, 1.0, 16, dtype=dtype)
    run = chain_ops(jnp, n)

    def loss(p):
        return jnp.sum(run(p["x"]))

    return loss, {"x": x}, (), {"ops": n, "numbers": 16}


# ----- GRU over lax.scan ---------------------------------------------------------------------


def make_gru(dtype, quick):
    steps, b, i, h = (4, 2, 3, 5) if quick else (64, 32, 32, 128)
    rng = np.random.default_rng(3)
    params = {}
    for gate in "zrh":
        params[f"w{gate}"] = _normal(rng, (i, h), i**-0.5, dtype)
        params[f"u{gate}"] = _normal(rng, (h, h), h**-0.5, dtype)
        params[f"b{gate}"] = jnp.zeros((h,), dtype)
    params["out"] = _normal(rng, (h, 1), h**-0.5, dtype)
    xs = _normal(rng, (steps, b, i), 1.0, dtype)

    def cell(p, hprev, x):
        z = jax.nn.sigmoid(x @ p["wz"] + hprev @ p["uz"] + p["bz"][None, :])
        r = jax.nn.sigmoid(x @ p["wr"] + hprev @ p["ur"] + p["br"][None, :])
        cand = jnp.tanh(x @ p["wh"] + (r * hprev) @ p["uh"] + p["bh"][None, :])
        hnew = (1 - z) * hprev + z * cand
        return hnew, hnew @ p["out"]

    def loss(p, xs):
        _, ys = lax.scan(lambda hc, x: cell(p, hc, x), jnp.zeros((b, h), xs.dtype), xs)
        return jnp.mean(jnp.square(ys))

    return loss, params, (xs,), {"steps": steps, "batch": b, "input": i, "hidden": h}


# ----- a training step whose schedule arrives as Python scalars ------------------------------


def make_steploop(dtype, quick):
    width, n = (8, 4) if quick else (64, 32)
    rng = np.random.default_rng(5)
    params = {
        "w1": _normal(rng, (width, width), width**-0.5, dtype),
        "b1": jnp.zeros((width,), dtype),
        "w2": _normal(rng, (width, 1), width**-0.5, dtype),
    }
    x = _normal(rng, (n, width), 1.0, dtype)
    y = _normal(rng, (n, 1), 1.0, dtype)

    def loss(p, x, y, step=0, beta=1.0):
        h = jnp.tanh(x @ p["w1"] + p["b1"][None, :])
        fit = jnp.mean(jnp.square(h @ p["w2"] - y))
        decay = sum(jnp.sum(jnp.square(w)) for w in p.values())
        return fit * (1.0 + 0.001 * step) + beta * 1e-3 * decay

    return loss, params, (x, y), {"width": width, "batch": n, "python args": "step, beta"}


# ----- 50-layer residual MLP -----------------------------------------------------------------


def resmlp_parts(dtype, quick, batch=None):
    """The residual MLP's parameters, batch and ``run(p, x, y, wrap)``, each layer wrapped by
    ``wrap`` (the identity for the plain loss; ``jax.checkpoint`` for the memory benchmark)."""
    layers, width, n = (5, 8, 4) if quick else (50, 256, 128)
    n = batch or n
    rng = np.random.default_rng(4)
    params = {}
    for k in range(layers):
        params[f"w{k:02d}"] = _normal(rng, (width, width), width**-0.5, dtype)
        params[f"b{k:02d}"] = jnp.zeros((width,), dtype)
    x = _normal(rng, (n, width), 1.0, dtype)
    y = _normal(rng, (n, width), 1.0, dtype)

    def layer(p, h, k):
        return h + 0.1 * jnp.tanh(h @ p[f"w{k:02d}"] + p[f"b{k:02d}"][None, :])

    def run(p, x, y, wrap):
        h = x
        for k in range(layers):
            h = wrap(lambda p, h, k=k: layer(p, h, k))(p, h)
        return jnp.mean(jnp.square(h - y))

    return params, (x, y), run, {"layers": layers, "width": width, "batch": n}


def make_resmlp(dtype, quick):
    params, batch, run, meta = resmlp_parts(dtype, quick)

    def loss(p, x, y):
        return run(p, x, y, lambda f: f)

    return loss, params, batch, meta


_BF16_NOTE = "float32 only: bfloat16 is benchmarked on the matmul/conv-bound workloads"
WORKLOADS = {
    w.name: w
    for w in [
        Workload("mlp", "MLP 784-1024-1024-10, batch 256", make_mlp, ("float32", "bfloat16")),
        Workload(
            "cnn",
            "CNN 28x28 conv32 conv64 pool dense128 dense10, batch 128",
            make_cnn,
            ("float32", "bfloat16"),
        ),
        Workload(
            "transformer",
            "transformer block, batch 16 seq 128 d 256, 4 heads",
            make_transformer,
            ("float32", "bfloat16"),
        ),
        Workload(
            "chain",
            "2,000 chained elementwise ops on 16 numbers",
            make_chain,
            ("float32",),
            _BF16_NOTE,
        ),
        Workload(
            "steploop",
            "MLP step with a Python int step and float beta changing every call",
            make_steploop,
            ("float32",),
            _BF16_NOTE,
            python_step=True,
        ),
        Workload(
            "gru",
            "GRU over lax.scan, 64 steps, batch 32, hidden 128",
            make_gru,
            ("float32",),
            _BF16_NOTE,
        ),
        Workload(
            "resmlp",
            "50-layer residual MLP, width 256, batch 128",
            make_resmlp,
            ("float32", "bfloat16"),
        ),
    ]
}
