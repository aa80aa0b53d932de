"""Hooks into the engine's two walks, so tools can look inside them without a walk of their own.

The diagnostics (blame, explain_nans, why_zero, draw_graph) are configurations of the
engine: a ``Watch`` subclass receives a callback per equation of the forward walk, sees (and
may replace) each rule's cotangents in the backward walk, and names the primitives whose
nested jaxprs are walked with the watch still active ("opened": the equations inside a jit,
a custom_jvp rule, a remat block, the branch a cond took, the steps of a scan). Everything
else, including the nested rules it does not open, runs exactly as under ``grad``, so what a
diagnostic records is what ``grad`` computes.

    with watching(MyWatch()):
        outs, tape = forward(jaxpr, consts, args, active)
        cts = backward(jaxpr, tape, cts_out)

Scopes name where an equation lives: a tuple of ``(index, label)`` pairs, one per enclosing
opened equation, e.g. ``((3, "jit 'mlp'"), (0, "step 2"))``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses

from ._registry import Entry, call_forward, call_rule, lookup


@dataclasses.dataclass
class Record:
    """One equation as walked: its inputs, outputs and which inputs are differentiated."""

    invals: list
    outs: list
    act: tuple
    opened: bool = False  # its nested jaxpr was walked with the watch active


class Watch:
    """A configuration of the walks. Every hook has a do-nothing default."""

    open: frozenset = frozenset()  # primitive names whose nested jaxprs are walked, watched
    rules: dict = {}  # primitive name -> Entry that walks an opened equation (scan unrolled)
    # With ``exact``, an equation opened by a replacement entry is also run by the table's own
    # entry, whose outputs and cotangents are the ones passed on: what flows through the
    # walks is then bit for bit what ``grad`` computes (an unrolled scan is only inspected).
    exact: bool = True

    def __init__(self):
        self.home: dict = {}  # id(eqn) -> (the jaxpr holding it, the equation that opened it)

    def opens(self, eqn) -> bool:
        return eqn.primitive.name in self.open

    def label(self, eqn) -> str:
        return eqn.primitive.name

    def on_input(self, scope, var, value) -> None:
        """Each input of every jaxpr walked."""

    def on_forward(self, scope, i, eqn, rec: Record) -> None:
        """After each equation of the forward walk that is not opened."""

    def cotangents(self, scope, i, eqn, rec: Record, g: list, call) -> list:
        """The input cotangents of an equation; ``call(g)`` runs its rule (for an opened
        equation: the watched walk of its nested jaxpr). ``g``: one entry per output."""
        del scope, i, eqn, rec
        return call(g)

    def on_contribution(self, scope, i, eqn, k, var, ct) -> None:
        """Equation ``i`` sends cotangent ``ct`` to its input ``k`` (one fan-out term)."""

    def missing_rule(self, eqn) -> Entry | None:
        """An entry for a primitive the table lacks (default: none, the engine raises)."""
        del eqn
        return None


class _Session:
    def __init__(self, watch: Watch):
        self.watch = watch
        self.scope: tuple = ()
        self.enclosing = None  # the opened equation whose nested jaxpr is being walked
        self.recomputing = False  # in the backward walk: forward walks there are recomputations


_SESSION: contextvars.ContextVar = contextvars.ContextVar("funcgrad_watch", default=None)


def session() -> _Session | None:
    return _SESSION.get()


@contextlib.contextmanager
def watching(watch: Watch):
    """Run the engine's walks under ``watch`` inside this block."""
    token = _SESSION.set(_Session(watch))
    try:
        yield watch
    finally:
        _SESSION.reset(token)


@contextlib.contextmanager
def unwatched():
    """Suspend the watch: what runs here is exactly what ``grad`` runs."""
    token = _SESSION.set(None)
    try:
        yield
    finally:
        _SESSION.reset(token)


@contextlib.contextmanager
def step_scope(index: int, label: str):
    """For an opened rule that walks its body more than once (a scan's steps)."""
    s = session()
    if s is None:
        yield
        return
    outer = s.scope
    s.scope = outer + ((index, label),)
    try:
        yield
    finally:
        s.scope = outer


def rename_scope(label: str) -> None:
    """For an opened rule whose label is only known at run time (the branch a cond took)."""
    s = session()
    if s is not None and s.scope:
        s.scope = s.scope[:-1] + ((s.scope[-1][0], label),)


def own_cotangents(eqn, rec: Record, g: list) -> list:
    """``eqn``'s cotangents from the table's rule, run unwatched, as ``grad`` runs it."""
    entry = lookup(eqn.primitive)
    if entry is None:
        raise LookupError(f"funcgrad has no VJP rule for '{eqn.primitive.name}'")
    multi = eqn.primitive.multiple_results
    with unwatched():
        if entry.forward is not None:
            _, ans = call_forward(entry, eqn.primitive, rec.act, rec.invals, eqn.params)
        else:
            ans = rec.outs if multi else rec.outs[0]
        gg = g if multi else g[0]
        return list(call_rule(entry, eqn.primitive, gg, ans, rec.invals, eqn.params))


class WatchedEntry:
    """An equation's entry as the walks call it under a watch: opened equations run their
    nested walks in their own scope, the others run unwatched; the backward call goes
    through ``Watch.cotangents``."""

    def __init__(self, s: _Session, scope, i, eqn, entry: Entry, opened: bool, table=None):
        self.s, self.scope, self.i, self.eqn = s, scope, i, eqn
        self.entry, self.opened = entry, opened
        self.table = table  # the table's entry, when ``entry`` replaces it and runs beside it
        self.forward = self._forward if entry.forward is not None else None
        self.rec: Record | None = None  # set by the backward walk before calling ``rule``

    @contextlib.contextmanager
    def _inside(self):
        if not self.opened:
            with unwatched():
                yield
            return
        s = self.s
        outer = s.scope, s.enclosing
        s.scope, s.enclosing = self.scope + ((self.i, s.watch.label(self.eqn)),), self.eqn
        try:
            yield
        finally:
            s.scope, s.enclosing = outer

    def _forward(self, active, *invals, **params):
        with self._inside():
            outs, res = call_forward(self.entry, self.eqn.primitive, active, invals, params)
        if self.table is None:
            return outs, res
        with unwatched():
            outs, own = call_forward(self.table, self.eqn.primitive, active, invals, params)
        return outs, (res, own)

    def rule(self, g, ans, *invals, **params):
        multi = self.eqn.primitive.multiple_results
        ans, own = ans if self.table is not None else (ans, None)

        def call(gs):
            with self._inside():
                gg = gs if multi else gs[0]
                return list(call_rule(self.entry, self.eqn.primitive, gg, ans, invals, params))

        gs = list(g) if multi else [g]
        cts = self.s.watch.cotangents(self.scope, self.i, self.eqn, self.rec, gs, call)
        if self.table is None:
            return cts
        with unwatched():
            return call_rule(self.table, self.eqn.primitive, g, own, invals, params)


def watched_entry(s: _Session, scope, i, eqn):
    """The entry the walks use for ``eqn`` under session ``s`` (None: the table has none)."""
    opened = s.watch.opens(eqn)
    table = lookup(eqn.primitive)
    replacement = s.watch.rules.get(eqn.primitive.name) if opened else None
    if replacement is not None:
        exact = table if s.watch.exact and table is not None else None
        return WatchedEntry(s, scope, i, eqn, replacement, opened, exact)
    entry = table or s.watch.missing_rule(eqn)
    return None if entry is None else WatchedEntry(s, scope, i, eqn, entry, opened)
