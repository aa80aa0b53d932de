"""The same workloads in PyTorch (eager and ``torch.compile``) and in HIPS autograd.

Each ``*_step(name, params, batch, ...)`` returns ``(step, to_jax)``: ``step()`` computes the
loss and every parameter gradient once (what is timed); ``to_jax(result)`` turns its result into
``(loss: float, grads: dict of numpy arrays in JAX layouts)`` for the correctness check.
Missing packages are reported by ``unavailable(peer)`` as a reason string, never an exception.

Example:
    >>> reason = unavailable("torch")  # None when torch imports, else why not
"""

from __future__ import annotations

import importlib

import jax.numpy as jnp
import numpy as np

from .workloads import chain_ops


def unavailable(peer: str) -> str | None:
    """Why ``peer`` ("torch" or "autograd") cannot run here, or None when it can."""
    try:
        importlib.import_module(peer)
    except ImportError as e:
        extra = "pip install 'funcgrad[bench]'" if peer in ("torch", "autograd") else ""
        return f"{peer} is not importable ({e}); {extra}"
    return None


def _np32(x):
    """A NumPy copy of ``x``; floating arrays (bfloat16 included) become float32."""
    a = np.asarray(x)
    return np.asarray(a, np.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a


# ----- layouts: JAX (NHWC, HWIO, flatten H,W,C) <-> PyTorch (NCHW, OIHW, flatten C,H,W) -----


def _cnn_to_torch(params, batch):
    p = dict(params)
    p["k1"], p["k2"] = (np.ascontiguousarray(p[k].transpose(3, 2, 0, 1)) for k in ("k1", "k2"))
    w1 = p["w1"]
    c2 = params["k2"].shape[-1]
    side = int(round((w1.shape[0] // c2) ** 0.5))
    p["w1"] = np.ascontiguousarray(
        w1.reshape(side, side, c2, -1).transpose(2, 0, 1, 3).reshape(w1.shape)
    )
    x, labels = batch
    return p, (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), labels)


def _cnn_grads_to_jax(g, params):
    g = dict(g)
    g["k1"], g["k2"] = (g[k].transpose(2, 3, 1, 0) for k in ("k1", "k2"))
    c2 = params["k2"].shape[-1]
    w1 = g["w1"]
    side = int(round((w1.shape[0] // c2) ** 0.5))
    g["w1"] = w1.reshape(c2, side, side, -1).transpose(1, 2, 0, 3).reshape(w1.shape)
    return g


# ----- PyTorch ---------------------------------------------------------------------------------


def _torch_losses(torch):
    f = torch.nn.functional

    def ce(logits, labels):
        return f.cross_entropy(logits.float(), labels.long())

    def mlp(p, x, labels):
        n = len([k for k in p if k.startswith("w")])
        h = x
        for i in range(n):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            h = torch.relu(h) if i < n - 1 else h
        return ce(h, labels)

    def cnn(p, x, labels):
        h = torch.relu(f.conv2d(x, p["k1"], padding=1))
        h = torch.relu(f.conv2d(h, p["k2"], padding=1))
        h = f.max_pool2d(h, 2)
        h = torch.relu(h.flatten(1) @ p["w1"] + p["b1"])
        return ce(h @ p["w2"] + p["b2"], labels)

    def ln(x):
        return f.layer_norm(x, x.shape[-1:], eps=1e-5)

    def transformer(p, tokens, targets):
        b, t = tokens.shape
        d = p["wq"].shape[0]
        heads = p["heads"]
        h = p["embed"][tokens] + p["pos"][None]
        a = ln(h)

        def split(z):
            return z.reshape(b, t, heads, d // heads).transpose(1, 2)

        q, k, v = split(a @ p["wq"]), split(a @ p["wk"]), split(a @ p["wv"])
        scores = (q @ k.transpose(2, 3)) * (d // heads) ** -0.5
        scores = scores.masked_fill(~p["causal"], -1e9)
        att = torch.softmax(scores, dim=-1) @ v
        h = h + att.transpose(1, 2).reshape(b, t, d) @ p["wo"]
        h = h + f.gelu(ln(h) @ p["w1"], approximate="tanh") @ p["w2"]
        logits = ln(h) @ p["unembed"]
        return ce(logits.reshape(b * t, -1), targets.reshape(b * t))

    def chain(p, n):
        return chain_ops(torch, n)(p["x"]).sum()

    def gru(p, xs):
        steps, b, _ = xs.shape
        h = torch.zeros(b, p["uz"].shape[0], dtype=xs.dtype)
        total = 0.0
        for s in range(steps):
            x = xs[s]
            z = torch.sigmoid(x @ p["wz"] + h @ p["uz"] + p["bz"])
            r = torch.sigmoid(x @ p["wr"] + h @ p["ur"] + p["br"])
            cand = torch.tanh(x @ p["wh"] + (r * h) @ p["uh"] + p["bh"])
            h = (1 - z) * h + z * cand
            total = total + torch.sum(torch.square(h @ p["out"]))
        return total / (steps * b)

    def resmlp(p, x, y):
        h = x
        for k in range(len(p) // 2):
            h = h + 0.1 * torch.tanh(h @ p[f"w{k:02d}"] + p[f"b{k:02d}"])
        return torch.mean(torch.square(h - y))

    return {
        "mlp": mlp,
        "cnn": cnn,
        "transformer": transformer,
        "chain": chain,
        "gru": gru,
        "resmlp": resmlp,
    }


def torch_step(name, params, batch, dtype: str, compiled: bool, sizes: dict):
    """PyTorch loss + ``torch.autograd.grad`` of every parameter; optionally ``torch.compile``."""
    import torch

    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    np_params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    np_batch = tuple(_np32(b) for b in batch)
    if name == "cnn":
        np_params, np_batch = _cnn_to_torch(np_params, np_batch)
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # the same kind of device as JAX's
    tparams = {
        k: torch.tensor(v, dtype=tdtype, device=dev, requires_grad=True)
        for k, v in np_params.items()
    }
    tbatch = tuple(
        torch.tensor(b, dtype=tdtype if np.issubdtype(b.dtype, np.floating) else None, device=dev)
        for b in np_batch
    )
    loss_fn = _torch_losses(torch)[name]
    extra = {}
    if name == "transformer":
        t = sizes["seq"]
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=dev))
        extra = {"heads": sizes["heads"], "causal": causal}
    if name == "chain":
        tbatch = (sizes["ops"],)
    keys = list(tparams)

    def loss_of(*leaves_and_batch):
        p = dict(zip(keys, leaves_and_batch[: len(keys)], strict=True)) | extra
        return loss_fn(p, *leaves_and_batch[len(keys) :])

    run = torch.compile(loss_of) if compiled else loss_of
    leaves = [tparams[k] for k in keys]

    def step():
        loss = run(*leaves, *tbatch)
        grads = torch.autograd.grad(loss, leaves)
        if dev == "cuda":
            torch.cuda.synchronize()  # time the work, not its launch
        return loss, grads

    def to_jax(result):
        loss, grads = result
        g = {k: v.detach().float().cpu().numpy() for k, v in zip(keys, grads, strict=True)}
        if name == "cnn":
            g = _cnn_grads_to_jax(g, {k: np.asarray(v) for k, v in params.items()})
        return float(loss.detach().float().cpu()), g

    return step, to_jax


# ----- HIPS autograd ---------------------------------------------------------------------------


def _autograd_losses(anp, logsumexp):
    def ce(logits, labels):
        logp = logits - logsumexp(logits, axis=1, keepdims=True)
        return -anp.mean(logp[np.arange(len(labels)), labels])

    def mlp(p, x, labels):
        n = len([k for k in p if k.startswith("w")])
        h = x
        for i in range(n):
            h = anp.dot(h, p[f"w{i}"]) + p[f"b{i}"]
            h = anp.maximum(h, 0.0) if i < n - 1 else h
        return ce(h, labels)

    def conv_same(x, k):
        n, hh, ww, c = x.shape
        xp = anp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), "constant")
        cols = anp.concatenate(
            [xp[:, i : i + hh, j : j + ww, :] for i in range(3) for j in range(3)], axis=-1
        )
        return anp.dot(cols.reshape(n * hh * ww, 9 * c), k.reshape(9 * c, -1)).reshape(
            n, hh, ww, -1
        )

    def cnn(p, x, labels):
        h = anp.maximum(conv_same(x, p["k1"]), 0.0)
        h = anp.maximum(conv_same(h, p["k2"]), 0.0)
        n, hh, ww, c = h.shape
        h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=4).max(axis=2)
        h = anp.maximum(anp.dot(h.reshape(n, -1), p["w1"]) + p["b1"], 0.0)
        return ce(anp.dot(h, p["w2"]) + p["b2"], labels)

    def ln(x):
        mu = anp.mean(x, axis=-1, keepdims=True)
        var = anp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        return (x - mu) / anp.sqrt(var + 1e-5)

    def gelu(x):
        return 0.5 * x * (1 + anp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    def transformer(p, tokens, targets, heads, causal):
        b, t = tokens.shape
        d = p["wq"].shape[0]
        h = p["embed"][tokens] + p["pos"][None]
        a = ln(h)

        def split(z):
            return anp.transpose(anp.reshape(z, (b, t, heads, d // heads)), (0, 2, 1, 3))

        q, k, v = split(anp.dot(a, p["wq"])), split(anp.dot(a, p["wk"])), split(anp.dot(a, p["wv"]))
        scores = anp.matmul(q, anp.transpose(k, (0, 1, 3, 2))) * (d // heads) ** -0.5
        scores = anp.where(causal[None, None], scores, -1e9)
        e = anp.exp(scores - anp.max(scores, axis=-1, keepdims=True))
        att = anp.matmul(e / anp.sum(e, axis=-1, keepdims=True), v)
        h = h + anp.dot(anp.reshape(anp.transpose(att, (0, 2, 1, 3)), (b, t, d)), p["wo"])
        h = h + anp.dot(gelu(anp.dot(ln(h), p["w1"])), p["w2"])
        logits = anp.dot(ln(h), p["unembed"])
        return ce(anp.reshape(logits, (b * t, -1)), targets.reshape(b * t))

    def chain(p, n):
        return anp.sum(chain_ops(anp, n)(p["x"]))

    def gru(p, xs):
        steps, b, _ = xs.shape
        h = np.zeros((b, p["uz"].shape[0]), xs.dtype)
        total = 0.0
        sig = lambda z: 0.5 * (anp.tanh(0.5 * z) + 1)  # noqa: E731
        for s in range(steps):
            x = xs[s]
            z = sig(anp.dot(x, p["wz"]) + anp.dot(h, p["uz"]) + p["bz"])
            r = sig(anp.dot(x, p["wr"]) + anp.dot(h, p["ur"]) + p["br"])
            cand = anp.tanh(anp.dot(x, p["wh"]) + anp.dot(r * h, p["uh"]) + p["bh"])
            h = (1 - z) * h + z * cand
            total = total + anp.sum(anp.dot(h, p["out"]) ** 2)
        return total / (steps * b)

    def resmlp(p, x, y):
        h = x
        for k in range(len(p) // 2):
            h = h + 0.1 * anp.tanh(anp.dot(h, p[f"w{k:02d}"]) + p[f"b{k:02d}"])
        return anp.mean((h - y) ** 2)

    return {
        "mlp": mlp,
        "cnn": cnn,
        "transformer": transformer,
        "chain": chain,
        "gru": gru,
        "resmlp": resmlp,
    }


def autograd_step(name, params, batch, dtype: str, sizes: dict):
    """HIPS autograd's ``value_and_grad`` of the numpy version (float32 only)."""
    if dtype != "float32":
        raise ValueError(f"HIPS autograd runs on NumPy, which has no {dtype}.")
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.special import logsumexp

    loss_fn = _autograd_losses(anp, logsumexp)[name]
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    args = tuple(_np32(b) for b in batch)
    if name == "transformer":
        t = sizes["seq"]
        args = (*args, sizes["heads"], np.tril(np.ones((t, t), bool)))
    if name == "chain":
        args = (sizes["ops"],)
    vg = autograd.value_and_grad(loss_fn)

    def step():
        return vg(p, *args)

    def to_jax(result):
        loss, g = result
        return float(loss), {k: np.asarray(v, np.float32) for k, v in g.items()}

    return step, to_jax
