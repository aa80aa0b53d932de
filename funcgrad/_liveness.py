"""What a rule reads: the liveness that lets the forward walk's tape keep only residuals.

A rule receives ``(g, ans, *primals)``, but most rules read few of them by value: ``add``
reads none (only their shapes), ``sin`` reads ``x``, ``exp`` reads ``ans``. Which ones is
found, not declared: the rule is traced once per signature (primitive, input types,
params, which inputs need a cotangent) with abstract values, and an argument is read when
an equation computing a needed cotangent uses it. A rule that cannot be traced abstractly
(it needs a Python value) reads everything. The forward walk keeps a value only if some
rule on the differentiated path reads it; the backward walk hands a rule a zero-strided
stand-in of the right shape and dtype for the others (a rule may look at their shapes and
dtypes, never their values). Under a trace nothing is pruned (XLA drops unread values
itself); shard_map's rule prunes its residuals with its own, coarser test, because
collective rules read the varying mesh axes of values a stand-in does not carry.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.extend import core as jcore

from . import _jax_compat as compat


def is_var(v) -> bool:
    return isinstance(v, jcore.Var) and not isinstance(v, jcore.DropVar)


def dce(jaxpr, used_outputs):
    """Drop equations whose results are unused; return the jaxpr and which inputs it reads."""
    live = {v for v, u in zip(jaxpr.outvars, used_outputs) if u and is_var(v)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(is_var(v) and v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(v for v in eqn.invars if is_var(v))
    outvars = [v for v, u in zip(jaxpr.outvars, used_outputs) if u]
    used_inputs = [v in live for v in jaxpr.invars]
    return jaxpr.replace(eqns=kept[::-1], outvars=outvars), used_inputs


_CACHE: dict = {}
_MAX_CACHE = 4096


def _key(eqn, act):
    try:
        params = tuple(sorted((k, repr(v)) for k, v in eqn.params.items()))
    except Exception:  # an unprintable parameter: no caching, trace each time
        return None
    types = tuple(
        ("lit", repr(v.val)) if isinstance(v, jcore.Literal) else str(v.aval) for v in eqn.invars
    )
    return (eqn.primitive, types, tuple(str(v.aval) for v in eqn.outvars), params, act)


def rule_reads(eqn, rule, act=None) -> tuple[bool, list[bool]]:
    """``(reads ans, [reads primal k])`` for ``rule`` on ``eqn``, counting only what the
    cotangents of the inputs in ``act`` (default: all) need."""
    act = tuple(act) if act is not None else (True,) * len(eqn.invars)
    key = _key(eqn, act)
    hit = _CACHE.get(key) if key is not None else None
    if hit is not None:
        return hit
    result = _trace_reads(eqn, rule, act)
    if key is not None:
        if len(_CACHE) >= _MAX_CACHE:
            _CACHE.clear()
        _CACHE[key] = result
    return result


# Rules that read an operand's *type* beyond shape and dtype (reshard's cotangent goes back
# to its input's sharding): a stand-in would carry the wrong type, so they keep everything.
READS_TYPE = frozenset({"reshard"})


def _trace_reads(eqn, rule, act):
    everything = (True, [True] * len(eqn.invars))
    if eqn.primitive.name in READS_TYPE:
        return everything
    multi = eqn.primitive.multiple_results
    outs = [_spec(v.aval) for v in eqn.outvars]
    ins = [None if isinstance(v, jcore.Literal) else _spec(v.aval) for v in eqn.invars]
    if any(s is None for s in outs) or any(
        s is None and not isinstance(v, jcore.Literal) for s, v in zip(ins, eqn.invars)
    ):
        return everything
    lits = {k: v.val for k, v in enumerate(eqn.invars) if isinstance(v, jcore.Literal)}
    dyn = [k for k in range(len(ins)) if k not in lits]

    def probe(g, ans, prim):
        full = [lits[k] if k in lits else prim[dyn.index(k)] for k in range(len(ins))]
        args = (g if multi else g[0], ans if multi else ans[0], *full)
        cts = compat.call_with_params(rule, eqn.primitive, args, eqn.params)
        return [c for c, a in zip(cts, act) if a]  # the others are dropped by the walk

    try:
        closed = jax.make_jaxpr(probe)(outs, outs, [ins[k] for k in dyn])
    except Exception:  # the rule needs a Python value (or cannot run abstractly)
        return everything
    _, used = dce(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
    n = len(outs)
    prim_used = dict(zip(dyn, used[2 * n :]))
    return any(used[n : 2 * n]), [k in lits or prim_used[k] for k in range(len(ins))]


def _spec(aval):
    dtype = getattr(aval, "dtype", None)
    if dtype is None or not isinstance(dtype, np.dtype):  # extended dtypes (keys): keep
        return None
    return jax.ShapeDtypeStruct(aval.shape, dtype)


def stand_in(aval):
    """A value of ``aval``'s shape and dtype that costs no memory (its values are unread)."""
    return np.broadcast_to(np.zeros((), aval.dtype), aval.shape)
