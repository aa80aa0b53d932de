"""Where did the NaN come from? Provenance of non-finite values and cotangents.

The program is replayed with funcgrad's own rules, keeping every value. Forward: the first
equation that turns finite inputs into a non-finite output is an *origin*; a later equation
whose output is finite again although an input was not has *masked* it (usually a
``jnp.where``). Backward: the first equation that turns a finite cotangent into a non-finite
one is where the gradient broke. When the incoming cotangent was exactly zero at the broken
entries, the culprit is the ``jnp.where`` trap: the branch not taken has an infinite or NaN
derivative, and ``0 * inf = NaN``. The report then prints the "double where" fix for the line.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util
from jax.extend.core import primitives as P

from .._api import value_and_grad as fg_value_and_grad
from .._dataflow import flow
from .._errors import FuncgradError, describe_eqn, source_line
from ._inspect import DiagnosticWatch, describe_scope, is_var
from ._source import code_at

_SAFE_VALUE = {
    "log": "1.0",
    "sqrt": "1.0",
    "rsqrt": "1.0",
    "div": "1.0",
    "pow": "1.0",
    "log1p": "0.0",
    "acos": "0.0",
    "asin": "0.0",
    "atanh": "0.0",
}


class NonFiniteGradientError(FuncgradError, FloatingPointError):
    """A gradient has NaN or Inf entries (raised by debug_grad, with the provenance report)."""


@dataclasses.dataclass
class NanEvent:
    """One equation where a non-finite value (forward) or cotangent (backward) first arose."""

    direction: str  # "forward" or "backward"
    primitive: str
    where: str
    context: str
    equation: str
    n_bad: int
    n_total: int
    detail: str
    masked_by: str = ""  # forward: the equation that made it finite again
    reaches_output: bool = False  # forward: the non-finite value reaches f's output
    trap: bool = False  # backward: 0 * inf from a branch not taken
    fix: str = ""

    def describe(self) -> str:
        where = self.where + (f"  [inside {self.context}]" if self.context else "")
        lines = [f"'{self.primitive}' at {where}", f"    {self.equation}", f"    {self.detail}"]
        code = code_at(self.where)
        if code:
            lines.insert(1, f"    source: {code}")
        if self.fix:
            lines += ["    " + ln for ln in self.fix.splitlines()]
        return "\n".join(lines)


@dataclasses.dataclass
class NanReport:
    """Non-finite provenance: backward origins, and forward origins (reaching or masked)."""

    value_finite: bool
    gradient_finite: bool
    bad_leaves: list[str]
    origins: list[NanEvent]  # backward: where a non-finite cotangent first arose
    forward: list[NanEvent]  # forward: where a non-finite value first arose

    @property
    def ok(self) -> bool:
        return self.value_finite and self.gradient_finite

    @property
    def masked(self) -> list[NanEvent]:
        return [e for e in self.forward if e.masked_by and not e.reaches_output]

    @property
    def traps(self) -> list[NanEvent]:
        return [e for e in self.origins if e.trap]

    def __str__(self) -> str:
        lines = []
        if self.gradient_finite:
            lines.append("explain_nans: the gradient is finite.")
        else:
            lines.append(
                f"explain_nans: the gradient is NOT finite in {', '.join(self.bad_leaves)}."
            )
        for k, e in enumerate(self.origins, 1):
            kind = "jnp.where trap" if e.trap else "non-finite cotangent"
            lines.append(f"[{k}] {kind} first arises in the backward pass of {e.describe()}")
        reach = [e for e in self.forward if e.reaches_output]
        for e in reach:
            lines.append(
                f"forward value reaches the output: non-finite first produced by {e.describe()}"
            )
        if self.masked:
            lines.append(
                "Produced but masked in the forward pass (the value never reaches "
                "the output; only its derivative can leak, see above):"
            )
            for e in self.masked:
                lines.append(f"  - {e.describe()}\n    masked by {e.masked_by}")
        if self.ok and not self.masked:
            lines.append("No non-finite value anywhere in the forward or backward pass.")
        return "\n".join(lines)


def explain_nans(f, *args, argnums=0, has_aux=False, max_scan_steps: int = 64) -> NanReport:
    """Trace every NaN/Inf in ``f``'s value and funcgrad gradient back to its equation.

    Args:
        f: scalar function (with ``has_aux``: returns ``(value, aux)``).
        args: its arguments; ``argnums`` (int or tuple) are differentiated, as in ``grad``.

    Returns:
        A NanReport: ``origins`` (backward, with ``trap`` and a ``fix`` for the jnp.where
        trap), ``forward`` (values, ``reaches_output`` or ``masked_by``); ``str()`` reads it.

    Example:
        >>> import jax.numpy as jnp, funcgrad.diagnostics as fd
        >>> f = lambda x: jnp.sum(jnp.where(x > 0, jnp.sqrt(x), 0.0))
        >>> fd.explain_nans(f, jnp.array([0.0, 4.0])).traps[0].primitive
        'sqrt'
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    flat, in_tree = tree_util.tree_flatten(args)
    owner = [k for k, a in enumerate(args) for _ in tree_util.tree_leaves(a)]
    paths = [
        f"args[{owner[j]}]{tree_util.keystr(p)}"
        for j, (p, _) in enumerate(
            (pp, v) for a in args for pp, v in tree_util.tree_flatten_with_path(a)[0]
        )
    ]

    def flat_f(*leaves):
        out = f(*tree_util.tree_unflatten(in_tree, leaves))
        return out[0] if has_aux else out

    closed = jax.make_jaxpr(flat_f)(*flat)
    active = [
        owner[j] in nums and jnp.issubdtype(jnp.result_type(x), jnp.floating)
        for j, x in enumerate(flat)
    ]
    walker = _NanWalker(max_scan_steps)
    outs, tape = walker.forward(closed.jaxpr, closed.consts, flat, active)
    for v, o in zip(closed.jaxpr.outvars, outs, strict=False):
        ev = walker.taint.get(id(o)) if is_var(v) else None
        if ev is not None:
            ev.reaches_output = True
    value_finite = all(_finite(o) for o in outs)
    cts = walker.backward(closed.jaxpr, tape, [jnp.ones_like(o) for o in outs])
    bad = [
        paths[j]
        for j, (c, a) in enumerate(zip(cts, active, strict=False))
        if a and c is not None and not _finite(c)
    ]
    return NanReport(value_finite, not bad, bad, walker.origins, walker.events)


def _finite(x) -> bool:
    x = np.asarray(x)
    return not np.issubdtype(x.dtype, np.inexact) or bool(np.all(np.isfinite(x)))


def _bad_mask(x):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return np.zeros(x.shape, bool)
    return ~np.isfinite(x)


class _NanWalker(DiagnosticWatch):
    def __init__(self, max_scan_steps):
        super().__init__(max_scan_steps)
        self.taint: dict = {}  # id(non-finite value) -> the forward NanEvent it descends from
        self.events: list[NanEvent] = []
        self.origins: list[NanEvent] = []
        self._keep: list = []  # keep tainted arrays alive so their ids stay unique
        self._seen: set = set()

    def on_forward(self, scope, i, eqn, rec):
        parents = [self.taint[id(x)] for x in rec.invals if id(x) in self.taint]
        bad_in = any(not _finite(x) for x in rec.invals)
        for o in rec.outs:
            if _finite(o):
                continue
            if parents:
                self.taint[id(o)] = parents[0]
            elif not bad_in:
                mask = _bad_mask(o)
                ev = NanEvent(
                    "forward",
                    eqn.primitive.name,
                    self.user_line(eqn),
                    describe_scope(scope),
                    describe_eqn(eqn, 160),
                    int(mask.sum()),
                    int(mask.size),
                    _value_detail(eqn, rec.invals, mask),
                )
                self.events.append(ev)
                self.taint[id(o)] = ev
            self._keep.append(o)
        if parents and all(_finite(o) for o in rec.outs):
            for ev in parents:
                ev.masked_by = ev.masked_by or f"{_op_name(eqn)} at {self.user_line(eqn)}"

    def leaf_cotangents(self, scope, i, eqn, rec, g, call):
        cts = call(g)
        if all(c is None or _finite(c) for c in g):
            for k, c in enumerate(cts):
                if c is not None and rec.act[k] and not _finite(c):
                    self._origin(scope, eqn, rec, g, k, c)
                    break
        return cts

    def _origin(self, scope, eqn, rec, g, k, ct):
        key = id(eqn)
        if key in self._seen:
            return
        self._seen.add(key)
        mask = _bad_mask(ct)
        g0 = g[0] if len(g) == 1 else None
        trap = False
        if g0 is not None and np.shape(g0) == mask.shape and mask.any():
            trap = bool(np.all(np.asarray(g0)[mask] == 0))
        detail = (
            f"its rule turns a finite cotangent into {int(mask.sum())} non-finite "
            f"entries of input {k} ({_value_detail(eqn, rec.invals, mask)})"
        )
        ev = NanEvent(
            "backward",
            eqn.primitive.name,
            self.user_line(eqn),
            describe_scope(scope),
            describe_eqn(eqn, 160),
            int(mask.sum()),
            int(mask.size),
            detail,
            trap=trap,
        )
        if trap:
            where_eqn = self._find_where(eqn)
            ev.detail += (
                "; the incoming cotangent is exactly 0 there, so 0 * inf = NaN: "
                "the derivative of a branch that was not taken"
            )
            ev.fix = _double_where_fix(eqn, where_eqn)
        self.origins.append(ev)

    def _find_where(self, eqn, depth=10):
        """The select_n (jnp.where) downstream of ``eqn``, searching out of nested scopes."""
        jaxpr, enclosing = self.home.get(id(eqn), (None, None))
        frontier = [v for v in eqn.outvars if is_var(v)]
        while jaxpr is not None:
            consumers = _consumers(jaxpr)
            seen = set(frontier)
            for _ in range(depth):
                nxt = []
                for v in frontier:
                    for e in consumers.get(v, ()):
                        if _is_where(e):
                            return self.user_level(e)
                        nxt += [o for o in e.outvars if is_var(o) and o not in seen]
                        seen.update(nxt)
                frontier = nxt
            if enclosing is None:
                return None
            jaxpr, enclosing2 = self.home.get(id(enclosing), (None, None))
            frontier = [v for v in enclosing.outvars if is_var(v)]
            enclosing = enclosing2
        return None


def _consumers(jaxpr) -> dict:
    """Var -> the equations of ``jaxpr`` that read it (nested ones as single equations)."""
    out: dict = {}
    for step in flow(jaxpr, open_nested=False):
        for _, v in step.ins:
            out.setdefault(v, []).append(step.eqn)
    return out


def _is_where(eqn) -> bool:
    name = eqn.primitive.name
    where = name == P.jit_p.name and eqn.params.get("name") in ("_where", "where")
    return name == P.select_n_p.name or where


def _op_name(eqn) -> str:
    if _is_where(eqn):
        return "jnp.where"
    name = eqn.params.get("name")
    return f"{eqn.primitive.name} '{name}'" if isinstance(name, str) else f"'{eqn.primitive.name}'"


def _value_detail(eqn, invals, mask) -> str:
    """``input = 0.0 at (3,)`` for the first bad entry, when shapes allow it."""
    idx = np.argwhere(mask)
    if not idx.size:
        return "no entry located"
    first = tuple(int(t) for t in idx[0])
    shown = []
    for k, x in enumerate(invals[:2]):
        x = np.asarray(x)
        if x.shape == mask.shape:
            shown.append(f"input {k} = {float(x[first]):.6g}")
        elif x.size == 1:
            shown.append(f"input {k} = {float(x.reshape(())):.6g}")
    at = f"first at index {first}" if first else "the scalar"
    return f"{at}: " + ", ".join(shown) if shown else at


# ---------------------------------------------------------------------- the double-where fix


def _double_where_fix(trap_eqn, where_eqn) -> str:
    prim = trap_eqn.primitive.name
    safe = _SAFE_VALUE.get(prim, "1.0")
    if where_eqn is None:
        return (
            f"fix: the value of '{prim}' is masked but its derivative is not. Make its "
            f"input safe first, e.g. x_safe = jnp.where(cond, x, {safe}), and apply "
            f"'{prim}' to x_safe inside the outer jnp.where (the \"double where\")."
        )
    where = source_line(where_eqn)
    text = _rewrite(where, source_line(trap_eqn), safe)
    head = (
        f'fix (the "double where"): the jnp.where at {where} masks the value of '
        f"'{prim}' but not its derivative. Make the input safe before '{prim}':"
    )
    return head + "\n" + text


def _line_col(where: str):
    head = where.split(" (")[0].rsplit(":", 2)
    try:
        return int(head[1]), int(head[2])
    except (IndexError, ValueError):
        return None


def _rewrite(where_loc: str, trap_loc: str, safe: str) -> str:
    """Rewrite the where line: ``jnp.where(c, op(x), y)`` -> safe input + the same where."""
    line = code_at(where_loc)
    generic = (
        f"    x_safe = jnp.where(cond, x, {safe})\n    ... jnp.where(cond, op(x_safe), other) ..."
    )
    try:
        call, cond, branch, arg = _parse_where(
            line, code_at(trap_loc), _line_col(trap_loc), _line_col(where_loc)
        )
    except (SyntaxError, ValueError):
        return generic
    if branch == 1:
        safe_line = f"{arg}_safe = jnp.where({cond}, {arg}, {safe})"
    else:
        safe_line = f"{arg}_safe = jnp.where({cond}, {safe}, {arg})"
    fixed = call.replace(f"({arg})", f"({arg}_safe)")
    return f"    {safe_line}\n    {line.replace(call, fixed)}\n  (was: {line})"


def _parse_where(line, trap_line, trap_pos, where_pos):
    """The where call's source, its condition, which branch holds the trap, and the trap's
    argument (all as source text)."""
    tree = ast.parse(_as_statement(line))
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", getattr(n.func, "id", "")) == "where"
        and len(n.args) == 3
    ]
    if not calls:
        raise ValueError("no three-argument where call on the line")
    src = _as_statement(line)
    call = calls[0]
    cond = ast.get_source_segment(src, call.args[0])
    for b in (1, 2):
        for node in ast.walk(call.args[b]):
            if isinstance(node, ast.Call) and node.args:
                arg = ast.get_source_segment(src, node.args[0])
                if arg and arg.isidentifier():
                    return ast.get_source_segment(src, call), cond, b, arg
    del trap_line, trap_pos, where_pos
    raise ValueError("trap argument not found")


def _as_statement(line: str) -> str:
    text = line.strip()
    if text.startswith("return "):
        text = text[len("return ") :]
    return text


# ---------------------------------------------------------------------- debug mode


def debug_grad(f, argnums=0, has_aux=False, on_nonfinite: str = "raise"):
    """funcgrad.grad that explains a non-finite gradient instead of returning it silently.

    Computes the gradient with funcgrad; if any entry is NaN or Inf (checked on concrete
    values, so call it outside ``jit``), runs ``explain_nans`` and raises
    NonFiniteGradientError with the report (``on_nonfinite="warn"``: warns and returns).

    Example:
        >>> import jax.numpy as jnp, funcgrad.diagnostics as fd
        >>> fd.debug_grad(lambda x: jnp.sum(x ** 2))(jnp.ones(2))
        Array([2., 2.], dtype=float32)
    """
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}.")
    vg = fg_value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_fun(*args, **kwargs):
        value, g = vg(*args, **kwargs)
        leaves = tree_util.tree_leaves(g)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return (g, value[1]) if has_aux else g  # traced: nothing concrete to inspect
        if not all(_finite(x) for x in leaves):
            report = explain_nans(
                functools.partial(f, **kwargs), *args, argnums=argnums, has_aux=has_aux
            )
            if on_nonfinite == "raise":
                raise NonFiniteGradientError("\n" + str(report))
            warnings.warn(str(report), RuntimeWarning, stacklevel=2)
        return (g, value[1]) if has_aux else g

    return grad_fun
