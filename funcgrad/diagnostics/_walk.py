"""An instrumented replay of a jaxpr: every value kept, every cotangent seen, nested jaxprs opened.

funcgrad's own walk (``funcgrad._backward``) hands a nested jaxpr to its rule as a whole. A
diagnostic needs to look inside: which equation *within* the jitted layer, the scan body or
the custom_jvp rule did it. ``Walker`` replays a jaxpr equation by equation, recording each
value, and opens ``jit``, ``closed_call``, ``remat``, ``cond`` (the branch taken),
``custom_jvp_call`` (its JVP jaxpr, whose transpose is the VJP) and ``scan`` (unrolled over its
recorded steps). What happens at a leaf equation in the backward walk is the subclass's choice
(``leaf_cotangents``): funcgrad's rule, ``jax.vjp`` of the equation, or both, compared.

Scopes name where an equation lives: a tuple of ``(index, label)`` pairs, one per enclosing
equation, e.g. ``((3, "jit 'mlp'"), (0, "step 2"))``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jax.extend.core import primitives as p

from .._backward import activity, bind, differentiable
from .._errors import source_line
from .._jax_compat import CLOSED_CALL_NAME, REMAT_NAMES, custom_jvp_jaxpr, eqn_params
from .._registry import call_forward, call_rule, is_nondiff, lookup


def is_var(v) -> bool:
    return isinstance(v, jcore.Var) and not isinstance(v, jcore.DropVar)


@dataclasses.dataclass
class Record:
    """One equation as replayed: its inputs, outputs and which inputs were active."""

    invals: list
    outs: list
    act: tuple


@dataclasses.dataclass
class WalkTape:
    env: dict  # Var -> value
    active: set  # Vars that depend on a differentiated input
    records: dict  # eqn index -> Record
    subs: dict  # eqn index -> what the opener kept (sub-tapes)
    scope: tuple


class Walker:
    """Replays a jaxpr forward (keeping values) and backward (calling ``leaf_cotangents``).

    Subclasses override the hooks; the walk itself never changes.
    """

    open_prims = frozenset(
        {p.jit_p.name, CLOSED_CALL_NAME, *REMAT_NAMES, p.cond_p.name}
        | {p.custom_jvp_call_p.name, p.scan_p.name}
    )

    def __init__(self, max_scan_steps: int = 64):
        self.max_scan_steps = max_scan_steps
        self.home: dict = {}  # id(eqn) -> (the jaxpr holding it, the equation that opened it)
        self._opened: list = []

    def user_line(self, eqn) -> str:
        """The equation's user source line, or that of the nearest enclosing equation with
        one (JAX's own jitted helpers, like the one inside jnp.where, carry none)."""
        return source_line(self.user_level(eqn))

    def user_level(self, eqn):
        """``eqn``, or the nearest enclosing equation that has a user source line."""
        while "unknown" in source_line(eqn):
            outer = self.home.get(id(eqn), (None, None))[1]
            if outer is None:
                break
            eqn = outer
        return eqn

    # ------------------------------------------------------------------ hooks
    def on_forward(self, scope, i, eqn, record: Record) -> None:
        """Called after every equation that is not opened."""

    def on_input(self, scope, var, value) -> None:
        """Called for each input of every jaxpr walked."""

    def leaf_cotangents(self, scope, i, eqn, record: Record, g: list) -> list:
        """Input cotangents of a leaf equation; ``g`` has one entry (or None) per output."""
        raise NotImplementedError

    def after_nested(self, scope, i, eqn, record: Record, g: list, cts: list) -> list:
        """Called after an opened equation's backward walk; may replace its cotangents."""
        del scope, i, eqn, record, g
        return cts

    def on_contribution(self, scope, i, eqn, k, var, ct) -> None:
        """Equation ``i`` sends cotangent ``ct`` to its input ``k`` (fan-out contributions)."""

    def should_open(self, eqn) -> bool:
        name = eqn.primitive.name
        if name not in self.open_prims:
            return False
        if name == p.scan_p.name:
            return 0 < eqn.params["length"] <= self.max_scan_steps
        return True

    # ------------------------------------------------------------------ the walks
    def forward(self, jaxpr, consts, args, active_in, scope=()) -> tuple[list, WalkTape]:
        env, active, records, subs = {}, set(), {}, {}

        def read(v):
            return v.val if isinstance(v, jcore.Literal) else env[v]

        for v, val in zip(jaxpr.constvars, consts, strict=False):
            env[v] = val
        for v, val, a in zip(jaxpr.invars, args, active_in, strict=False):
            env[v] = val
            self.on_input(scope, v, val)
            if a and differentiable(v.aval):
                active.add(v)
        enclosing = self._opened[-1] if self._opened else None
        for i, eqn in enumerate(jaxpr.eqns):
            self.home[id(eqn)] = (jaxpr, enclosing)
            invals = [read(v) for v in eqn.invars]
            act = tuple(is_var(v) and v in active for v in eqn.invars)
            diff = any(act) and not is_nondiff(eqn.primitive)
            act = act if diff else (False,) * len(act)
            if any(act) and self.should_open(eqn):
                opener = _OPENERS[eqn.primitive.name]
                self._opened.append(eqn)
                try:
                    outs, subs[i] = opener.forward(
                        self, eqn, invals, act, scope + ((i, label(eqn)),)
                    )
                finally:
                    self._opened.pop()
            else:
                outs = bind(eqn, invals)
            rec = Record(invals, list(outs), act)
            records[i] = rec
            if i not in subs:
                self.on_forward(scope, i, eqn, rec)
            for v, val in zip(eqn.outvars, outs, strict=False):
                if is_var(v):
                    env[v] = val
                    if diff and differentiable(v.aval):
                        active.add(v)
        outs = [read(v) for v in jaxpr.outvars]
        return outs, WalkTape(env, active, records, subs, scope)

    def backward(self, jaxpr, tape: WalkTape, cts_out) -> list:
        cts = {}

        def accumulate(v, ct):
            if ct is None or not is_var(v) or v not in tape.active:
                return
            prev = cts.get(v)
            cts[v] = ct if prev is None else prev + ct

        for v, ct in zip(jaxpr.outvars, cts_out, strict=False):
            accumulate(v, ct)
        for i in range(len(jaxpr.eqns) - 1, -1, -1):
            eqn = jaxpr.eqns[i]
            g = [cts.pop(v, None) if is_var(v) else None for v in eqn.outvars]
            rec = tape.records[i]
            if all(x is None for x in g) or not any(rec.act):
                continue
            if i in tape.subs:
                opener = _OPENERS[eqn.primitive.name]
                inner = tape.scope + ((i, label(eqn)),)
                cts_in = opener.backward(self, eqn, rec, tape.subs[i], g, inner)
                cts_in = self.after_nested(tape.scope, i, eqn, rec, g, cts_in)
            else:
                cts_in = self.leaf_cotangents(tape.scope, i, eqn, rec, g)
            for k, (v, ct) in enumerate(zip(eqn.invars, cts_in, strict=False)):
                if ct is not None and rec.act[k] and is_var(v) and v in tape.active:
                    self.on_contribution(tape.scope, i, eqn, k, v, ct)
                    accumulate(v, ct)
        return [cts.get(v) for v in jaxpr.invars]


def label(eqn) -> str:
    """``jit 'mlp'``, ``custom_jvp_call 'relu'``, ``scan``: how an equation is named."""
    name = eqn_name(eqn)
    return f"{eqn.primitive.name} '{name}'" if name else eqn.primitive.name


def eqn_name(eqn) -> str:
    """The function name a nested equation carries (jit's ``name``, a custom_jvp's function)."""
    name = eqn.params.get("name")
    if isinstance(name, str):
        return name
    body = eqn.params.get("call_jaxpr")
    info = getattr(getattr(body, "jaxpr", body), "debug_info", None)
    src = getattr(info, "func_src_info", None) or ""
    return src.split(" at ")[0] if src else ""


def describe_scope(scope) -> str:
    """``inside jit 'layer' > scan > step 3`` for messages ('' at top level)."""
    return " > ".join(lbl for _, lbl in scope)


# ---------------------------------------------------------------------- openers


class _Call:
    """jit / closed_call / remat: the body is walked with the equation's inputs."""

    @staticmethod
    def body(eqn):
        params = eqn.params
        closed = params.get("jaxpr", params.get("call_jaxpr"))
        if isinstance(closed, jcore.ClosedJaxpr):
            return closed.jaxpr, closed.consts
        return closed, ()  # remat holds an open jaxpr

    def forward(self, walker, eqn, invals, act, scope):
        jaxpr, consts = self.body(eqn)
        return walker.forward(jaxpr, consts, invals, act, scope)

    def backward(self, walker, eqn, rec, tape, g, scope):
        del rec, scope
        jaxpr, _ = self.body(eqn)
        return walker.backward(jaxpr, tape, g)


class _Cond:
    """cond: only the branch that was taken is walked."""

    def forward(self, walker, eqn, invals, act, scope):
        branches = eqn.params["branches"]
        k = int(np.clip(int(invals[0]), 0, len(branches) - 1))
        br = branches[k]
        outs, tape = walker.forward(
            br.jaxpr,
            br.consts,
            invals[1:],
            act[1:],
            scope[:-1] + ((scope[-1][0], f"cond branch {k}"),),
        )
        return outs, (k, tape)

    def backward(self, walker, eqn, rec, sub, g, scope):
        del rec, scope
        k, tape = sub
        return [None, *walker.backward(eqn.params["branches"][k].jaxpr, tape, g)]


class _CustomJVP:
    """custom_jvp_call: walk the function's own JVP jaxpr; its transpose is the VJP."""

    def forward(self, walker, eqn, invals, act, scope):
        nc, sym = eqn.params["num_consts"], eqn.params["symbolic_zeros"]
        primals, pact = invals[nc:], act[nc:]
        passed = [a or not sym for a in pact]
        jvp_jaxpr, jvp_consts, out_zeros = custom_jvp_jaxpr(
            eqn.params["jvp_jaxpr_fun"], [not t for t in passed], len(primals) + sum(passed)
        )
        tangents = [_zero_tangent(x) for x, t in zip(primals, passed, strict=False) if t]
        active_in = [False] * len(primals) + [a for a, t in zip(pact, passed, strict=False) if t]
        outs, tape = walker.forward(jvp_jaxpr, jvp_consts, [*primals, *tangents], active_in, scope)
        return outs[: len(out_zeros)], (jvp_jaxpr, tuple(out_zeros), passed, tape)

    def backward(self, walker, eqn, rec, sub, g, scope):
        del scope
        jvp_jaxpr, out_zeros, passed, tape = sub
        nc = eqn.params["num_consts"]
        ct_t = [ct for ct, z in zip(g, out_zeros, strict=False) if not z]
        cts = walker.backward(jvp_jaxpr, tape, [None] * len(out_zeros) + ct_t)
        it = iter(cts[len(passed) :])
        cts_in = [next(it) if t else None for t in passed]
        return [None] * nc + [c if a else None for c, a in zip(cts_in, rec.act[nc:], strict=False)]


def _zero_tangent(x):
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return np.zeros(np.shape(x), jax.dtypes.float0)
    return jnp.zeros(np.shape(x), dtype)


class _Scan:
    """scan: unrolled over its steps, each step's body walked with that step's values."""

    def forward(self, walker, eqn, invals, act, scope):
        prm = eqn_params(eqn)
        nc, nk, length, body = prm["num_consts"], prm["num_carry"], prm["length"], prm["jaxpr"]
        act_body = list(act)
        while True:  # an active carry-out makes the carry-in active: a fixed point
            out = activity(body.jaxpr, act_body)
            carry = [a or o for a, o in zip(act_body[nc : nc + nk], out[:nk], strict=False)]
            if carry == act_body[nc : nc + nk]:
                break
            act_body[nc : nc + nk] = carry
        consts, carry, xs = invals[:nc], list(invals[nc : nc + nk]), invals[nc + nk :]
        order = range(length - 1, -1, -1) if prm["reverse"] else range(length)
        tapes, ys = {}, None
        for t in order:
            step_scope = scope + ((t, f"step {t}"),)
            outs, tapes[t] = walker.forward(
                body.jaxpr,
                body.consts,
                [*consts, *carry, *[x[t] for x in xs]],
                act_body,
                step_scope,
            )
            carry = outs[:nk]
            ys = ys or [[None] * length for _ in outs[nk:]]
            for j, y in enumerate(outs[nk:]):
                ys[j][t] = y
        stacked = [jnp.stack(y) for y in (ys or [])]
        return [*carry, *stacked], (list(order), tapes)

    def backward(self, walker, eqn, rec, sub, g, scope):
        del rec, scope
        prm = eqn_params(eqn)
        nc, nk, body = prm["num_consts"], prm["num_carry"], prm["jaxpr"]
        order, tapes = sub
        ct_carry, ct_ys = list(g[:nk]), g[nk:]
        ct_consts = [None] * nc
        n_xs = len(body.jaxpr.invars) - nc - nk
        ct_xs = [{} for _ in range(n_xs)]
        for t in reversed(order):
            cts = walker.backward(
                body.jaxpr, tapes[t], [*ct_carry, *[None if c is None else c[t] for c in ct_ys]]
            )
            ct_consts = [_add(a, b) for a, b in zip(ct_consts, cts[:nc], strict=False)]
            ct_carry = cts[nc : nc + nk]
            for j, c in enumerate(cts[nc + nk :]):
                if c is not None:
                    ct_xs[j][t] = c
        xs_avals = [v.aval for v in eqn.invars[nc + nk :]]
        return [
            *ct_consts,
            *ct_carry,
            *[_stack_cts(c, av) for c, av in zip(ct_xs, xs_avals, strict=False)],
        ]


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


def _stack_cts(per_step: dict, aval):
    if not per_step:
        return None
    zero = jnp.zeros(aval.shape[1:], aval.dtype)
    return jnp.stack([per_step.get(t, zero) for t in range(aval.shape[0])])


_CALL = _Call()
_OPENERS = {
    p.jit_p.name: _CALL,
    CLOSED_CALL_NAME: _CALL,
    **dict.fromkeys(REMAT_NAMES, _CALL),
    p.cond_p.name: _Cond(),
    p.custom_jvp_call_p.name: _CustomJVP(),
    p.scan_p.name: _Scan(),
}
assert p.remat_p.name in _OPENERS and p.jit_p.name in _OPENERS


# ---------------------------------------------------------------------- shared helpers


def funcgrad_rule(eqn, rec: Record, g: list) -> list:
    """Input cotangents from funcgrad's own rule for ``eqn``, called as the engine calls it."""
    entry = lookup(eqn.primitive)
    if entry is None:
        raise LookupError(f"funcgrad has no VJP rule for '{eqn.primitive.name}'")
    multi = eqn.primitive.multiple_results
    if entry.forward is not None:
        _, ans = call_forward(entry, eqn.primitive, rec.act, rec.invals, eqn.params)
    else:
        ans = rec.outs if multi else rec.outs[0]
    cts = call_rule(entry, eqn.primitive, g if multi else g[0], ans, rec.invals, eqn.params)
    return list(cts)


def jax_vjp_of_eqn(eqn, rec: Record, g: list) -> list:
    """Input cotangents from ``jax.vjp`` of the single equation (the reference)."""
    idx = [k for k, a in enumerate(rec.act) if a]

    def one_eqn(*dyn):
        full = list(rec.invals)
        for k, d in zip(idx, dyn, strict=False):
            full[k] = d
        return bind(eqn, full)

    outs, pull = jax.vjp(one_eqn, *[rec.invals[k] for k in idx])
    cts_out = [_ct_or_zero(c, o) for c, o in zip(g, outs, strict=False)]
    got = pull(cts_out)
    full = [None] * len(rec.invals)
    for k, c in zip(idx, got, strict=False):
        full[k] = c
    return full


def _ct_or_zero(ct, out):
    if ct is not None:
        return ct
    dtype = jnp.result_type(out)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return np.zeros(np.shape(out), jax.dtypes.float0)
    return jnp.zeros(np.shape(out), dtype)


def as_np(x, like=None) -> np.ndarray:
    """A cotangent as float64 numpy (None -> zeros shaped like ``like``)."""
    if x is None:
        return np.zeros(np.shape(like), np.float64)
    return np.asarray(x, np.float64)


def where_of(eqn) -> str:
    return source_line(eqn)
