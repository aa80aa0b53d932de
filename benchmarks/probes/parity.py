"""Exact compiled figures of funcgrad against jax.grad for every workload at full size.

    python -m benchmarks.probes.parity [workload ...]

Prints XLA's FLOPs, bytes accessed and temporary memory of ``jax.jit(value_and_grad(loss))``
for both, and the trace+lower and compile wall times (first-call cost).
"""

from __future__ import annotations

import sys

import jax

import funcgrad
from benchmarks.measure import compiled_stats
from benchmarks.workloads import WORKLOADS


def main(names):
    for name in names or WORKLOADS:
        for dtype in WORKLOADS[name].dtypes:
            loss, params, batch, _ = WORKLOADS[name].make(dtype, quick=False)
            fg = compiled_stats(funcgrad.value_and_grad(loss), params, *batch)
            jx = compiled_stats(jax.value_and_grad(loss), params, *batch)
            print(
                f"{name:12s} {dtype:9s} FLOPs {fg['flops']:.5g} / {jx['flops']:.5g}  "
                f"bytes {fg['bytes_accessed']:.4g} / {jx['bytes_accessed']:.4g}  "
                f"temp {fg['temp_bytes']} / {jx['temp_bytes']}  "
                f"trace {fg['trace_lower_s']:.2f} / {jx['trace_lower_s']:.2f} s  "
                f"compile {fg['compile_s']:.2f} / {jx['compile_s']:.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
