"""The computational graph, drawn with its values and the cotangents that reached each node.

Drawn with matplotlib alone (no graphviz binary): a layered left-to-right layout computed from
the jaxpr. Each box is an input, an operation or the output, with its forward value (or
shape and summary statistics) and the cotangent that reached it; each arrow is one use of a
value, labelled with the cotangent *that use* sent back. Where a value fans out, its box shows
the sum (``grad 6 = 1 + 5``): the fan-out rule, visible.

Big graphs collapse: ``collapse="jit"`` keeps every nested jit as one box, ``"function"``
merges the operations of each call of a user function (``attention``, ``mlp``) into one box.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util
from jax.extend import core as jcore
from jax.extend.core import primitives as P

from .._jax_compat import CLOSED_CALL_NAME, REMAT_NAMES
from ._inspect import DiagnosticWatch, eqn_name, label
from ._source import call_site, short_where

_ROOM = {
    "none": ("jit", CLOSED_CALL_NAME, *REMAT_NAMES),
    "jit": (),
    "function": ("jit", CLOSED_CALL_NAME, *REMAT_NAMES),
}


@dataclasses.dataclass
class Node:
    id: int
    kind: str  # "input", "param", "op", "output", "const"
    title: str
    value: str = ""
    grad: str = ""
    where: str = ""
    key: tuple = ()  # grouping key (collapse="function")
    cts: list = dataclasses.field(default_factory=list)  # contributions received (fan-out)
    active: bool = False


@dataclasses.dataclass
class Edge:
    src: int
    dst: int
    value: str
    grad: str = ""  # the cotangent this use sent back ('' = none)
    ct: object = None  # that cotangent itself


@dataclasses.dataclass
class GraphPicture:
    """A drawn graph: ``figure`` (matplotlib), ``nodes`` and ``edges`` as drawn, ``mode``."""

    figure: object
    nodes: list[Node]
    edges: list[Edge]
    mode: str

    def save(self, path: str) -> str:
        """Write ``path`` (.svg, .png or .pdf, by suffix); returns the path."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.figure.savefig(path, bbox_inches="tight", dpi=150)
        return path


def draw_graph(
    f,
    *args,
    argnums=0,
    collapse: str = "auto",
    max_nodes: int = 40,
    path: str | list[str] | None = None,
    title: str | None = None,
    arg_names: list[str] | None = None,
) -> GraphPicture:
    """Draw ``f``'s computational graph with forward values and funcgrad's cotangents.

    Args:
        f: a scalar function of ``args``.
        argnums: which arguments are differentiated (their boxes are blue).
        collapse: ``"none"`` (every operation, nested jits opened), ``"jit"`` (each nested jit
            one box), ``"function"`` (each call of a user function one box), or ``"auto"``:
            the first of these with at most ``max_nodes`` boxes.
        path: file name(s) to save (``.svg`` / ``.png``).
        title: figure title (default: the function's name and the mode).
        arg_names: names for the arguments' boxes (default ``args[0]['w']``-style paths).

    Returns:
        A GraphPicture; ``.figure`` is the matplotlib Figure.

    Example:
        >>> import funcgrad.diagnostics as fd
        >>> pic = fd.draw_graph(lambda x, y: (x + y) * (x - y), 3.0, 2.0, argnums=(0, 1))
        >>> [n.grad for n in pic.nodes if n.kind == "param"]
        ['grad 6 = 1 + 5', 'grad -4 = 1 + (-5)']
    """
    if collapse not in ("auto", "none", "jit", "function"):
        raise ValueError(f"collapse must be 'auto', 'none', 'jit' or 'function', got {collapse!r}.")
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    modes = ["none", "jit", "function"] if collapse == "auto" else [collapse]
    for mode in modes:
        nodes, edges = _build(f, args, nums, mode, arg_names)
        if len(nodes) <= max_nodes or mode == modes[-1]:
            break
    name = getattr(f, "__name__", "f")
    fig = _render(nodes, edges, title or f"{name}: values and gradients (collapse={mode})")
    pic = GraphPicture(fig, nodes, edges, mode)
    for p in [path] if isinstance(path, str) else (path or []):
        pic.save(p)
    return pic


# ---------------------------------------------------------------------- building the graph


def _build(f, args, nums, mode, arg_names):
    flat, in_tree = tree_util.tree_flatten(args)
    names, owner = [], []
    for k, a in enumerate(args):
        for pth, _ in tree_util.tree_flatten_with_path(a)[0]:
            owner.append(k)
            base = arg_names[k] if arg_names else f"args[{k}]"
            names.append(base + tree_util.keystr(pth))
    closed = jax.make_jaxpr(lambda *leaves: f(*tree_util.tree_unflatten(in_tree, leaves)))(*flat)
    active = [
        owner[j] in nums and jnp.issubdtype(jnp.result_type(x), jnp.floating)
        for j, x in enumerate(flat)
    ]
    walker = _GraphWalker(_ROOM[mode], names, active)
    outs, tape = walker.forward(closed.jaxpr, closed.consts, flat, active)
    out_node = walker.add(
        Node(
            -1,
            "output",
            "loss" if len(outs) == 1 else "outputs",
            _summ(outs[0]) if len(outs) == 1 else f"{len(outs)} values",
        )
    )
    seeds = [
        jnp.ones_like(o) if jnp.issubdtype(jnp.result_type(o), jnp.inexact) else None for o in outs
    ]
    for o, seed in zip(outs, seeds, strict=False):
        src = walker.producer_of(o)
        walker.edges.append(Edge(src, out_node.id, _summ(o), "" if seed is None else "1"))
        if seed is not None:
            walker.nodes[src].cts.append((out_node.id, seed))
    out_node.grad, out_node.active = "grad 1", True
    walker.backward(closed.jaxpr, tape, seeds)
    nodes, edges = walker.nodes, walker.edges
    for n in nodes:
        if n.kind != "output":
            n.grad = _grad_text(n.cts)
    if mode == "function":
        nodes, edges = _group(*_drop_consts(nodes, edges))
    return nodes, edges


class _GraphWalker(DiagnosticWatch):
    def __init__(self, open_prims, names, active):
        super().__init__(max_scan_steps=0)
        self.open = frozenset(open_prims)
        self.names, self.active_in = names, active
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self.by_value: dict = {}  # id(value) -> node id
        self._keep: list = []
        self.op_node: dict = {}  # (scope, i) -> node id
        self.edge_of: dict = {}  # (scope, i, k) -> Edge
        self._n_inputs = 0

    def add(self, node: Node) -> Node:
        node.id = len(self.nodes)
        self.nodes.append(node)
        return node

    def producer_of(self, value) -> int:
        nid = self.by_value.get(id(value))
        if nid is None:  # a constant closed over by the function
            nid = self.add(Node(-1, "const", "const", _summ(value))).id
            self._own(value, nid)
        return nid

    def _own(self, value, nid):
        self.by_value[id(value)] = nid
        self._keep.append(value)

    def on_input(self, scope, var, value):
        if scope:  # inputs of an opened jaxpr are the outer values themselves
            return
        j = self._n_inputs
        self._n_inputs += 1
        kind = "param" if self.active_in[j] else "input"
        node = self.add(Node(-1, kind, self.names[j], _summ(value), active=self.active_in[j]))
        self._own(value, node.id)

    def on_forward(self, scope, i, eqn, rec):
        lits = [_lit(v) for v in eqn.invars if isinstance(v, jcore.Literal)]
        title = _op_title(eqn) + (f" ({', '.join(lits)})" if lits else "")
        srcs = [
            None if isinstance(v, jcore.Literal) else self.producer_of(x)
            for v, x in zip(eqn.invars, rec.invals, strict=False)
        ]  # constants first: topological ids
        user = self.user_level(eqn)  # JAX's own jitted helpers: their caller's line
        node = self.add(
            Node(
                -1,
                "op",
                title,
                _summ_outs(rec.outs),
                where=short_where(user),
                key=call_site(user),
                active=any(rec.act),
            )
        )
        self.op_node[(scope, i)] = node.id
        for k, (v, x) in enumerate(zip(eqn.invars, rec.invals, strict=False)):
            if isinstance(v, jcore.Literal):
                continue
            e = Edge(srcs[k], node.id, _summ(x))
            self.edges.append(e)
            self.edge_of[(scope, i, k)] = e
        for o in rec.outs:
            self._own(o, node.id)

    def on_contribution(self, scope, i, eqn, k, var, ct):
        e = self.edge_of.get((scope, i, k))
        if e is None:  # an opened equation: its inner equations already reported
            return
        e.grad, e.ct = _ct_text(ct), ct
        self.nodes[e.src].cts.append((e.dst, ct))


def _op_title(eqn) -> str:
    name = eqn_name(eqn)
    if eqn.primitive is P.jit_p and name in ("_where", "where"):
        return "where"
    if eqn.primitive in (P.jit_p, P.custom_jvp_call_p, P.custom_vjp_call_p) and name:
        return name if eqn.primitive is not P.jit_p else f"jit {name}"
    return label(eqn)


def _lit(v) -> str:
    return _num(np.asarray(v.val))


def _num(x) -> str:
    x = float(x)
    return f"{x:.4g}"


def _summ(x) -> str:
    """``3`` for a scalar, ``f32[5,4] mean 0.12 sd 0.9`` for an array."""
    x = np.asarray(x)
    if x.dtype == jax.dtypes.float0:
        return ""
    if x.size == 1:
        return _num(x.reshape(())) if np.issubdtype(x.dtype, np.number) else str(x.reshape(()))
    tag = f"{x.dtype.name[0]}{x.dtype.itemsize * 8}[{','.join(map(str, x.shape))}]"
    if not np.issubdtype(x.dtype, np.number) or not x.size:
        return tag
    xf = x.astype(np.float64)
    return f"{tag} mean {np.mean(xf):.2g} sd {np.std(xf):.2g}"


def _summ_outs(outs) -> str:
    return _summ(outs[0]) if len(outs) == 1 else f"{len(outs)} outputs"


def _ct_text(ct) -> str:
    x = np.asarray(ct, np.float64)
    return _num(x.reshape(())) if x.size == 1 else f"|g| {np.linalg.norm(x):.2g}"


def _grad_text(cts) -> str:
    """``grad 6 = 1 + 5``: the total and, at a fan-out, each summed contribution."""
    if not cts:
        return ""
    cts = [c for _, c in sorted(cts, key=lambda t: t[0])]  # in the order of the uses
    total = cts[0]
    for c in cts[1:]:
        total = total + c
    head = f"grad {_ct_text(total)}" if np.size(total) == 1 else f"grad {_ct_text(total)}"
    if len(cts) == 1:
        return head
    if len(cts) <= 3 and np.size(total) == 1:
        parts = [_ct_text(c) for c in cts]
        return head + " = " + " + ".join(f"({t})" if t.startswith("-") else t for t in parts)
    return head + f" (sum of {len(cts)})"


# ---------------------------------------------------------------------- collapse by function


def _drop_consts(nodes, edges):
    """Constants (JAX's -inf for a max, a literal table) are noise in a collapsed picture."""
    keep = {n.id for n in nodes if n.kind != "const"}
    return [n for n in nodes if n.id in keep], [e for e in edges if e.src in keep]


def _group(nodes, edges):
    """Merge runs of consecutive operations from the same call of a user function."""
    group_of, groups, last_key, run = {}, [], None, -1
    for n in nodes:
        if n.kind != "op":  # inputs and constants: their own box; a run continues past them
            group_of[n.id] = len(groups)
            groups.append([n])
            continue
        if n.key == last_key:
            groups[run].append(n)
        else:
            run = len(groups)
            groups.append([n])
            last_key = n.key
        group_of[n.id] = run
    new_nodes = []
    for gid, members in enumerate(groups):
        first, last = members[0], members[-1]
        if len(members) == 1:
            node = dataclasses.replace(first, id=gid)
        else:
            fn, site = first.key
            node = Node(
                gid,
                "op",
                f"{fn} ({len(members)} ops)",
                last.value,
                where=f"{fn} called at {site}",
                key=first.key,
                active=any(m.active for m in members),
            )
            node.grad = _group_grad(members, edges, group_of, gid)
        new_nodes.append(node)
    merged: dict = {}  # one arrow per (group, group): the uses inside a group are summed
    for e in edges:
        a, b = group_of[e.src], group_of[e.dst]
        if a == b:
            continue
        if (a, b) not in merged:
            merged[(a, b)] = Edge(a, b, e.value, e.grad, e.ct)
        elif e.ct is not None:
            prev = merged[(a, b)]
            prev.ct = e.ct if prev.ct is None else prev.ct + e.ct
            prev.grad = _ct_text(prev.ct)
    return new_nodes, list(merged.values())


def _group_grad(members, edges, group_of, gid) -> str:
    """The cotangents that left the group towards its inputs are not a single value; show
    the one that reached its last (output) operation."""
    del edges, group_of, gid
    return members[-1].grad


# ---------------------------------------------------------------------- layout and drawing


def _layers(nodes, edges):
    preds = {n.id: [] for n in nodes}
    for e in edges:
        preds[e.dst].append(e.src)
    layer: dict = {}
    pending = [n.id for n in nodes]
    while pending:  # longest path from a source, in passes (ids are nearly topological)
        rest = [i for i in pending if not _place(i, preds, layer)]
        if len(rest) == len(pending):  # a cycle (never in a jaxpr): break it at the first node
            layer[rest[0]] = 1 + max((layer[q] for q in preds[rest[0]] if q in layer), default=-1)
            rest = rest[1:]
        pending = rest
    out = max(layer.values(), default=0)
    succs: dict = {}
    for e in edges:
        succs.setdefault(e.src, []).append(e.dst)
    for n in nodes:
        if n.kind == "output":
            layer[n.id] = out
        elif not preds[n.id] and succs.get(n.id):  # a parameter sits just before its first use
            layer[n.id] = max(0, min(layer[d] for d in succs[n.id]) - 1)
    return layer, preds


def _place(i, preds, layer) -> bool:
    if any(q not in layer for q in preds[i]):
        return False
    layer[i] = 1 + max((layer[q] for q in preds[i]), default=-1)
    return True


def _order(nodes, layer, preds):
    by_layer: dict = {}
    for n in nodes:
        by_layer.setdefault(layer[n.id], []).append(n.id)
    pos = {}
    for lay in sorted(by_layer):
        ids = by_layer[lay]
        if lay > 0:
            ids.sort(key=lambda i: np.mean([pos[p] for p in preds[i]]) if preds[i] else 0)
        for r, i in enumerate(ids):
            pos[i] = r - (len(ids) - 1) / 2
        by_layer[lay] = ids
    return pos, by_layer


_S = 0.8  # inches per data unit, both axes
_CHAR_W, _LINE_H = 0.066, 0.17  # data units at 7.5 pt
_COLORS = {
    "param": "#cfe3ff",
    "input": "#eeeeee",
    "const": "#eeeeee",
    "output": "#ffd6cc",
    "op": "#fff7d6",
}


def _box_text(n: Node) -> str:
    return "\n".join(_clip(t) for t in [n.title, n.value, n.grad] if t)


def _render(nodes, edges, title):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    text = {n.id: _box_text(n) for n in nodes}
    xy, hw, hh, (x0, x1, y0, y1) = _layout(nodes, edges, text)
    fig = plt.figure(figsize=((x1 - x0) * _S, (y1 - y0) * _S))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    for e in edges:
        _draw_edge(ax, e, xy, hw)
    for n in nodes:
        _draw_box(ax, n, xy[n.id], text[n.id], hh[n.id])
    ax.text((x0 + x1) / 2, y1 - 0.12, title, ha="center", va="top", fontsize=9)
    ax.text(
        x0 + 0.1,
        y0 + 0.08,
        "box: value, then the total gradient reaching it.  red "
        "arrow: the gradient that use sent back (summed at a fan-out).  dashed: none.",
        fontsize=6,
        color="#666666",
        va="bottom",
    )
    return fig


def _layout(nodes, edges, text):
    """Box centres (one column per layer), half widths and heights, and the figure bounds."""
    layer, preds = _layers(nodes, edges)
    pos, by_layer = _order(nodes, layer, preds)
    hw = {i: 0.5 * _CHAR_W * max(len(t) for t in text[i].split("\n")) + 0.12 for i in text}
    hh = {i: 0.5 * _LINE_H * (text[i].count("\n") + 1) + 0.1 for i in text}
    col_x, x = {}, 0.0
    for lay in sorted(by_layer):
        w = max(hw[i] for i in by_layer[lay])
        x += w if lay else 0.0
        col_x[lay] = x
        x += w + 1.3
    dy = 2 * max(hh.values(), default=0.3) + 0.55
    xy = {n.id: (col_x[layer[n.id]], -pos[n.id] * dy) for n in nodes}
    xs = [p[0] for p in xy.values()] or [0.0]
    ys = [p[1] for p in xy.values()] or [0.0]
    x0, x1 = min(xs) - max(hw.values()) - 0.2, max(xs) + max(hw.values()) + 0.2
    y0, y1 = min(ys) - dy / 2 - 0.5, max(ys) + dy / 2 + 0.4
    return xy, hw, hh, (x0, x1, y0, y1)


def _draw_box(ax, n, xy, text, half_height):
    """One node: its box, and under an operation the user's source line."""
    cx, cy = xy
    ax.text(
        cx,
        cy,
        text,
        ha="center",
        va="center",
        fontsize=7.5,
        color="black" if n.active or n.kind == "output" else "#666666",
        bbox=dict(boxstyle="round,pad=0.3", fc=_COLORS.get(n.kind, "white"), ec="#555555", lw=0.8),
        zorder=3,
    )
    if n.where and n.kind == "op":
        ax.text(
            cx,
            cy - half_height - 0.06,
            _clip(n.where, 36),
            ha="center",
            va="top",
            fontsize=5.5,
            color="#888888",
            zorder=3,
        )


def _draw_edge(ax, e, xy, hw):
    (xa, ya), (xb, yb) = xy[e.src], xy[e.dst]
    start, end = (xa + hw[e.src], ya), (xb - hw[e.dst], yb)
    col = "#c0392b" if e.grad else "#999999"
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        zorder=1,
        arrowprops=dict(
            arrowstyle="-|>",
            color=col,
            lw=1.0,
            linestyle="-" if e.grad else (0, (3, 3)),
            shrinkA=2,
            shrinkB=4,
        ),
    )
    if e.grad:
        t = 0.3  # near the source: a fan-out's contributions sit side by side
        lx, ly = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
        label = e.grad if e.grad.startswith(("-", "|")) else f"+{e.grad}"
        ax.text(
            lx,
            ly,
            label,
            fontsize=6.5,
            color="#c0392b",
            ha="center",
            va="center",
            zorder=2,
            bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none"),
        )


def _clip(text: str, n: int = 34) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
