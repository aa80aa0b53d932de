"""Split a jaxpr into a forward jaxpr that emits residuals and a backward jaxpr that uses them.

Loops (scan) and branches (cond) must pass residuals across their boundary explicitly. We
trace funcgrad's forward walk once, keeping every value, then trace funcgrad's backward walk
over those values, and dead-code-eliminate: the residuals are exactly the values the
backward jaxpr still reads. Values that are just inputs are reported as forwarded, so a scan
need not stack a loop-invariant weight 1,000 times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
from jax.extend import core as jcore

from ._backward import backward, differentiable, forward, instantiate
from ._backward import is_var as _is_var
from ._liveness import dce as dce


@dataclasses.dataclass(frozen=True)
class Linearized:
    fwd: jcore.ClosedJaxpr  # inputs -> (*outputs, *residuals)
    bwd: jcore.ClosedJaxpr  # (*residuals, *present output cotangents) -> active input cts
    res_src: tuple  # per residual: index of the input it is, or None if computed
    res_avals: tuple
    num_out: int
    # bwd_for(present): a backward jaxpr with bwd's signature that takes the cotangents of
    # the outputs not in ``present`` (a sub-mask of ct_mask) as symbolic zeros, as if those
    # outputs were unused; None where it would read a residual fwd does not emit.
    bwd_for: Callable = dataclasses.field(compare=False, repr=False)
    # reached_for(present): per input, whether the backward walk from the outputs in
    # ``present`` gives it a cotangent at all. False where none arrives, including through a
    # nested loop or branch that never reads it: JAX drops such an input from its linear
    # program, so its caller must hand back None, not the zeros bwd instantiates.
    reached_for: Callable = dataclasses.field(compare=False, repr=False)


def linearize(closed: jcore.ClosedJaxpr, active_in, ct_mask) -> Linearized:
    """``active_in``: inputs to differentiate; ``ct_mask``: outputs that receive cotangents.

    The backward jaxpr returns, for each active (floating) input in order, its cotangent
    (zeros where none reaches it).
    """
    jaxpr = closed.jaxpr
    in_avals = [v.aval for v in jaxpr.invars]
    active_in = [a and differentiable(av) for a, av in zip(active_in, in_avals)]
    store = {}

    def fwd_all(*args):
        outs, tape = forward(jaxpr, closed.consts, args, active_in)
        leaves, store["treedef"] = jax.tree.flatten(tape)
        return outs, leaves

    fwd_closed, (_, leaf_shapes) = jax.make_jaxpr(fwd_all, return_shape=True)(*in_avals)
    treedef = store["treedef"]
    out_avals = [v.aval for v in jaxpr.outvars]

    n_leaves = len(leaf_shapes)
    ct_specs = [av for av, m in zip(out_avals, ct_mask) if m]

    def trace_bwd(present):
        got = []

        def bwd_all(leaves, cts):
            tape = jax.tree.unflatten(treedef, leaves)
            it = iter(cts)
            cts_out = [next(it) if m else None for m in ct_mask]
            cts_out = [c if p else None for c, p in zip(cts_out, present)]
            cts_in = backward(jaxpr, tape, cts_out)
            got[:] = [a and c is not None for c, a in zip(cts_in, active_in)]
            return [instantiate(c, av) for c, av, a in zip(cts_in, in_avals, active_in) if a]

        closed = jax.make_jaxpr(bwd_all)(leaf_shapes, ct_specs)
        bj, used = dce(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
        return closed, bj, [k for k in range(n_leaves) if used[k]], tuple(got)

    bwd_closed, bj, needed, reached = trace_bwd(ct_mask)
    bj = bj.replace(invars=[bj.invars[k] for k in needed] + list(bj.invars[n_leaves:]))

    bwd = jcore.ClosedJaxpr(bj, bwd_closed.consts)
    built = {tuple(ct_mask): (bwd, reached)}

    def _built(present):
        key = tuple(present)
        if key not in built:
            built[key] = _sub_bwd(key)
        return built[key]

    def _sub_bwd(present):
        closed, sub, sub_needed, got = trace_bwd(present)
        if not set(sub_needed) <= set(needed):
            return None, got
        sub = sub.replace(invars=[sub.invars[k] for k in needed] + list(sub.invars[n_leaves:]))
        return jcore.ClosedJaxpr(sub, closed.consts), got

    fj = fwd_closed.jaxpr
    n_out = len(out_avals)
    fj, _ = dce(
        fj.replace(outvars=fj.outvars[:n_out] + [fj.outvars[n_out + k] for k in needed]),
        [True] * (n_out + len(needed)),
    )
    pos = {v: i for i, v in enumerate(fj.invars)}
    res_src = tuple(pos.get(v) if _is_var(v) else None for v in fj.outvars[n_out:])
    res_avals = tuple(v.aval for v in fj.outvars[n_out:])
    return Linearized(
        jcore.ClosedJaxpr(fj, fwd_closed.consts),
        bwd,
        res_src,
        res_avals,
        n_out,
        lambda present: _built(present)[0],
        lambda present: _built(present)[1],
    )
