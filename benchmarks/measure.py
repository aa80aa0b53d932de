"""Measurements: interleaved step times, first-call times, XLA's compiled cost and memory.

Step times are wall-clock and noisy; FLOPs and temporary memory come from XLA's analyses of
the compiled program and are exact, so they are what tests may assert.

Example:
    >>> import jax.numpy as jnp
    >>> stats = compiled_stats(lambda x: jnp.sum(x @ x), jnp.ones((8, 8)))
    >>> stats["flops"] >= 2 * 8**3
    True
"""

from __future__ import annotations

import random
import time

import jax
import jax.numpy as jnp
import numpy as np


def block(x):
    """Wait for ``x`` whatever produced it (JAX arrays, torch tensors, numpy, Python numbers)."""
    return jax.block_until_ready(jax.tree.map(lambda a: a if isinstance(a, jax.Array) else None, x))


def first_call(make_fn):
    """(seconds, fn, result) for building ``fn = make_fn()`` and its first call to completion."""
    t0 = time.perf_counter()
    fn = make_fn()
    result = fn()
    block(result)
    return time.perf_counter() - t0, fn, result


def interleaved(fns: dict, budget_s: float, max_rounds: int, min_rounds: int = 3) -> dict:
    """Median and spread of each function's time, rounds interleaved so they share the noise.

    Each function runs until it has ``max_rounds`` samples or has spent about ``budget_s``
    seconds (at least ``min_rounds`` samples), so a slow implementation does not hold up the
    rest. Returns {name: {"median_s", "p25_s", "p75_s", "min_s", "n"}}.
    """
    samples = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    names = list(fns)
    shuffle = random.Random(0).shuffle
    for rnd in range(max_rounds):
        # A fresh order each round: whoever runs right after a heavy peer (PyTorch's spinning
        # OpenMP pool, NumPy's Python loop evicting caches) pays for it, so share that evenly.
        order = names.copy()
        shuffle(order)
        active = [
            n for n in order if rnd < min_rounds or (spent[n] < budget_s and len(samples[n]) == rnd)
        ]
        if not active:
            break
        for name in active:
            t0 = time.perf_counter()
            block(fns[name]())
            dt = time.perf_counter() - t0
            samples[name].append(dt)
            spent[name] += dt
    return {name: summarize(ts) for name, ts in samples.items()}


def summarize(times) -> dict:
    """Median, p25, p75 and min (seconds) and count of a list of step times."""
    a = np.asarray(times, np.float64)
    return {
        "median_s": float(np.median(a)),
        "p25_s": float(np.percentile(a, 25)),
        "p75_s": float(np.percentile(a, 75)),
        "min_s": float(a.min()),
        "n": len(times),
    }


def alone(fn, budget_s: float, max_rounds: int, min_rounds: int = 3) -> dict:
    """Time ``fn()`` back to back (synchronous peers: PyTorch on CPU, NumPy), as ``summarize``.

    Runs until ``max_rounds`` samples or about ``budget_s`` seconds (at least ``min_rounds``).
    """
    times, spent = [], 0.0
    while len(times) < max_rounds and (len(times) < min_rounds or spent < budget_s):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return summarize(times)


def check(result, reference, tolerance: float) -> dict:
    """Compare ``(loss, grads)`` with the reference's; {"loss_rel_err", "grad_rel_err", "ok"}.

    Errors are max |got - want| / max |want| (per gradient leaf, the worst one reported).
    """
    loss, grads = result
    ref_loss, ref_grads = reference
    entry = {
        "loss_rel_err": abs(loss - ref_loss) / max(abs(ref_loss), 1e-30),
        "grad_rel_err": max_rel_err(grads, ref_grads),
    }
    entry["ok"] = bool(entry["loss_rel_err"] <= tolerance and entry["grad_rel_err"] <= tolerance)
    return entry


def compiled_stats(fn, *args) -> dict:
    """Trace, lower and compile ``jax.jit(fn)``; XLA's FLOPs, bytes accessed and temp memory.

    Also returns the wall time of tracing+lowering and of compiling (seconds).
    """
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    return {
        "flops": float(cost.get("flops", 0.0)),
        "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
        "temp_bytes": int(mem.temp_size_in_bytes),
        "trace_lower_s": t1 - t0,
        "compile_s": t2 - t1,
    }


def matmul_peak(dtype: str, n: int, rounds: int = 5) -> float:
    """Measured FLOP/s of a jitted n x n matmul in ``dtype`` (best of ``rounds``)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    block(mm(a, a))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        block(mm(a, a))
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def max_rel_err(got, want) -> float:
    """Largest ``max|got - want| / max|want|`` over matching leaves of two pytrees."""
    worst = 0.0
    gl, wl = jax.tree.leaves(got), jax.tree.leaves(want)
    if len(gl) != len(wl):
        return float("inf")
    for g, w in zip(gl, wl, strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g.shape != w.shape:
            return float("inf")
        scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-30)
        worst = max(worst, float(np.max(np.abs(g - w))) / scale if w.size else 0.0)
    return worst
