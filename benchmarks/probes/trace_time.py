"""Probe: tracing cost of funcgrad's gradient against jax.grad's (CPU seconds, min of N).

    python -m benchmarks.probes.trace_time [--rounds 5]

Tracing is single-threaded Python, so process CPU time is a load-robust measure of it. For
each workload: ``jax.make_jaxpr`` of ``value_and_grad(loss)`` (the trace ``jit`` does on a
first call), and lowering to StableHLO as well.
"""

from __future__ import annotations

import argparse
import time

import jax

import funcgrad
from benchmarks.workloads import WORKLOADS


def cpu_min(fn, rounds):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _trace_and_lower(make, loss, params, batch, rounds):
    """CPU seconds to trace, and to trace and lower, ``make(loss)`` (a fresh closure each time)."""
    trace = cpu_min(lambda: jax.make_jaxpr(make(loss))(params, *batch), rounds)
    lower = cpu_min(lambda: jax.jit(make(loss)).lower(params, *batch), rounds)
    return trace, lower


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    for name, wl in WORKLOADS.items():
        loss, params, batch, _ = wl.make("float32", quick=False)
        (ft, fl), (jt, jl) = (
            _trace_and_lower(make, loss, params, batch, a.rounds)
            for make in (funcgrad.value_and_grad, jax.value_and_grad)
        )
        print(
            f"{name:12s} trace {ft:.3f} / {jt:.3f} s ({ft / jt:.2f}x)   "
            f"trace+lower {fl:.3f} / {jl:.3f} s ({fl / jl:.2f}x)   [funcgrad / jax.grad]",
            flush=True,
        )


if __name__ == "__main__":
    main()
