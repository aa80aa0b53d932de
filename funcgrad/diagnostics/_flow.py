"""Gradient flow over training: per-layer gradient norms from inside jit, and their plot.

``grad_norms`` is pure ``jax.numpy``: call it inside the jitted train step and return its
dict as metrics, so nothing leaves the compiled program but a few scalars per step.

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = funcgrad.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        metrics = {"loss": loss, **grad_norms(grads, prefix="grad/")}
        return optax.apply_updates(params, updates), opt_state, metrics

    history = [jax.device_get(metrics) for each step]      # list of dicts of scalars
    plot_grad_flow(history, path="docs/img/grad_flow.png")
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
from jax import tree_util


def _path_name(path) -> str:
    """``layers/0/w`` for the key path ``['layers'][0]['w']``."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts) or "grad"


def grad_norms(grads, depth: int | None = None, prefix: str = "", ord: str = "l2") -> dict:
    """Per-layer gradient norms of a gradient pytree, as a flat dict of scalar arrays.

    Jit-safe (pure ``jax.numpy``): return the dict from the jitted step as metrics.

    Args:
        grads: the gradient pytree (same structure as the parameters).
        depth: group leaves by the first ``depth`` components of their path
            (``depth=2`` puts ``layers/0/w`` and ``layers/0/b`` into ``layers/0``); the norm
            of a group is the norm of all its entries. ``None``: one entry per leaf.
        prefix: prepended to every key (e.g. ``"grad/"``).
        ord: ``"l2"`` (Euclidean norm), ``"rms"`` (root mean square, comparable across
            layers of different size) or ``"max"`` (largest magnitude).

    Returns:
        ``{prefix + name: scalar float32 array}``, ordered as the pytree's leaves.

    Example:
        >>> import jax.numpy as jnp
        >>> g = {"layers": [{"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}]}
        >>> {k: float(v) for k, v in grad_norms(g, depth=2).items()}
        {'layers/0': 2.0}
    """
    if ord not in ("l2", "rms", "max"):
        raise ValueError(f"ord must be 'l2', 'rms' or 'max', got {ord!r}.")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be a positive int or None, got {depth!r}.")
    sums: dict = {}
    for path, g in tree_util.tree_flatten_with_path(grads)[0]:
        name = _path_name(path if depth is None else path[:depth])
        g = jnp.asarray(g, jnp.float32)
        sq = jnp.sum(g * g) if ord != "max" else jnp.max(jnp.abs(g), initial=0.0)
        ssq, cnt = sums.get(name, (jnp.float32(0.0), 0))
        sums[name] = (jnp.maximum(ssq, sq) if ord == "max" else ssq + sq, cnt + g.size)
    out = {}
    for name, (s, n) in sums.items():
        if ord == "l2":
            val = jnp.sqrt(s)
        elif ord == "rms":
            val = jnp.sqrt(s / max(n, 1))
        else:
            val = s
        out[prefix + name] = val
    return out


def stack_history(history, prefix: str = "") -> dict[str, np.ndarray]:
    """A list of per-step metric dicts -> ``{name: array of shape (steps,)}`` for the keys
    that start with ``prefix`` (the prefix is dropped from the names)."""
    if not history:
        raise ValueError("stack_history needs at least one step of metrics, got an empty list.")
    keys = [k for k in history[0] if k.startswith(prefix)]
    if not keys:
        raise ValueError(f"no metric starts with prefix {prefix!r}; keys: {list(history[0])}")
    return {k[len(prefix) :]: np.array([float(h[k]) for h in history]) for k in keys}


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def plot_grad_flow(
    history, prefix: str = "", steps=None, path=None, title=None, n_profiles: int = 4
):
    """Plot gradient norms over training: norm vs step per layer, and norm vs depth.

    Args:
        history: list of per-step dicts (``grad_norms`` output, possibly with other metrics)
            or a dict ``{name: array (steps,)}``.
        prefix: only keys starting with it are plotted (e.g. ``"grad/"``).
        steps: x values (default ``0..n-1``).
        path: file name(s) to save (``.png`` / ``.svg``).
        n_profiles: how many steps to draw in the depth profile (evenly spaced).

    Returns:
        The matplotlib Figure (left: log norm per layer over steps, coloured by depth;
        right: norm against layer at a few steps: a vanishing gradient is a slope).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    series = history if isinstance(history, dict) else stack_history(history, prefix)
    names = sorted(series, key=_natural)
    n = len(next(iter(series.values())))
    xs = np.arange(n) if steps is None else np.asarray(steps)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for d, name in enumerate(names):
        ax1.plot(
            xs,
            series[name],
            color=cmap(d / max(len(names) - 1, 1)),
            lw=1.2,
            label=name if len(names) <= 12 else None,
        )
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("gradient norm")
    ax1.set_title("per-layer gradient norm over training (dark = first layer)")
    if len(names) <= 12:
        ax1.legend(fontsize=7, ncol=2)
    picks = np.unique(np.linspace(0, n - 1, min(n_profiles, n)).astype(int))
    for t in picks:
        ax2.plot(
            range(len(names)), [series[k][t] for k in names], marker="o", label=f"step {xs[t]}"
        )
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax2.set_ylabel("gradient norm")
    ax2.set_title("gradient norm by layer (input side on the left)")
    ax2.legend(fontsize=7)
    fig.suptitle(title or "gradient flow")
    fig.tight_layout()
    for p in [path] if isinstance(path, str) else (path or []):
        fig.savefig(p, dpi=130)
    return fig
