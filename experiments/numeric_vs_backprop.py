"""Finite differences versus back-propagation: cost and accuracy as parameters grow.

A gradient by finite differences needs forward passes in proportion to the number of
parameters ``n``: ``n + 1`` for forward differences ``(f(θ + h e_i) - f(θ)) / h``, ``2n`` for
central differences ``(f(θ + h e_i) - f(θ - h e_i)) / 2h``. Back-propagation gets all ``n``
partial derivatives from one forward and one backward pass, a small constant times the cost
of the forward pass whatever ``n`` is. This script measures both on a one-hidden-layer tanh
network (8 inputs, ``H`` hidden units, one output; ``n = 10 H + 1`` parameters, batch 16, mean
squared error), for ``n`` from 11 to 100,001:

* time: wall-clock seconds of each jitted gradient (median of several calls, after
  compiling); the finite differences evaluate their forward passes in vmapped chunks, the
  fastest way to run them, so the comparison is fair to them;
* work: XLA's own count of floating-point operations of the compiled forward pass and of
  funcgrad's compiled gradient (``cost_analysis``); finite differences cost their number of
  forward passes times the forward pass;
* accuracy: relative error ``|g - g_ref| / |g_ref|`` against ``jax.grad`` (the reference),
  in float32, with the usual steps ``h = sqrt(eps)`` (forward) and ``h = eps^(1/3)``
  (central) relative to the parameters' scale.

Back-propagation here is ``funcgrad.grad``; ``jax.grad`` appears only as the reference.

    python experiments/numeric_vs_backprop.py            # n up to 100,001
    python experiments/numeric_vs_backprop.py --quick    # n up to 1,001
"""

from __future__ import annotations

import time

import _common
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

import funcgrad
from funcgrad import nn

NAME = "numeric_vs_backprop"
INPUTS, BATCH = 8, 16
METHODS = ("backprop", "forward_fd", "central_fd")
EPS32 = float(np.finfo(np.float32).eps)


def make_problem(hidden: int, seed: int = 0):
    """The loss as a function of a flat parameter vector, and that vector.

    Returns:
        ``(loss, theta)``: ``loss(theta) -> scalar`` for ``theta`` of shape ``(n,)`` with
        ``n = INPUTS * hidden + hidden + hidden + 1``.
    """
    k_params, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = nn.init_mlp(k_params, [INPUTS, hidden, 1], w_init=nn.initializers.glorot_normal())
    params[0]["b"] = 0.1 * jnp.ones_like(params[0]["b"])
    theta, unravel = ravel_pytree(params)
    x = jax.random.normal(k_x, (BATCH, INPUTS))
    y = jax.random.normal(k_y, (BATCH, 1))

    def loss(theta):
        pred = nn.mlp(unravel(theta), x, activation=jnp.tanh)
        return nn.mean_squared_error(pred, y)

    return loss, theta


def finite_differences(loss, n: int, step: float, central: bool, chunk: int):
    """``fd(theta) -> (n,)``: the gradient by forward or central differences.

    The ``n`` perturbed forward passes (``2n`` if central) run ``chunk`` at a time, vmapped,
    inside one ``lax.map``, so the whole estimate is one compiled program.
    """
    chunk = min(chunk, n)
    n_chunks = -(-n // chunk)

    def fd(theta):
        f0 = loss(theta)

        def one_chunk(c):
            idx = c * chunk + jnp.arange(chunk)
            basis = step * jax.nn.one_hot(idx, n, dtype=theta.dtype)  # (chunk, n); 0 past n
            plus = jax.vmap(loss)(theta[None, :] + basis)
            if central:
                return (plus - jax.vmap(loss)(theta[None, :] - basis)) / (2 * step)
            return (plus - f0) / step

        return lax.map(one_chunk, jnp.arange(n_chunks)).reshape(-1)[:n]

    return fd


def flops(fn, *args) -> float:
    """XLA's floating-point operation count of ``jax.jit(fn)`` compiled for ``args``."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def timed(fn, arg, repeats: int) -> tuple[float, jax.Array]:
    """Median wall time of ``fn(arg)`` over ``repeats`` calls after a compiling call."""
    out = jax.block_until_ready(fn(arg))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def relative_error(g, ref) -> float:
    g, ref = np.asarray(g, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(g - ref) / np.linalg.norm(ref))


def measure(hidden: int, cfg) -> dict:
    """Time, work and accuracy of the three gradients for one network size."""
    loss, theta = make_problem(hidden, cfg.seed)
    n = theta.size
    scale = float(jnp.sqrt(jnp.mean(theta**2)))
    steps = {"forward_fd": np.sqrt(EPS32) * scale, "central_fd": EPS32 ** (1 / 3) * scale}
    grads = {
        "backprop": jax.jit(funcgrad.grad(loss)),
        "forward_fd": jax.jit(finite_differences(loss, n, steps["forward_fd"], False, cfg.chunk)),
        "central_fd": jax.jit(finite_differences(loss, n, steps["central_fd"], True, cfg.chunk)),
    }
    reference = jax.jit(jax.grad(loss))(theta)  # the reference, not a method under test
    repeats = cfg.repeats if n <= 10_000 else 1
    forward_s, _ = timed(jax.jit(loss), theta, cfg.repeats)
    row = {
        "hidden": hidden,
        "n_params": int(n),
        "forward_seconds": forward_s,
        "forward_flops": flops(loss, theta),
        "backprop_flops": flops(funcgrad.grad(loss), theta),
        "fd_steps": steps,
        "forward_passes": {"backprop": 1, "forward_fd": n + 1, "central_fd": 2 * n},
    }
    for method, fn in grads.items():
        seconds, g = timed(fn, theta, repeats if method != "backprop" else cfg.repeats)
        row[f"{method}_seconds"] = seconds
        row[f"{method}_rel_error"] = relative_error(g, reference)
    row["forward_fd_flops"] = (n + 1) * row["forward_flops"]
    row["central_fd_flops"] = 2 * n * row["forward_flops"]
    return row


def plot_cost(rows: list[dict], path) -> None:
    """Log-log: wall time and XLA flops of each gradient against the parameter count."""
    plt = _common.pyplot()
    n = np.array([r["n_params"] for r in rows], np.float64)
    fig, (ax_t, ax_f) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = {
        "backprop": "back-propagation (funcgrad)",
        "forward_fd": "forward differences (n + 1 passes)",
        "central_fd": "central differences (2n passes)",
    }
    for method in METHODS:
        ax_t.plot(n, [r[f"{method}_seconds"] for r in rows], "o-", label=labels[method])
        ax_f.plot(n, [r[f"{method}_flops"] for r in rows], "o-", label=labels[method])
    ax_t.plot(n, [r["forward_seconds"] for r in rows], "k:", label="one forward pass")
    ax_f.plot(n, [r["forward_flops"] for r in rows], "k:", label="one forward pass")
    ax_t.set(
        xscale="log",
        yscale="log",
        xlabel="parameters n",
        ylabel="seconds per gradient",
        title="wall time (median, jitted)",
    )
    ax_f.set(
        xscale="log",
        yscale="log",
        xlabel="parameters n",
        ylabel="floating-point operations",
        title="work (XLA cost analysis)",
    )
    ax_t.legend(fontsize=8)
    fig.suptitle("cost of one gradient: finite differences grow as n^2, back-propagation as n")
    _common.save_figure(fig, path)


def plot_accuracy(rows: list[dict], path) -> None:
    """Log-log: relative error of each gradient against jax.grad."""
    plt = _common.pyplot()
    n = np.array([r["n_params"] for r in rows], np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in METHODS:
        errors = np.maximum([r[f"{method}_rel_error"] for r in rows], 1e-10)
        ax.plot(n, errors, "o-", label=method.replace("_", " "))
    ax.axhline(EPS32, color="0.5", ls=":", lw=0.8, label="float32 epsilon")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters n",
        ylabel="|g - g_jax.grad| / |g_jax.grad|",
        title="accuracy against jax.grad (float32)",
    )
    ax.legend(fontsize=8)
    _common.save_figure(fig, path)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        help="hidden widths H (n = 10 H + 1); default 1 10 100 1000 10000, quick 1 10 100",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--chunk", type=int, default=256, help="perturbations per vmapped chunk")
    parser.add_argument("--seed", type=int, default=0)


def main(argv=None) -> dict:
    t0 = time.perf_counter()
    cfg = _common.parse_args(NAME, __doc__.splitlines()[0], argv, add_arguments)
    widths = cfg.hidden or ([1, 10, 100] if cfg.quick else [1, 10, 100, 1000, 10000])
    if cfg.quick:
        cfg.repeats = min(cfg.repeats, 3)
    rows = []
    for hidden in widths:
        rows.append(measure(hidden, cfg))
        print(f"  n = {rows[-1]['n_params']:,} measured", flush=True)

    headers = [
        "n",
        "forward s",
        "backprop s",
        "fwd-FD s",
        "central-FD s",
        "backprop/fwd flops",
        "backprop err",
        "fwd-FD err",
        "central-FD err",
    ]
    table = [
        [
            f"{r['n_params']:,}",
            f"{r['forward_seconds']:.2e}",
            f"{r['backprop_seconds']:.2e}",
            f"{r['forward_fd_seconds']:.2e}",
            f"{r['central_fd_seconds']:.2e}",
            f"{r['backprop_flops'] / r['forward_flops']:.2f}",
            f"{r['backprop_rel_error']:.1e}",
            f"{r['forward_fd_rel_error']:.1e}",
            f"{r['central_fd_rel_error']:.1e}",
        ]
        for r in rows
    ]
    print("\n" + _common.format_table(headers, table))
    plot_cost(rows, cfg.out / "cost.png")
    plot_accuracy(rows, cfg.out / "accuracy.png")
    results = {
        "rows": rows,
        "config": {
            "inputs": INPUTS,
            "batch": BATCH,
            "widths": widths,
            "repeats": cfg.repeats,
            "chunk": cfg.chunk,
            "dtype": "float32",
            "quick": cfg.quick,
        },
        "machine": _common.machine_note(),
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }
    _common.write_json(cfg.out / "results.json", results)
    print(f"\nwall time {results['wall_time_s']:.0f} s; results and plots in {cfg.out}/")
    return results


if __name__ == "__main__":
    main()
