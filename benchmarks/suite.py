"""Run one workload in one dtype across every implementation: check, then time.

Order, per workload: build each JAX implementation (funcgrad and jax.grad, jit and eager) and
time its first call (trace + compile for the jitted ones); check each result's loss and
gradients against ``jax.jit(jax.grad)``; record XLA's exact FLOPs and temporary memory for
funcgrad's and JAX's compiled programs; time the JAX implementations that passed, interleaved
round by round. Then each peer (PyTorch eager, ``torch.compile``, HIPS autograd) runs in a
process of its own (``peer_worker``), one after another, while this one waits: it gets the
parameters, batch and reference loss and gradients through a temporary ``.npz``, times its
first call, checks itself against the reference and, if correct, times its steps alone.
PyTorch's and NumPy's thread pools stall when they share a process and 2 cores with XLA's.

Example:
    >>> rec = run_workload(WORKLOADS["chain"], "float32", quick=True,
    ...                    impls=("funcgrad jit", "jax.grad jit"), budget_s=0.1, rounds=3)
    >>> rec["impls"]["funcgrad jit"]["ok"]
    True
"""

from __future__ import annotations

import itertools
import json
import pathlib
import subprocess
import sys
import tempfile

import jax
import numpy as np

import funcgrad

from . import measure, peer_worker, peers
from .workloads import Workload, step_kwargs

IMPLS = (
    "funcgrad jit",
    "jax.grad jit",
    "funcgrad eager",
    "jax.grad eager",
    "torch eager",
    "torch.compile",
    "autograd",
)
PEER_IMPLS = peer_worker.PEER_IMPLS  # each checked and timed in a process of its own
PEER_TIMEOUT_S = 1800  # torch.compile of the transformer takes minutes on 2 busy cores
REFERENCE = "jax.grad jit"
TOLERANCE = {"float32": 2e-3, "bfloat16": 1e-1}  # max |err| / max |reference|, per leaf


def _jax_builders(loss, params, batch, python_step=False):
    """Fresh closures per build, so no trace cache is shared between first-call timings.

    With ``python_step``, call k passes ``step_kwargs(k)`` (a Python int and float), as a
    training loop with a schedule does; every implementation's first call is call 0.
    """

    def steps(f):
        if not python_step:
            return lambda: f(params, *batch)
        counter = itertools.count()
        return lambda: f(params, *batch, **step_kwargs(next(counter)))

    def funcgrad_jit():
        return steps(jax.jit(funcgrad.value_and_grad(loss)))

    def jax_jit():
        return steps(jax.jit(jax.value_and_grad(loss)))

    def funcgrad_eager():
        return steps(funcgrad.value_and_grad(loss))

    def jax_eager():
        return steps(jax.value_and_grad(loss))

    return {
        "funcgrad jit": funcgrad_jit,
        "jax.grad jit": jax_jit,
        "funcgrad eager": funcgrad_eager,
        "jax.grad eager": jax_eager,
    }


def _jax_to_common(result):
    loss, grads = result
    return float(loss), jax.tree.map(lambda g: np.asarray(g, np.float32), grads)


def _skip_reason(impl, wl, dtype, quick) -> str | None:
    if impl in PEER_IMPLS and wl.python_step:
        return "skipped: measures JAX gradient functions called with changing Python scalars"
    if impl in ("torch eager", "torch.compile"):
        reason = peers.unavailable("torch")
        if reason:
            return reason
        if impl == "torch.compile" and quick:
            return "skipped in --quick: torch.compile takes tens of seconds to compile"
        if impl == "torch.compile" and wl.name in ("chain", "gru"):
            return (
                "skipped: the Python loop unrolls into one graph of thousands of ops, which "
                "inductor compiles for many minutes on this CPU"
            )
    if impl == "autograd":
        reason = peers.unavailable("autograd")
        if reason:
            return reason
        if dtype != "float32":
            return f"skipped: HIPS autograd runs on NumPy, which has no {dtype}"
    return None


def run_workload(
    wl: Workload,
    dtype: str,
    quick: bool,
    impls=IMPLS,
    budget_s: float = 3.0,
    rounds: int = 20,
    log=print,
) -> dict:
    """Check and time ``impls`` on ``wl`` in ``dtype``; a JSON-ready record."""
    loss, params, batch, sizes = wl.make(dtype, quick)
    builders = _jax_builders(loss, params, batch, wl.python_step)
    record = {"workload": wl.name, "title": wl.title, "dtype": dtype, "sizes": sizes, "impls": {}}
    steps, peer_impls = {}, []
    # Trace the loss once, untimed: jax.numpy's own per-function trace caches are then warm
    # for every implementation, not only for whichever builds first.
    jax.make_jaxpr(loss)(params, *batch)
    for impl in impls:
        reason = _skip_reason(impl, wl, dtype, quick)
        if reason:
            record["impls"][impl] = {"skipped": reason}
        elif impl in PEER_IMPLS:
            record["impls"][impl] = {}  # filled in by its own process, below
            peer_impls.append(impl)
        else:
            first_s, steps[impl], result = measure.first_call(builders[impl])
            record["impls"][impl] = {"first_call_s": first_s, "_result": _jax_to_common(result)}
    reference = _check(record, dtype)
    record["compiled"] = {
        "funcgrad": measure.compiled_stats(funcgrad.value_and_grad(loss), params, *batch),
        "jax": measure.compiled_stats(jax.value_and_grad(loss), params, *batch),
    }
    timed = {k: steps[k] for k in steps if record["impls"][k].get("ok")}
    times = measure.interleaved(timed, budget_s=budget_s, max_rounds=rounds)
    for impl, t in times.items():
        record["impls"][impl].update(t)
    if peer_impls:
        with tempfile.TemporaryDirectory() as tmp:
            case = pathlib.Path(tmp) / "case.npz"
            peer_worker.write_case(case, params, batch, sizes, reference)
            for impl in peer_impls:
                record["impls"][impl] = _run_peer(case, wl.name, impl, dtype, budget_s, rounds)
                log(f"  {impl}: {_peer_line(record['impls'][impl])}")
    return record


def _run_peer(case, workload, impl, dtype, budget_s, rounds) -> dict:
    """Check and time one peer in its own process (``peer_worker``); its JSON entry."""
    cmd = [
        sys.executable, "-m", "benchmarks.peer_worker", "--case", str(case),
        "--workload", workload, "--impl", impl, "--dtype", dtype,
        "--tolerance", str(TOLERANCE[dtype]), "--repeats", str(rounds), "--budget", str(budget_s),
    ]  # fmt: skip
    root = pathlib.Path(__file__).resolve().parent.parent
    try:  # run from the repository root, so ``-m benchmarks`` is this package
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, cwd=root)
    except subprocess.TimeoutExpired:
        return {"skipped": f"failed: no result within {PEER_TIMEOUT_S} s"}
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr or done.stdout).strip()[-300:]
        return {"skipped": f"failed: worker exited {done.returncode}: {tail}"}


def _peer_line(entry) -> str:
    if "median_s" in entry:
        return f"{1e3 * entry['median_s']:.3g} ms median over {entry['n']} (own process)"
    return entry.get("skipped", "not timed")


def _check(record, dtype):
    """Compare every implementation's loss and gradients with the reference's."""
    impls = record["impls"]
    if REFERENCE not in impls or "_result" not in impls[REFERENCE]:
        raise RuntimeError(f"the reference implementation {REFERENCE!r} must run to check others")
    reference = impls[REFERENCE]["_result"]
    for entry in impls.values():
        if "_result" not in entry:
            continue
        entry.update(measure.check(entry.pop("_result"), reference, TOLERANCE[dtype]))
        if not entry["ok"]:
            entry["skipped"] = (
                f"not timed: loss/gradients differ from {REFERENCE} "
                f"(loss rel err {entry['loss_rel_err']:.2e}, grad {entry['grad_rel_err']:.2e})"
            )
    return reference
