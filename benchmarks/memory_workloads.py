"""Workloads for the memory benchmark: a 12-layer transformer and the 50-layer residual MLP.

Layers are unrolled in Python, as most users write them. ``blocks`` runs the same loss with
each layer wrapped by ``wrap`` (``jax.checkpoint`` with a policy, for the manual practice).

Example:
    >>> loss, params, batch, blocks = make_deep_transformer("float32", quick=True)
    >>> float(loss(params, *batch)) > 0
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .workloads import _normal, cross_entropy, layer_norm, resmlp_parts


def make_deep_transformer(dtype, quick, batch=None):
    layers, b, t, d, heads, vocab = (2, 2, 16, 32, 2, 64) if quick else (12, 8, 256, 512, 8, 1024)
    if quick == "medium":
        layers, b, t, d, heads, vocab = 3, 4, 128, 256, 4, 256
    b = batch or b
    rng = np.random.default_rng(5)
    s = d**-0.5
    params = {
        "embed": _normal(rng, (vocab, d), 1.0, dtype),
        "pos": _normal(rng, (t, d), 0.1, dtype),
    }
    for k in range(layers):
        for name, shape, scale in [
            ("wqkv", (d, 3 * d), s),
            ("wo", (d, d), s),
            ("w1", (d, 4 * d), s),
            ("w2", (4 * d, d), (4 * d) ** -0.5),
        ]:
            params[f"{name}{k:02d}"] = _normal(rng, shape, scale, dtype)
    params["unembed"] = _normal(rng, (d, vocab), s, dtype)
    tokens = jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, vocab, (b, t)), jnp.int32)
    causal = np.tril(np.ones((t, t), bool))
    dh = d // heads

    def block(p, h, k):
        a = layer_norm(h)
        qkv = (a @ p[f"wqkv{k:02d}"]).reshape(b, t, 3, heads, dh)
        q, kk, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        scores = (q @ kk.transpose(0, 1, 3, 2)) * dh**-0.5
        scores = jnp.where(causal[None, None], scores, jnp.asarray(-1e9, scores.dtype))
        att = jax.nn.softmax(scores, axis=-1) @ v
        h = h + att.transpose(0, 2, 1, 3).reshape(b, t, d) @ p[f"wo{k:02d}"]
        return h + jax.nn.gelu(layer_norm(h) @ p[f"w1{k:02d}"], approximate=True) @ p[f"w2{k:02d}"]

    def run(p, tokens, targets, wrap):
        h = p["embed"][tokens] + p["pos"][None]
        for k in range(layers):
            h = wrap(lambda p, h, k=k: block(p, h, k))(p, h)
        logits = layer_norm(h) @ p["unembed"]
        return cross_entropy(logits.reshape(b * t, vocab), targets.reshape(b * t))

    def loss(p, tokens, targets):
        return run(p, tokens, targets, _identity)

    def blocks(wrap):
        return lambda p, tokens, targets: run(p, tokens, targets, wrap)

    return loss, params, (tokens, targets), blocks


def make_deep_resmlp(dtype, quick, batch=None):
    params, data, run, _ = resmlp_parts(dtype, quick, batch)

    def loss(p, x, y):
        return run(p, x, y, _identity)

    def blocks(wrap):
        return lambda p, x, y: run(p, x, y, wrap)

    return loss, params, data, blocks


def _identity(f):
    return f


MODELS = {"transformer12": make_deep_transformer, "resmlp50": make_deep_resmlp}
