"""The backward pass: a forward walk that keeps values, a reversed walk that composes VJPs.

Both walks are loops over a jaxpr's equations (never recursion over the graph), so a
10,000-equation chain is fine. Nested jaxprs (jit, scan, cond, ...) are ordinary rules that
call back into ``forward``/``backward`` on their sub-jaxpr.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from ._errors import MissingRuleError, RuleError, aval_str, describe_eqn, source_line
from ._jax_compat import bind_eqn, eqn_context
from ._jax_compat import zeros_like_aval as zeros_like_aval
from ._liveness import is_var, rule_reads, stand_in
from ._registry import REFUSED, call_forward, call_rule, is_nondiff, lookup
from ._watch import Record, session, watched_entry


def differentiable(aval) -> bool:
    """Only floating (and complex) values carry cotangents; ints, bools, keys never do."""
    dtype = getattr(aval, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


class Tape:
    """What the forward walk kept: every value, which values are active, and the residuals
    of rules that keep their own (nested jaxprs). A pytree, so it can cross a scan/cond.
    Under a watch (funcgrad/_watch.py) it also knows its scope and its opened equations."""

    def __init__(self, env, active, residuals, scope=(), opened=frozenset()):
        self.env = env  # Var -> value
        self.active = active  # frozenset of Vars that depend on a differentiated input
        self.residuals = residuals  # equation index -> residual pytree
        self.scope = scope
        self.opened = opened


def _tape_flatten(tape):
    keys = tuple(tape.env)
    rkeys = tuple(tape.residuals)
    children = (tuple(tape.env[k] for k in keys), tuple(tape.residuals[k] for k in rkeys))
    return children, (keys, rkeys, tape.active, tape.scope, tape.opened)


def _tape_unflatten(aux, children):
    keys, rkeys, active, scope, opened = aux
    values, residuals = children
    return Tape(dict(zip(keys, values)), active, dict(zip(rkeys, residuals)), scope, opened)


jax.tree_util.register_pytree_node(Tape, _tape_flatten, _tape_unflatten)


bind = bind_eqn  # evaluate one equation (version-dependent: see _jax_compat)


def _missing_rule(eqn):
    name = eqn.primitive.name
    exported = getattr(jcore.primitives, f"{name}_p", None) is eqn.primitive
    target = f"jax.extend.core.primitives.{name}_p" if exported else f'<the Primitive>, or "{name}"'
    refused = REFUSED.get(name)
    why = f"  why: {refused}\n" if refused else ""
    return MissingRuleError(
        f"funcgrad has no VJP rule for primitive '{name}', which lies on the differentiated "
        f"path.\n  equation: {describe_eqn(eqn)}\n  from: {source_line(eqn)}\n{why}"
        f"Register one with\n    @funcgrad.register_vjp({target})"
        f"\n    def {name}_vjp(g, ans, *primals, **params): ...\n"
        f"or, if it has no derivative, funcgrad.register_nondiff(...). "
        f"See docs/adding-a-rule.md."
    )


def forward(jaxpr, consts, args, active_in, saved=None, keep_all=False) -> tuple[list, Tape]:
    """Evaluate ``jaxpr``, keeping every value; ``active_in[i]``: input i is differentiated.

    ``saved`` maps an equation index to outputs already computed (remat's saved values).
    The tape keeps only what the backward walk reads (liveness): the inputs of every
    equation on the differentiated path, and its outputs where its rule reads ``ans``;
    ``keep_all`` keeps every value (for a caller that reads the tape itself). See
    funcgrad/_liveness.py.
    """
    env = {}
    active = set()
    residuals = {}
    s = session()  # a watch (diagnostics), or None: the plain walk
    scope, opened = (s.scope, set()) if s is not None else ((), ())
    needed = set()  # what the rules will read
    # Prune only concrete values: under a trace (jit, compiled eager calls) XLA drops unread
    # values itself, and tracing each rule once more would only add trace time.
    prune = not keep_all and s is None and not any(isinstance(a, jax.core.Tracer) for a in args)

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = val
    for v, val, a in zip(jaxpr.invars, args, active_in):
        env[v] = val
        if a and differentiable(v.aval):
            active.add(v)
        if s is not None:
            s.watch.on_input(scope, v, val)
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        act = tuple(is_var(v) and v in active for v in eqn.invars)
        entry = None
        if s is not None:
            s.watch.home[id(eqn)] = (jaxpr, s.enclosing)
        if any(act) and not is_nondiff(eqn.primitive):
            entry = lookup(eqn.primitive) if s is None else watched_entry(s, scope, i, eqn)
            if entry is None:
                raise _missing_rule(eqn)
        if saved and i in saved:
            outs = saved[i]
        elif entry is not None and entry.forward is not None:
            with eqn_context(eqn):
                outs, residuals[i] = call_forward(entry, eqn.primitive, act, invals, eqn.params)
        else:
            outs = bind(eqn, invals)
        if s is not None:
            _watch_forward(s, scope, i, eqn, entry, opened, Record(invals, list(outs), act))
        for v, val in zip(eqn.outvars, outs):
            if is_var(v):
                env[v] = val
                if entry is not None and differentiable(v.aval):
                    active.add(v)
        if entry is not None and prune:
            _note_reads(eqn, entry, act, i in residuals, needed)
    outs = [read(v) for v in jaxpr.outvars]
    if prune:  # a watch reads every value
        env = {v: env[v] for v in needed}
    return outs, Tape(env, frozenset(active), residuals, scope, frozenset(opened))


def _note_reads(eqn, entry, act, own_residuals, needed):
    """Add to ``needed`` the values equation ``eqn``'s rule reads in the backward walk."""
    if own_residuals or entry.forward is not None:  # nested rules: all inputs, own residuals
        needed.update(v for v in eqn.invars if is_var(v))
        return
    reads_ans, reads = rule_reads(eqn, entry.rule, act)
    needed.update(v for v, r in zip(eqn.invars, reads) if r and is_var(v))
    if reads_ans:
        needed.update(v for v in eqn.outvars if is_var(v))


def _watch_forward(s, scope, i, eqn, entry, opened, rec):
    if entry is not None and entry.opened:
        opened.add(i)
    elif not s.recomputing:  # a remat's recomputation in the backward walk is not reported
        if entry is None:
            rec.act = (False,) * len(rec.act)
        s.watch.on_forward(scope, i, eqn, rec)


def _check_cotangent(eqn, k, var, ct):
    aval = var.aval
    if np.shape(ct) != tuple(aval.shape) or jnp.result_type(ct) != aval.dtype:
        raise RuleError(
            f"the VJP rule for '{eqn.primitive.name}' returned a cotangent of type "
            f"{aval_str(ct)} for input {k}, which has type {aval_str(aval)}; a rule must "
            f"return each cotangent with its input's shape and dtype.\n"
            f"  equation: {describe_eqn(eqn)}\n  from: {source_line(eqn)}"
        )


def backward(jaxpr, tape: Tape, cts_out) -> list:
    """Reverse walk: cotangents of ``jaxpr``'s inputs (None = zero) from those of its outputs."""
    env, active = tape.env, tape.active
    cts = {}
    s = session()
    if s is not None:
        s.recomputing = True

    def accumulate(v, ct):
        # Fan-out: a value used k times receives k contributions, summed here.
        if ct is None or not is_var(v) or v not in active:
            return
        prev = cts.get(v)
        cts[v] = ct if prev is None else jax.lax.add(prev, ct)

    def read(v):  # a value no rule reads was not kept: its stand-in has its shape and dtype
        if isinstance(v, jcore.Literal):
            return v.val
        return env[v] if v in env else stand_in(v.aval)

    for v, ct in zip(jaxpr.outvars, cts_out):
        accumulate(v, ct)
    for i in range(len(jaxpr.eqns) - 1, -1, -1):
        eqn = jaxpr.eqns[i]
        g = [cts.pop(v, None) if is_var(v) else None for v in eqn.outvars]
        if all(x is None for x in g):
            continue
        entry = lookup(eqn.primitive) if s is None else _watch_backward(s, tape, i, eqn, read)
        multi = eqn.primitive.multiple_results
        if i in tape.residuals:  # a rule with its own forward gets what that forward kept
            ans = tape.residuals[i]
        else:
            ans = [read(v) for v in eqn.outvars] if multi else read(eqn.outvars[0])
        if not multi:
            g = g[0]
        with eqn_context(eqn):
            primals = [read(v) for v in eqn.invars]
            cts_in = call_rule(entry, eqn.primitive, g, ans, primals, eqn.params)
        if not isinstance(cts_in, (tuple, list)) or len(cts_in) != len(eqn.invars):
            raise RuleError(
                f"the VJP rule for '{eqn.primitive.name}' must return a tuple with one entry "
                f"per input ({len(eqn.invars)}), got {type(cts_in).__name__}"
                f"{'' if not isinstance(cts_in, (tuple, list)) else f' of {len(cts_in)}'}."
                f"\n  equation: {describe_eqn(eqn)}\n  from: {source_line(eqn)}"
            )
        for k, (v, ct) in enumerate(zip(eqn.invars, cts_in)):
            if ct is not None and is_var(v) and v in active:
                _check_cotangent(eqn, k, v, ct)
                if s is not None:
                    s.watch.on_contribution(tape.scope, i, eqn, k, v, ct)
                accumulate(v, ct)
    return [cts.get(v) for v in jaxpr.invars]


def _watch_backward(s, tape, i, eqn, read):
    """The watched entry for equation ``i``, holding the record its hook receives."""
    entry = watched_entry(s, tape.scope, i, eqn)
    entry.opened = i in tape.opened
    act = tuple(is_var(v) and v in tape.active for v in eqn.invars)
    outs = [read(v) if is_var(v) else None for v in eqn.outvars]
    entry.rec = Record([read(v) for v in eqn.invars], outs, act, entry.opened)
    return entry


def instantiate(ct, aval):
    return zeros_like_aval(aval) if ct is None else ct


class Residual:
    """What a nested rule's forward keeps: static metadata plus a pytree of arrays."""

    def __init__(self, static, arrays):
        self.static = static
        self.arrays = arrays


jax.tree_util.register_pytree_node(
    Residual, lambda r: ((r.arrays,), r.static), lambda s, c: Residual(s, c[0])
)


def reaches(jaxpr, out_mask) -> list[bool]:
    """Which inputs of ``jaxpr`` reach an output marked in ``out_mask`` along a path of
    differentiable equations: the inputs that can get a non-zero cotangent from those
    outputs (``activity`` run backwards; a nested jaxpr counts as one equation)."""
    live = {v for v, m in zip(jaxpr.outvars, out_mask) if m and is_var(v)}
    for eqn in reversed(jaxpr.eqns):
        if is_nondiff(eqn.primitive) or not any(is_var(v) and v in live for v in eqn.outvars):
            continue
        live.update(v for v in eqn.invars if is_var(v))
    return [v in live for v in jaxpr.invars]


def activity(jaxpr, active_in) -> list[bool]:
    """Which outputs of ``jaxpr`` depend on an active input (without evaluating it)."""
    active = {v for v, a in zip(jaxpr.invars, active_in) if a and differentiable(v.aval)}
    for eqn in jaxpr.eqns:
        if is_nondiff(eqn.primitive):
            continue
        if any(is_var(v) and v in active for v in eqn.invars):
            active.update(v for v in eqn.outvars if is_var(v) and differentiable(v.aval))
    return [is_var(v) and v in active for v in jaxpr.outvars]
