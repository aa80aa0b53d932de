"""Check and time one peer implementation in a process of its own; print one JSON line.

    python -m benchmarks.peer_worker --case case.npz --workload mlp --impl "torch eager" \\
        --dtype float32 --repeats 100 --budget 3

PyTorch's OpenMP pool and NumPy's BLAS threads stall when they share a process (and 2 cores)
with XLA's thread pool, so ``suite.py`` times each peer here, alone. ``case.npz`` (written by
``write_case``) holds the workload's parameters and batch as NumPy arrays (bfloat16 widened to
float32, which is exact), its ``sizes``, and the reference loss and gradients from
``jax.jit(jax.grad)``. The worker builds the peer's step, times its first call, checks its loss
and gradients against the reference, and only if they agree times ``step()`` back to back.
The last line of stdout is the result as JSON: ``first_call_s``, ``loss_rel_err``,
``grad_rel_err``, ``ok`` and, when timed, ``median_s``, ``p25_s``, ``p75_s``, ``min_s``, ``n``;
or ``skipped`` with the reason. XLA never runs in this process (JAX is imported, not used).

Example:
    >>> import json, subprocess, sys
    >>> cmd = [sys.executable, "-m", "benchmarks.peer_worker", "--case", "case.npz",
    ...        "--workload", "mlp", "--impl", "autograd", "--dtype", "float32"]
    >>> entry = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout
    ...                    .splitlines()[-1])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from . import measure, peers

PEER_IMPLS = ("torch eager", "torch.compile", "autograd")


def write_case(path: pathlib.Path, params: dict, batch: tuple, sizes: dict, reference) -> None:
    """Save a workload instance and its reference ``(loss, grads)`` for a worker to load.

    ``params`` and ``reference``'s grads are flat dicts of arrays; ``batch`` a tuple of arrays.
    """
    loss, grads = reference
    arrays = {f"p/{k}": peers._np32(v) for k, v in params.items()}
    arrays |= {f"b/{i:02d}": peers._np32(v) for i, v in enumerate(batch)}
    arrays |= {f"g/{k}": np.asarray(v, np.float32) for k, v in grads.items()}
    arrays["loss"] = np.asarray(loss, np.float64)
    arrays["sizes"] = np.asarray(json.dumps(sizes))
    np.savez(path, **arrays)


def read_case(path: pathlib.Path):
    """(params, batch, sizes, (loss, grads)) as saved by ``write_case``."""
    with np.load(path) as z:
        params = {k[2:]: z[k] for k in z.files if k.startswith("p/")}
        batch = tuple(z[k] for k in sorted(k for k in z.files if k.startswith("b/")))
        grads = {k[2:]: z[k] for k in z.files if k.startswith("g/")}
        return params, batch, json.loads(str(z["sizes"])), (float(z["loss"]), grads)


def run(case, workload, impl, dtype, tolerance, repeats, budget_s) -> dict:
    """Build, first-call, check and (if correct) time one peer; a JSON-ready entry."""
    if impl not in PEER_IMPLS:
        raise ValueError(f"--impl must be one of {PEER_IMPLS}, got {impl!r}")
    params, batch, sizes, reference = read_case(case)
    t0 = time.perf_counter()
    if impl == "autograd":
        step, to_jax = peers.autograd_step(workload, params, batch, dtype, sizes)
    else:
        step, to_jax = peers.torch_step(
            workload, params, batch, dtype, impl == "torch.compile", sizes
        )
    result = step()
    entry = {"first_call_s": time.perf_counter() - t0}
    entry |= measure.check(to_jax(result), reference, tolerance)
    if impl != "autograd":
        import torch

        entry["threads"] = torch.get_num_threads()
    if not entry["ok"]:
        entry["skipped"] = (
            f"not timed: loss/gradients differ from jax.grad jit (loss rel err "
            f"{entry['loss_rel_err']:.2e}, grad {entry['grad_rel_err']:.2e})"
        )
        return entry
    entry |= measure.alone(step, budget_s=budget_s, max_rounds=repeats)
    return entry


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peer_worker", description=__doc__)
    ap.add_argument("--case", type=pathlib.Path, required=True, help="npz from write_case")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--impl", required=True, choices=PEER_IMPLS)
    ap.add_argument("--dtype", required=True, choices=("float32", "bfloat16"))
    ap.add_argument("--tolerance", type=float, required=True, help="max rel err to pass")
    ap.add_argument("--repeats", type=int, default=100, help="most timed calls")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing")
    args = ap.parse_args(argv)
    try:
        entry = run(
            args.case,
            args.workload,
            args.impl,
            args.dtype,
            args.tolerance,
            args.repeats,
            args.budget,
        )
    except Exception as e:  # a peer that cannot run this workload is reported, not fatal
        entry = {"skipped": f"failed: {type(e).__name__}: {e}"[:300]}
    print(json.dumps(entry), flush=True)
    return entry


if __name__ == "__main__":
    main()
