"""Command line: ``python -m benchmarks [--quick] [--out DIR] [--workloads ...] [--dtypes ...]``.

Prints one table per workload and dtype plus a summary, and writes ``results.json`` and
``ratios.png`` to ``--out``. Every implementation's loss and gradients are checked against
``jax.jit(jax.grad)`` before it is timed. PyTorch and HIPS autograd each run in a process of
their own (``benchmarks.peer_worker``): timed in XLA's process their thread pools stall.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys

import jax

from . import measure, report
from .suite import IMPLS, run_workload
from .workloads import WORKLOADS


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 3 rounds: a smoke test")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_out"))
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated names")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated implementations")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per impl")
    ap.add_argument("--rounds", type=int, default=None, help="most timed calls per impl")
    args = ap.parse_args(argv)
    for name, allowed in (("workloads", WORKLOADS), ("impls", IMPLS)):
        bad = [x for x in getattr(args, name).split(",") if x not in allowed]
        if bad:
            ap.error(f"unknown {name} {bad}; choose from {', '.join(allowed)}")
    return args


def machine() -> dict:
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "devices": len(jax.devices()),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    impls = tuple(args.impls.split(","))
    budget = args.budget if args.budget is not None else (0.2 if args.quick else 3.0)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 100)
    dtypes = args.dtypes.split(",")
    info = machine()
    print(f"machine: {info}")
    peaks = {d: measure.matmul_peak(d, 256 if args.quick else 2048) for d in dtypes}
    print("matmul peak: " + ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    records = []
    for name in args.workloads.split(","):
        wl = WORKLOADS[name]
        for dtype in dtypes:
            if dtype not in wl.dtypes:
                print(f"== {wl.title} [{dtype}]: {wl.dtype_note}")
                continue
            rec = run_workload(wl, dtype, args.quick, impls, budget, rounds)
            records.append(rec)
            print(report.workload_table(rec, peaks[dtype]), flush=True)
    print("\nmedian step time / jax.grad under jit (lower is faster):")
    print(report.summary_table(records, impls))
    print("\nfuncgrad's compiled program against jax.grad's:")
    print(report.parity_table(records))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "quick": args.quick, "matmul_peak_flops": peaks, "records": records}
    report.write_json(args.out / "results.json", payload)
    report.plot(args.out / "ratios.png", records, impls)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'ratios.png'}")
    return payload


if __name__ == "__main__":
    main()
