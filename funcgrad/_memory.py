"""Memory plans judged by XLA: byte budgets and ``funcgrad.memory_report``.

Every figure here is XLA's own: the program is compiled and
``compiled.memory_analysis().temp_size_in_bytes`` and ``cost_analysis()['flops']`` are read.
The planner's byte estimate only chooses candidates; it never decides whether one fits.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from . import _remat
from ._backward import backward, differentiable, forward
from ._backward import is_var as _is_var
from ._errors import FuncgradError, source_line

_BLOCK_COUNTS = (2, 3, 4, 6, 8, 12, 16)


class BudgetError(FuncgradError, ValueError):
    """No memory plan fits the requested byte budget."""


def _aval_spec(aval):
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype)


def _spec(x):
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def compiled_cost(closed, n_out, active=None) -> tuple[int, float]:
    """XLA's temporary bytes and FLOPs of funcgrad's forward+backward over ``closed``, for
    the gradients of the inputs ``active`` marks (default: every float input)."""
    jaxpr = closed.jaxpr
    if active is None:
        active = [True] * len(jaxpr.invars)
    active = [a and differentiable(v.aval) for a, v in zip(active, jaxpr.invars, strict=True)]
    mask = [k < n_out and differentiable(v.aval) for k, v in enumerate(jaxpr.outvars)]

    scalar = [m and v.aval.shape == () for v, m in zip(jaxpr.outvars, mask)]

    # Concrete constants are baked into the program, as they are in the user's; constants
    # that are tracers of an enclosing jit are its arguments, as they are in the user's.
    traced = [isinstance(c, jax.core.Tracer) for c in closed.consts]

    def program(traced_consts, args, cts):
        it = iter(traced_consts)
        consts = [next(it) if t else c for c, t in zip(closed.consts, traced)]
        outs, tape = forward(jaxpr, consts, args, active)
        # A scalar loss gets the constant cotangent 1, as funcgrad.grad gives it.
        it = iter(cts)
        cts_out = [
            jnp.ones((), v.aval.dtype) if s else next(it) if m else None
            for v, m, s in zip(jaxpr.outvars, mask, scalar)
        ]
        cts_in = backward(jaxpr, tape, cts_out)
        return [c for c in cts_in if c is not None]  # as funcgrad.grad: gradients only

    consts = [_spec(c) for c, t in zip(closed.consts, traced) if t]
    args = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in jaxpr.invars]
    cts = [
        jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v, m in zip(jaxpr.outvars, mask) if m
    ]
    return xla_cost(jax.jit(program).lower(consts, args, cts).compile())


def xla_cost(compiled) -> tuple[int, float]:
    """(temp bytes, flops) of a compiled executable, as XLA reports them."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return int(compiled.memory_analysis().temp_size_in_bytes), float(cost.get("flops", 0.0))


def candidates(info):
    """Plans in order of increasing recomputation: none, auto, then whole blocks."""
    yield "none", None
    auto = _remat.auto_or_none(info)
    if auto is not None:
        yield "auto", auto
    n = len(info.closed.jaxpr.eqns)
    for k in _BLOCK_COUNTS:
        if k < n:
            yield f"blocks({k})", _remat.plan_blocks(info, k)


def plan_for_budget(info, budget, n_out, what, active=None):
    """The first candidate whose compiled temporary memory fits ``budget.bytes``."""
    tried = []
    for name, plan in candidates(info):
        closed = info.closed if plan is None else _remat.rewrite(info, plan)
        temp, _ = compiled_cost(closed, n_out, active)
        tried.append((temp, name))
        if temp <= budget.bytes:
            return closed
    best_temp, best_name = min(tried)
    raise BudgetError(
        f"{what}: no memory plan fits remat=Budget({budget.bytes}) "
        f"({budget.bytes / 2**20:.1f} MiB of XLA temporary memory). The smallest compiled "
        f"figure reached was {best_temp} bytes ({best_temp / 2**20:.1f} MiB, plan "
        f"{best_name}); tried: "
        + ", ".join(f"{n} {t / 2**20:.1f} MiB" for t, n in tried)
        + ". Raise the budget to at least that, or shrink the batch."
    )


# ------------------------------------------------------------------ memory_report


@dataclasses.dataclass
class MemoryReport:
    """What a memory plan keeps and recomputes, per source line, and XLA's figures."""

    plan: str
    rows: list  # (source line, kept bytes, recomputed bytes, kept count, recomputed count)
    xla: dict  # program -> (temp bytes, flops)

    def __str__(self):
        mib = 2**20
        lines = [f"memory plan: {self.plan}", ""]
        lines.append("| program | XLA temp (MiB) | GFLOP |")
        lines.append("|---|---:|---:|")
        for name, (temp, flops) in self.xla.items():
            lines.append(f"| {name} | {temp / mib:.2f} | {flops / 1e9:.3f} |")
        lines += ["", "| source line | kept (MiB) | recomputed (MiB) | kept / recomputed values |"]
        lines.append("|---|---:|---:|---:|")
        for where, kept, rec, nk, nr in self.rows:
            lines.append(f"| {where} | {kept / mib:.3f} | {rec / mib:.3f} | {nk} / {nr} |")
        return "\n".join(lines)


def _trace(fun, args, argnums):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    dyn = [args[i] for i in nums]
    flat, tree = tree_util.tree_flatten(dyn)

    def flat_fun(*leaves):
        full = list(args)
        for i, v in zip(nums, tree_util.tree_unflatten(tree, leaves)):
            full[i] = v
        return [fun(*full)]

    return jax.make_jaxpr(flat_fun)(*flat), flat


def memory_report(fun, *args, remat="auto", argnums=0) -> MemoryReport:
    """Where the memory of ``funcgrad.grad(fun, argnums, remat=remat)`` goes.

    Returns a ``MemoryReport`` (print it for a markdown table): per source line, the bytes
    of forward values the backward pass keeps and the bytes it recomputes under the plan;
    and XLA's compiled temporary memory and FLOPs of ``jax.grad``, of funcgrad without a
    plan, and of funcgrad with ``remat``.
    """
    _remat.check_remat(remat, "funcgrad.memory_report")
    closed, flat = _trace(fun, args, argnums)
    info = _remat.prepare(closed, 1)
    jaxpr = info.closed.jaxpr
    if remat is None:
        plan, name = None, "none"
    elif remat == "auto":
        plan = _remat.auto_or_none(info)
        name = "auto" if plan is not None else "auto (no plan: it would keep nearly as much)"
    else:
        plan, name = None, "none"
        for cand, p in candidates(info):
            rewritten = info.closed if p is None else _remat.rewrite(info, p)
            if compiled_cost(rewritten, 1)[0] <= remat.bytes:
                plan, name = p, cand
                break
        else:
            plan_for_budget(info, remat, 1, "funcgrad.memory_report")  # raises with figures
    rows = defaultdict(lambda: [0, 0, 0, 0])
    if plan is None:
        kept = {v for v in info.needed if v in info.defined}
        recomputed = set()
    else:
        rewritten = _remat.rewrite(info, plan)
        kept, recomputed = set(), set()
        for seg in _remat.segments_of(info, plan):
            kept |= {v for v in seg.frontier if v in info.defined}
            recomputed |= set(seg.recompute)
        kept |= _remat.inline_needed(info, plan)
    for v in kept:
        row = rows[source_line(jaxpr.eqns[info.defined[v]])]
        row[0] += _remat.nbytes(v.aval)
        row[2] += 1
    for i in recomputed:
        row = rows[source_line(jaxpr.eqns[i])]
        row[1] += sum(_remat.nbytes(v.aval) for v in jaxpr.eqns[i].outvars if _is_var(v))
        row[3] += 1
    ordered = sorted(rows.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    xla = {}
    jax_grad = jax.jit(_jax_grad(fun, args, argnums)).lower(*[_spec(x) for x in flat])
    xla["jax.grad"] = xla_cost(jax_grad.compile())
    xla["funcgrad remat=None"] = compiled_cost(info.closed, 1)
    if plan is not None:
        xla[f"funcgrad remat={name}"] = compiled_cost(rewritten, 1)
    return MemoryReport(name, [(w, *r) for w, r in ordered], xla)


def _jax_grad(fun, args, argnums):
    """``jax.grad`` over the flat leaves, as the reference figure (never used to differentiate
    for the user)."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    tree = tree_util.tree_structure([args[i] for i in nums])

    def loss(*leaves):
        full = list(args)
        for i, v in zip(nums, tree_util.tree_unflatten(tree, leaves)):
            full[i] = v
        return fun(*full)

    return jax.grad(loss, argnums=tuple(range(tree.num_leaves)))
