"""Run one workload in one dtype across every implementation: check, then time, interleaved.

Order, per workload: build each implementation and time its first call (trace + compile for
the jitted ones); check each result's loss and gradients against ``jax.jit(jax.grad)``; record
XLA's exact FLOPs and temporary memory for funcgrad's and JAX's compiled programs; then time
all implementations that passed, interleaved round by round.

Example:
    >>> rec = run_workload(WORKLOADS["chain"], "float32", quick=True,
    ...                    impls=("funcgrad jit", "jax.grad jit"), budget_s=0.1, rounds=3)
    >>> rec["impls"]["funcgrad jit"]["ok"]
    True
"""

from __future__ import annotations

import jax
import numpy as np

import funcgrad

from . import measure, peers
from .workloads import Workload

IMPLS = (
    "funcgrad jit",
    "jax.grad jit",
    "funcgrad eager",
    "jax.grad eager",
    "torch eager",
    "torch.compile",
    "autograd",
)
REFERENCE = "jax.grad jit"
TOLERANCE = {"float32": 2e-3, "bfloat16": 1e-1}  # max |err| / max |reference|, per leaf


def _jax_builders(loss, params, batch):
    """Fresh closures per build, so no trace cache is shared between first-call timings."""

    def funcgrad_jit():
        f = jax.jit(funcgrad.value_and_grad(loss))
        return lambda: f(params, *batch)

    def jax_jit():
        f = jax.jit(jax.value_and_grad(loss))
        return lambda: f(params, *batch)

    def funcgrad_eager():
        f = funcgrad.value_and_grad(loss)
        return lambda: f(params, *batch)

    def jax_eager():
        f = jax.value_and_grad(loss)
        return lambda: f(params, *batch)

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


def _builders(wl, loss, params, batch, dtype, sizes):
    builders = _jax_builders(loss, params, batch)
    builders["torch eager"] = lambda: peers.torch_step(wl.name, params, batch, dtype, False, sizes)
    builders["torch.compile"] = lambda: peers.torch_step(wl.name, params, batch, dtype, True, sizes)
    builders["autograd"] = lambda: peers.autograd_step(wl.name, params, batch, dtype, sizes)
    return builders


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
    builders = _builders(wl, loss, params, batch, dtype, sizes)
    record = {"workload": wl.name, "title": wl.title, "dtype": dtype, "sizes": sizes, "impls": {}}
    steps, to_common = {}, {}
    # Trace the loss once, untimed: jax.numpy's own per-function trace caches are then warm
    # for every implementation, not only for whichever builds first.
    jax.make_jaxpr(loss)(params, *batch)
    for impl in impls:
        reason = _skip_reason(impl, wl, dtype, quick)
        if reason:
            record["impls"][impl] = {"skipped": reason}
            continue
        try:
            if impl in ("torch eager", "torch.compile", "autograd"):

                def make(impl=impl):
                    step, conv_ = builders[impl]()
                    to_common[impl] = conv_
                    return step

            else:
                make = builders[impl]
                to_common[impl] = _jax_to_common
            first_s, step, result = measure.first_call(make)
        except Exception as e:  # a peer that cannot run this workload is reported, not fatal
            record["impls"][impl] = {"skipped": f"failed: {type(e).__name__}: {e}"[:300]}
            log(f"  {impl}: failed ({type(e).__name__}: {e})")
            continue
        steps[impl] = step
        record["impls"][impl] = {"first_call_s": first_s, "_result": to_common[impl](result)}
    _check(record, dtype)
    record["compiled"] = {
        "funcgrad": measure.compiled_stats(funcgrad.value_and_grad(loss), params, *batch),
        "jax": measure.compiled_stats(jax.value_and_grad(loss), params, *batch),
    }
    timed = {k: steps[k] for k in steps if record["impls"][k].get("ok")}
    times = measure.interleaved(timed, budget_s=budget_s, max_rounds=rounds)
    for impl, t in times.items():
        record["impls"][impl].update(t)
    return record


def _check(record, dtype):
    """Compare every implementation's loss and gradients with the reference's."""
    impls = record["impls"]
    if REFERENCE not in impls or "_result" not in impls[REFERENCE]:
        raise RuntimeError(f"the reference implementation {REFERENCE!r} must run to check others")
    ref_loss, ref_grads = impls[REFERENCE]["_result"]
    for entry in impls.values():
        if "_result" not in entry:
            continue
        loss, grads = entry.pop("_result")
        entry["loss_rel_err"] = abs(loss - ref_loss) / max(abs(ref_loss), 1e-30)
        entry["grad_rel_err"] = measure.max_rel_err(grads, ref_grads)
        entry["ok"] = bool(
            entry["loss_rel_err"] <= TOLERANCE[dtype] and entry["grad_rel_err"] <= TOLERANCE[dtype]
        )
        if not entry["ok"]:
            entry["skipped"] = (
                f"not timed: loss/gradients differ from {REFERENCE} "
                f"(loss rel err {entry['loss_rel_err']:.2e}, grad {entry['grad_rel_err']:.2e})"
            )
