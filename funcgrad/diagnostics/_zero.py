"""Why is this gradient zero? Structural and numerical reasons, per parameter leaf.

Structure first: the jaxpr (nested jaxprs opened) becomes a graph whose nodes are values
and whose edges are equations, each edge marked differentiable or not. A parameter leaf is

* ``connected``   — a differentiable path reaches the loss;
* ``blocked``     — paths reach the loss, but each passes a non-differentiable operation
  (argmax, rounding, comparisons, integer casts, stop_gradient); the report shows the path
  and the blocking equation with its source line;
* ``disconnected`` — nothing it influences reaches the loss (or it is never used).

Then numbers: a connected leaf whose funcgrad gradient is exactly zero is explained by the
equation where its cotangent became zero (a dead ReLU, a saturated clip), or flagged as an
underflow when the same gradient recomputed in float64 is not zero.
"""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from .._api import grad as fg_grad
from .._backward import differentiable
from .._dataflow import flow
from .._errors import source_line
from .._numerics import float64_mode, widen
from .._registry import is_nondiff
from ._inspect import DiagnosticWatch, describe_scope, is_var, label

CONNECTED, BLOCKED, DISCONNECTED, UNUSED = "connected", "blocked", "disconnected", "unused"
ZERO_HERE, UNDERFLOW = "zero at this point", "underflow"


@dataclasses.dataclass(frozen=True)
class _Edge:
    src: tuple
    dst: tuple
    eqn: object  # None for a pass-through into or out of a nested jaxpr
    diff: bool
    why: str  # for a non-differentiable edge: the reason
    scope: tuple


@dataclasses.dataclass
class LeafDiagnosis:
    path: str
    shape: tuple
    status: str  # connected / blocked / disconnected / unused / zero at this point / underflow
    explanation: str
    route: list[str] = dataclasses.field(default_factory=list)  # the path, one step a line
    blockers: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ZeroReport:
    leaves: list[LeafDiagnosis]

    @property
    def zero(self) -> list[LeafDiagnosis]:
        """Leaves whose gradient is (or may be) zero, with the reason."""
        return [d for d in self.leaves if d.status != CONNECTED]

    def __getitem__(self, path: str) -> LeafDiagnosis:
        for d in self.leaves:
            if d.path == path:
                return d
        raise KeyError(f"no parameter leaf {path!r}; leaves: {[d.path for d in self.leaves]}")

    def __str__(self) -> str:
        bad = self.zero
        lines = [
            f"why_zero: {len(bad)} of {len(self.leaves)} parameter leaves get no (or an "
            f"exactly zero) gradient from the loss."
        ]
        for d in bad:
            lines.append(f"  {d.path} {d.shape}: {d.status.upper()} - {d.explanation}")
            lines += [f"      gradient stops at: {b}" for b in d.blockers]
            if d.route:
                lines.append("      path to the loss:")
                lines += [f"        {step}" for step in d.route]
        ok = [d.path for d in self.leaves if d.status == CONNECTED]
        if ok:
            lines.append(f"  connected with a nonzero gradient: {', '.join(ok)}")
        return "\n".join(lines)


def why_zero(f, *args, argnums=0, numeric: bool = True) -> ZeroReport:
    """Explain every parameter leaf whose gradient is zero.

    Args:
        f: scalar loss.
        args: its arguments; ``argnums`` (int or tuple) are the parameters examined.
        numeric: also compute funcgrad's gradient to find exact zeros among connected
            leaves (dead units, underflow in the leaf's dtype).

    Returns:
        A ZeroReport; ``report["args[0]['w']"].status`` is one of ``connected``,
        ``blocked``, ``disconnected``, ``unused``, ``zero at this point``, ``underflow``.

    Example:
        >>> import jax.numpy as jnp, funcgrad.diagnostics as fd
        >>> f = lambda w: jnp.round(w).sum()
        >>> fd.why_zero(f, jnp.ones(2)).leaves[0].status
        'blocked'
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    flat, in_tree = tree_util.tree_flatten(args)
    owner, paths = [], []
    for k, a in enumerate(args):
        for pth, _ in tree_util.tree_flatten_with_path(a)[0]:
            owner.append(k)
            paths.append(f"args[{k}]{tree_util.keystr(pth)}")
    closed = jax.make_jaxpr(lambda *leaves: f(*tree_util.tree_unflatten(in_tree, leaves)))(*flat)
    graph = _DepGraph(closed.jaxpr)
    out_nodes = [((), v) for v in closed.jaxpr.outvars if is_var(v)]
    live = graph.reverse_reach(out_nodes, diff_only=True)
    reach = graph.reverse_reach(out_nodes, diff_only=False)
    leaves = []
    for j, (v, x) in enumerate(zip(closed.jaxpr.invars, flat, strict=False)):
        if owner[j] not in nums or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            continue
        leaves.append(
            _structural(graph, paths[j], ((), v), np.shape(x), live, reach, set(out_nodes))
        )
    if numeric and any(d.status == CONNECTED for d in leaves):
        _numeric(f, args, nums, closed, flat, owner, paths, leaves)
    return ZeroReport(leaves)


# ---------------------------------------------------------------------- the dependency graph


class _DepGraph:
    """Values as nodes ``(scope, var)``, equations as edges, each marked differentiable or
    not: the engine's static dataflow (funcgrad/_dataflow.py), nested jaxprs opened."""

    def __init__(self, jaxpr):
        self.edges: list[_Edge] = []
        self.out_edges = collections.defaultdict(list)
        self.in_edges = collections.defaultdict(list)
        for step in flow(jaxpr):
            if step.opened:  # the steps of its jaxprs follow
                continue
            if step.eqn is None:  # a pass-through into or out of a nested jaxpr
                self._link(step.ins[0], step.outs[0], None, True, "", step.scope)
                continue
            why = _block_reason(step.eqn)
            for src in step.ins:
                for dst in step.outs:
                    v, o = src[1], dst[1]
                    ok = not why and differentiable(v.aval) and differentiable(o.aval)
                    reason = why or _dtype_reason(v, o)
                    self._link(src, dst, step.eqn, ok, reason, step.scope)

    def _link(self, src, dst, eqn, diff, why, scope):
        e = _Edge(src, dst, eqn, diff, why, scope)
        self.edges.append(e)
        self.out_edges[src].append(e)
        self.in_edges[dst].append(e)

    def reverse_reach(self, targets, diff_only) -> set:
        seen, stack = set(targets), list(targets)
        while stack:
            node = stack.pop()
            for e in self.in_edges.get(node, ()):
                if (e.diff or not diff_only) and e.src not in seen:
                    seen.add(e.src)
                    stack.append(e.src)
        return seen

    def forward_reach(self, start, diff_only) -> set:
        seen, stack = {start}, [start]
        while stack:
            node = stack.pop()
            for e in self.out_edges.get(node, ()):
                if (e.diff or not diff_only) and e.dst not in seen:
                    seen.add(e.dst)
                    stack.append(e.dst)
        return seen

    def shortest_path(self, start, targets) -> list[_Edge]:
        parent = {start: None}
        queue = collections.deque([start])
        while queue:
            node = queue.popleft()
            if node in targets:
                path = []
                while parent[node] is not None:
                    path.append(parent[node])
                    node = parent[node].src
                return path[::-1]
            for e in self.out_edges.get(node, ()):
                if e.dst not in parent:
                    parent[e.dst] = e
                    queue.append(e.dst)
        return []


def _block_reason(eqn) -> str:
    name = eqn.primitive.name
    if name == "stop_gradient":
        return "stop_gradient"
    if is_nondiff(eqn.primitive):
        return f"'{name}' is not differentiable (piecewise constant or integer-valued)"
    return ""


def _dtype_reason(v, o) -> str:
    if not differentiable(o.aval):
        return f"its result is {o.aval.dtype} (integer and boolean values carry no gradient)"
    if not differentiable(v.aval):
        return f"the input is {v.aval.dtype}"
    return ""


# ---------------------------------------------------------------------- structural verdicts


def _structural(graph, path, node, shape, live, reach, outs) -> LeafDiagnosis:
    if node in live:
        return LeafDiagnosis(path, shape, CONNECTED, "a differentiable path reaches the loss")
    reached = graph.forward_reach(node, diff_only=False)
    if not any(e.eqn is not None for n in reached for e in graph.out_edges.get(n, ())):
        return LeafDiagnosis(path, shape, UNUSED, "the function never uses this parameter")
    if node not in reach:
        return LeafDiagnosis(
            path,
            shape,
            DISCONNECTED,
            "it is used, but nothing it influences reaches the loss (its results are discarded)",
        )
    diff_reach = graph.forward_reach(node, diff_only=True)
    blockers, seen = [], set()
    for e in graph.edges:
        if not e.diff and e.src in diff_reach and e.dst in reach and e.eqn is not None:
            text = f"{_step(e)}: {e.why}"
            if text not in seen:
                seen.add(text)
                blockers.append(text)
    route = _route(graph.shortest_path(node, outs))
    return LeafDiagnosis(
        path,
        shape,
        BLOCKED,
        "every path to the loss passes a non-differentiable operation",
        route,
        blockers,
    )


def _step(e: _Edge) -> str:
    inside = describe_scope([(n.index, label(n.eqn)) for n in e.scope])
    where = source_line(e.eqn)
    for n in reversed(e.scope):  # JAX's own helpers carry no user line: use the caller's
        if "unknown" not in where:
            break
        where = source_line(n.eqn)
    return f"'{e.eqn.primitive.name}' at {where}" + (f" [inside {inside}]" if inside else "")


def _route(edges) -> list[str]:
    steps, last = [], None
    for e in edges:
        if e.eqn is None:
            continue
        blocking = not e.diff and differentiable(e.src[1].aval)
        mark = "   <- gradient stops here" if blocking else ""
        text = _step(e) + mark
        if text != last:
            steps.append(text)
        last = text
    return steps + ["(loss)"] if steps else []


# ---------------------------------------------------------------------- numeric verdicts


def _numeric(f, args, nums, closed, flat, owner, paths, leaves):
    grads = fg_grad(f, argnums=nums)(*args)
    g_flat = tree_util.tree_leaves(grads)
    j_of = [j for j in range(len(flat)) if owner[j] in nums]
    by_path = {d.path: d for d in leaves}
    zero_leaves = []
    for j, g in zip(j_of, g_flat, strict=False):
        d = by_path.get(paths[j])
        if d is None or d.status != CONNECTED:
            continue
        g = np.asarray(g)
        if not np.any(g):
            zero_leaves.append((j, d))
        elif g.dtype != np.float64:
            d.explanation += _partial_underflow(f, args, nums, j_of, j, g)
    if not zero_leaves:
        return
    wide = (
        _grad_in_float64(f, args, nums)
        if any(np.asarray(flat[j]).dtype != np.float64 for j, _ in zero_leaves)
        else None
    )
    zeroing = _where_cotangents_vanish(closed, flat, owner, nums)
    for j, d in zero_leaves:
        w = None if wide is None else np.asarray(wide[j_of.index(j)])
        if w is not None and np.any(w):
            d.status = UNDERFLOW
            d.explanation = (
                f"its {np.asarray(flat[j]).dtype} gradient is exactly zero, but in "
                f"float64 it is not (max |g| = {np.max(np.abs(w)):.2e}): it "
                f"underflows. Scale the loss, or compute in higher precision."
            )
        else:
            d.status = ZERO_HERE
            d.explanation = (
                "connected, but its gradient is exactly 0 at these inputs "
                "(value-dependent: e.g. every ReLU unit it feeds is inactive)."
            )
            d.blockers = zeroing.get(j, [])[:3]


def _partial_underflow(f, args, nums, j_of, j, g) -> str:
    wide = _grad_in_float64(f, args, nums)
    w = np.asarray(wide[j_of.index(j)])
    lost = int(np.sum((g == 0) & (w != 0)))
    return (
        f"; warning: {lost} of {g.size} entries underflow to exactly 0 in {g.dtype}" if lost else ""
    )


def _grad_in_float64(f, args, nums):
    with float64_mode():
        wide_args = [tree_util.tree_map(widen, a) for a in args]
        return [np.asarray(x) for x in tree_util.tree_leaves(fg_grad(f, argnums=nums)(*wide_args))]


def _where_cotangents_vanish(closed, flat, owner, nums) -> dict:
    """For each input leaf: the equations where a nonzero cotangent became all-zero on its way
    back to that leaf (the dead ReLU, the saturated clip)."""
    active = [
        owner[j] in nums and jnp.issubdtype(jnp.result_type(x), jnp.floating)
        for j, x in enumerate(flat)
    ]
    walker = _ZeroWalker()
    outs, tape = walker.forward(closed.jaxpr, closed.consts, flat, active)
    walker.backward(closed.jaxpr, tape, [jnp.ones_like(o) for o in outs])
    result = {}
    for j, v in enumerate(closed.jaxpr.invars):
        if active[j]:
            result[j] = walker.zeroing_for(closed.jaxpr, v)
    return result


class _ZeroWalker(DiagnosticWatch):
    def __init__(self):
        super().__init__()
        self.zeroed: list = []  # (jaxpr, eqn, input var, text)

    def leaf_cotangents(self, scope, i, eqn, rec, g, call):
        cts = call(g)
        if any(c is not None and np.any(np.asarray(c)) for c in g):
            jaxpr = self.home[id(eqn)][0]
            for k, c in enumerate(cts):
                if rec.act[k] and (c is None or not np.any(np.asarray(c))):
                    inside = describe_scope(scope)
                    text = (
                        f"'{eqn.primitive.name}' at {self.user_line(eqn)}"
                        + (f" [inside {inside}]" if inside else "")
                        + ": a nonzero cotangent comes out as exactly zero"
                    )
                    self.zeroed.append((jaxpr, eqn, eqn.invars[k], text))
        return cts

    def zeroing_for(self, jaxpr, v) -> list[str]:
        """Zeroing equations whose input depends on ``v`` (top-level jaxpr only)."""
        deps = {v}
        for step in flow(jaxpr, open_nested=False):
            if any(x in deps for _, x in step.ins):
                deps.update(o for _, o in step.outs)
        texts = []
        for jp, _eqn, var, text in self.zeroed:
            if (jp is not jaxpr or var in deps) and text not in texts:
                texts.append(text)
        return texts
