"""Memory planning: choose which forward values the backward pass keeps and which it recomputes.

``funcgrad.grad(f, remat="auto")`` (or ``remat=funcgrad.Budget(bytes)``) rewrites the traced
program before the forward/backward walks:

1. **What the backward pass reads.** Trace funcgrad's forward and backward walks once and
   dead-code-eliminate: the forward values the backward still reads are the *needed* set.
2. **A minimum cut.** Every value is a node ``in -> out`` whose capacity is its size in bytes;
   edges follow the data flow (infinite capacity); the program inputs are free; needed values
   flow into the sink; outputs of expensive equations (matmuls, convolutions, collectives,
   loops) are tied to the source, so they are never recomputed. A minimum cut is the set of
   values to save with the fewest bytes from which every needed value can be recomputed.
3. **Segments.** The program is split after each expensive equation; each segment becomes a
   ``jax.custom_vjp`` whose residuals are only the saved values its recomputation starts from.
   Its backward first passes those residuals *and the incoming cotangent* through
   ``lax.optimization_barrier``, then recomputes and runs funcgrad's own rules. Because the
   recomputation depends on the cotangent, XLA cannot schedule it next to the forward pass or
   merge it with the original: the saving survives the compiler (checked by XLA's own
   ``memory_analysis()`` in the tests and benchmarks).

A value recomputed for two segments would be recomputed twice and held alive between them;
such a value is tied to the source instead and the cut solved again (a few rounds at most).
``plan_blocks`` is the stronger plan that recomputes whole blocks, matmuls included, from the
values crossing a few block boundaries (Chen et al. 2016); ``_memory`` chooses among plans
for a byte budget by compiling them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from ._backward import Tape, backward, bind, differentiable, forward
from ._backward import is_var as _is_var
from ._jax_compat import eqn_context
from ._linearize import dce
from ._maxflow import INF, FlowGraph
from ._registry import is_nondiff, lookup

HEAVY = frozenset(
    {
        "dot_general",
        "conv_general_dilated",
        "ragged_dot",
        "psum",
        "psum_invariant",
        "all_gather",
        "all_gather_invariant",
        "all_to_all",
        "ppermute",
        "psum_scatter",
        "reduce_scatter",
        "pmax",
        "pmin",
        "fft",
        "cholesky",
        "triangular_solve",
        "lu",
        "qr",
        "eigh",
        "svd",
        "sort",
    }
)
_INLINE = frozenset({"jit", "pjit", "closed_call", "core_call"})
_RECOMPUTABLE_NESTED = frozenset({"custom_jvp_call"})


@dataclasses.dataclass(frozen=True)
class Budget:
    """A memory budget for ``remat=``: the compiled program's temporary bytes (XLA's figure).

    funcgrad picks the plan with the least recomputation whose compiled temporary memory
    fits; if none does, it raises an error that names the smallest figure it reached.
    """

    bytes: int

    def __post_init__(self):
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, (int, np.integer)):
            raise TypeError(
                f"funcgrad.Budget expected a whole number of bytes, got "
                f"{type(self.bytes).__name__} {self.bytes!r} (e.g. Budget(512 * 2**20))."
            )
        if self.bytes <= 0:
            raise ValueError(f"funcgrad.Budget needs a positive number of bytes, got {self.bytes}.")


def check_remat(remat, what: str) -> None:
    if remat is None or remat == "auto" or isinstance(remat, Budget):
        return
    raise ValueError(
        f"{what}: remat must be None, 'auto' or funcgrad.Budget(bytes), got {remat!r}."
    )


def nbytes(aval) -> int:
    shape = getattr(aval, "shape", ())
    dtype = getattr(aval, "dtype", None)
    if dtype is None or dtype == jax.dtypes.float0:
        return 0
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


# ------------------------------------------------------------------ flatten nested calls


def _eval(jaxpr, consts, args, inline=True):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if inline and eqn.primitive.name in _INLINE and not eqn.effects:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            closed = isinstance(inner, jcore.ClosedJaxpr)
            with eqn_context(eqn):
                outs = _eval(*((inner.jaxpr, inner.consts) if closed else (inner, ())), invals)
        else:
            outs = bind(eqn, invals)
        for v, x in zip(eqn.outvars, outs):
            if _is_var(v):
                env[v] = x
    return [read(v) for v in jaxpr.outvars]


def inline_calls(closed):
    """The same program with ``jit``/``closed_call`` bodies spliced in (one flat jaxpr)."""
    avals = [v.aval for v in closed.jaxpr.invars]
    return jax.make_jaxpr(lambda *a: _eval(closed.jaxpr, closed.consts, a))(*avals)


# ------------------------------------------------------------------ analysis


@dataclasses.dataclass
class Analysis:
    closed: jcore.ClosedJaxpr
    needed: set  # vars whose value the backward walk reads
    active: frozenset  # vars that carry a cotangent
    nested_bytes: dict  # eqn index -> bytes of the residuals its own forward keeps
    defined: dict  # var -> index of the equation that defines it

    @functools.cached_property
    def position(self) -> dict:
        """var -> its place in the program (constants, inputs, then each equation's outputs):
        a deterministic order (a Var's name depends on what the process traced before)."""
        jaxpr = self.closed.jaxpr
        order = [*jaxpr.constvars, *jaxpr.invars, *(o for e in jaxpr.eqns for o in e.outvars)]
        return {v: k for k, v in enumerate(order)}


def analyse(closed, active_in, ct_mask) -> Analysis:
    """Trace funcgrad's walks once; return which forward values the backward pass reads."""
    jaxpr = closed.jaxpr
    avals = [v.aval for v in jaxpr.invars]
    store = {}

    def fwd_all(*args):
        outs, tape = forward(jaxpr, closed.consts, args, active_in)
        store["env_keys"] = tuple(tape.env)
        store["res_keys"] = tuple(tape.residuals)
        store["res_sizes"] = [len(jax.tree.leaves(tape.residuals[k])) for k in tape.residuals]
        store["active"] = tape.active
        leaves, store["treedef"] = jax.tree.flatten(tape)
        return leaves

    leaf_shapes = jax.eval_shape(fwd_all, *avals)
    out_avals = [v.aval for v in jaxpr.outvars]

    def bwd_all(leaves, cts):
        tape = jax.tree.unflatten(store["treedef"], leaves)
        it = iter(cts)
        cts_in = backward(jaxpr, tape, [next(it) if m else None for m in ct_mask])
        return [c for c in cts_in if c is not None]

    ct_specs = [av for av, m in zip(out_avals, ct_mask) if m]
    bj = jax.make_jaxpr(bwd_all)(leaf_shapes, ct_specs).jaxpr
    _, used = dce(bj, [True] * len(bj.outvars))
    env_keys = store["env_keys"]
    needed = {v for v, u in zip(env_keys, used) if u}
    nested_bytes = {}
    pos = len(env_keys)
    for k, size in zip(store["res_keys"], store["res_sizes"]):
        leaves = leaf_shapes[pos : pos + size]
        nested_bytes[k] = sum(nbytes(x) for x, u in zip(leaves, used[pos : pos + size]) if u)
        pos += size
    defined = {v: i for i, e in enumerate(jaxpr.eqns) for v in e.outvars if _is_var(v)}
    return Analysis(closed, needed, store["active"], nested_bytes, defined)


def _is_banned(eqn) -> bool:
    name = eqn.primitive.name
    if name in HEAVY or eqn.effects:
        return True
    entry = lookup(eqn.primitive)
    return entry is not None and entry.forward is not None and name not in _RECOMPUTABLE_NESTED


def _eqn_active(info, eqn) -> bool:
    return any(_is_var(v) and v in info.active for v in eqn.outvars) and not is_nondiff(
        eqn.primitive
    )


def _roots(info, eqn) -> set:
    """Forward values the backward of one equation reads (recomputed before it runs)."""
    if not _eqn_active(info, eqn):
        return set()
    if eqn.primitive.name in _RECOMPUTABLE_NESTED:  # its own forward re-runs from its inputs
        vs = list(eqn.invars) + list(eqn.outvars)
        return {v for v in vs if _is_var(v) and (v in info.needed or v in eqn.invars)}
    return {v for v in [*eqn.invars, *eqn.outvars] if _is_var(v) and v in info.needed}


# ------------------------------------------------------------------ plans


@dataclasses.dataclass
class Plan:
    saved: set  # defined vars kept from the forward pass
    segments: list  # [(start, end)] equation ranges wrapped as recomputing segments
    kind: str


def _cut(info, banned_extra) -> set:
    """Minimum-byte set of values to save from which every needed value is recomputable."""
    jaxpr = info.closed.jaxpr
    g = FlowGraph()
    g.add_edge("source", "sink", 0.0)
    for eqn in jaxpr.eqns:
        banned = _is_banned(eqn)
        for w in eqn.outvars:
            if not _is_var(w):
                continue
            tie = 1.0 + (1e-6 if banned else 0.0)  # equal bytes: save the cheap value
            g.add_edge((w, "in"), (w, "out"), nbytes(w.aval) * tie + 1e-3)
            if banned or w in banned_extra:
                g.add_edge("source", (w, "in"), INF)
            for u in eqn.invars:
                if _is_var(u) and u in info.defined:
                    g.add_edge((u, "out"), (w, "in"), INF)
            if w in info.needed:
                g.add_edge((w, "out"), "sink", INF)
        if eqn.primitive.name in _RECOMPUTABLE_NESTED and _eqn_active(info, eqn):
            for u in eqn.invars:
                if _is_var(u) and u in info.defined:
                    g.add_edge((u, "out"), "sink", INF)
    _, side = g.min_cut("source", "sink")
    return {
        v
        for v in info.defined
        if (v, "in") in side and (v, "out") not in side and (v, "out") in g._index
    }


def closure(info, saved, roots, limit) -> tuple[list, set]:
    """Equations (indices, in order) that recompute ``roots`` from ``saved`` and the inputs,
    and the frontier of saved/input values they start from."""
    jaxpr = info.closed.jaxpr
    eqns, frontier, seen = set(), set(), set()
    stack = list(roots)
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        i = info.defined.get(v)
        if i is None or v in saved or i >= limit:
            frontier.add(v)
            continue
        if i not in eqns:
            eqns.add(i)
            stack.extend(u for u in jaxpr.eqns[i].invars if _is_var(u))
    return sorted(eqns), frontier


def _split(info, saved) -> list:
    """Equation ranges: a cut after each expensive equation (a loop is a range of its own).

    Neighbours are not merged where they read the same recomputed value: merging cascades
    along a residual stream into one segment that rebuilds everything at once. A value two
    segments would both recompute is kept instead (``plan_auto``)."""
    del saved
    jaxpr = info.closed.jaxpr
    bounds, start = [], 0
    for i, eqn in enumerate(jaxpr.eqns):
        if _is_banned(eqn) and eqn.primitive.name not in HEAVY:  # a loop: its own segment
            if start < i:
                bounds.append((start, i))
            bounds.append((i, i + 1))
            start = i + 1
        elif eqn.primitive.name in HEAVY:
            bounds.append((start, i + 1))
            start = i + 1
    if start < len(jaxpr.eqns):
        bounds.append((start, len(jaxpr.eqns)))
    return bounds


def _segment_closures(info, plan):
    jaxpr = info.closed.jaxpr
    out = []
    for a, b in plan.segments:
        roots = {v for e in jaxpr.eqns[a:b] for v in _roots(info, e)}
        out.append(closure(info, plan.saved, roots, b))
    return out


def plan_auto(info) -> Plan:
    """Save the fewest bytes, never recompute expensive equations, recompute nothing twice."""
    banned_extra = set()
    consumers = {}
    for j, e in enumerate(info.closed.jaxpr.eqns):
        for u in e.invars:
            if _is_var(u):
                consumers.setdefault(u, []).append(j)
    for v in info.closed.jaxpr.outvars:
        if _is_var(v):
            consumers.setdefault(v, []).append(-1)
    for _ in range(len(info.closed.jaxpr.eqns) + 1):  # each round keeps at least one more
        saved = _cut(info, banned_extra)
        plan = Plan(saved, _split(info, saved), "auto")
        count = {}
        for eqns, _ in _segment_closures(info, plan):
            for i in eqns:
                count[i] = count.get(i, 0) + 1
        twice = {i for i, c in count.items() if c > 1}
        if not twice:
            return plan
        # Keep the last value of each twice-recomputed region (where it leaves the region).
        jaxpr = info.closed.jaxpr
        more = {
            v
            for i in twice
            for v in jaxpr.eqns[i].outvars
            if _is_var(v) and any(j not in twice for j in consumers.get(v, ()))
        }
        if more <= banned_extra:  # no progress: keep every twice-recomputed value
            more = {v for i in twice for v in jaxpr.eqns[i].outvars if _is_var(v)}
        banned_extra |= more
    return plan


def plan_blocks(info, n_blocks: int) -> Plan:
    """Recompute everything (matmuls too) inside ``n_blocks`` blocks from the values crossing
    the block boundaries; boundaries go where the fewest bytes cross."""
    jaxpr = info.closed.jaxpr
    n = len(jaxpr.eqns)
    last_use = {}
    for i, e in enumerate(jaxpr.eqns):
        for u in e.invars:
            if _is_var(u) and u in info.defined:
                last_use[u] = i
    for v in jaxpr.outvars:
        if _is_var(v) and v in info.defined:
            last_use[v] = n
    # crossing[p]: bytes of values defined before equation p and used at or after it.
    delta = np.zeros(n + 2)
    for v, i in info.defined.items():
        if v in last_use and last_use[v] > i:
            delta[i + 1] += nbytes(v.aval)
            delta[last_use[v] + 1] -= nbytes(v.aval)
    crossing = np.cumsum(delta)[: n + 1]
    work = np.cumsum(
        [0] + [sum(nbytes(v.aval) for v in e.outvars if _is_var(v)) for e in jaxpr.eqns]
    )
    cuts = []
    for k in range(1, n_blocks):
        target = work[-1] * k / n_blocks
        lo = int(np.searchsorted(work, target * 0.85))
        hi = int(np.searchsorted(work, target * 1.15))
        lo, hi = max(lo, (cuts[-1] + 1) if cuts else 1), min(max(hi, lo + 1), n)
        if lo >= hi:
            continue
        cuts.append(lo + int(np.argmin(crossing[lo:hi])))
    edges = [0, *cuts, n]
    segments = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if a < b]
    saved = set()
    for p in cuts:
        saved |= {v for v, i in info.defined.items() if i < p and last_use.get(v, -1) >= p}
    for e in jaxpr.eqns:
        if _is_banned(e) and e.primitive.name not in HEAVY:
            saved |= {v for v in e.outvars if _is_var(v)}
    return Plan(saved, segments, f"blocks({len(segments)})")


# ------------------------------------------------------------------ the rewrite


def _placeholder(aval):
    if jnp.issubdtype(aval.dtype, jnp.inexact):
        return jnp.full(aval.shape, jnp.nan, aval.dtype)  # a wrong read shows up as NaN
    return jnp.zeros(aval.shape, aval.dtype)


def _tie(res, gs):
    """Make every residual depend on the incoming cotangent, so no recomputation from them
    can run (or be merged with the forward pass) before the backward pass reaches it.

    An optimization barrier alone is not enough: XLA:CPU removes barriers before scheduling.
    So each residual also gets ``+ z`` with ``z = -0.0`` computed from one cotangent element,
    which leaves every bit of the residual unchanged (``x + -0.0 == x``, signed zeros
    included) but is a data dependence XLA cannot see through.
    """
    res, gs = lax.optimization_barrier((res, gs))
    if not gs:
        return res, gs
    g0 = lax.stop_gradient(jnp.ravel(gs[0])[0]).astype(jnp.float32)
    z = -jnp.abs(jnp.where(jnp.isfinite(g0), g0, 0.0)) * 0.0
    tied = []
    for x in res:
        dtype = jnp.result_type(x)
        if dtype == jnp.bool_:
            tied.append(jnp.logical_xor(x, z > 0))
        elif jnp.issubdtype(dtype, jnp.inexact):
            tied.append(x + z.astype(dtype))
        elif jnp.issubdtype(dtype, jnp.integer):
            tied.append(x + z.astype(dtype))
        else:
            tied.append(x)
    return tied, gs


class _Segment:
    """Equations ``a:b`` as a custom_vjp whose backward recomputes behind a barrier."""

    def __init__(self, info, plan, a, b, later_use):
        jaxpr = info.closed.jaxpr
        self.info, self.eqns = info, jaxpr.eqns[a:b]
        self.a = a
        inside = {v for e in self.eqns for v in e.outvars if _is_var(v)}
        ins = []
        for e in self.eqns:
            for u in e.invars:
                if _is_var(u) and u not in inside and u not in ins:
                    ins.append(u)
        roots = {v for e in self.eqns for v in _roots(info, e)}
        roots |= {u for u in ins if u in info.needed}
        self.recompute, frontier = closure(info, plan.saved, roots, b)
        self.extras = [v for v in frontier if v not in inside and v not in ins]
        self.args = ins + self.extras
        self.n_in = len(ins)
        self.frontier = sorted(frontier, key=info.position.__getitem__)
        self.outs = [v for v in inside if v in later_use]
        self.seg_jaxpr = jaxpr.replace(eqns=self.eqns, invars=ins, outvars=self.outs, constvars=[])
        self.fun = jax.custom_vjp(self._call)
        self.fun.defvjp(self._fwd, self._bwd)

    def _run(self, args):
        env = dict(zip(self.args, args))
        for e in self.eqns:
            outs = bind(e, [v.val if isinstance(v, jcore.Literal) else env[v] for v in e.invars])
            env.update((v, x) for v, x in zip(e.outvars, outs) if _is_var(v))
        return env

    def _call(self, *args):
        env = self._run(args)
        return [env[v] for v in self.outs]

    def _fwd(self, *args):
        env = self._run(args)
        return [env[v] for v in self.outs], [env[v] for v in self.frontier]

    def _bwd(self, res, g):
        info = self.info
        floating = [k for k, v in enumerate(self.outs) if differentiable(v.aval)]
        res, gs = _tie(list(res), [g[k] for k in floating])
        g = list(g)
        for k, x in zip(floating, gs):
            g[k] = x
        env = dict(zip(self.frontier, res))
        jaxpr = info.closed.jaxpr
        residuals = {}
        for i in self.recompute:
            e = jaxpr.eqns[i]
            invals = [v.val if isinstance(v, jcore.Literal) else env[v] for v in e.invars]
            entry = lookup(e.primitive)
            if i >= self.a and e.primitive.name in _RECOMPUTABLE_NESTED and _eqn_active(info, e):
                act = tuple(_is_var(v) and v in info.active for v in e.invars)
                with eqn_context(e):
                    outs, residuals[i - self.a] = entry.forward(act, *invals, **e.params)
            else:
                outs = bind(e, invals)
            env.update((v, x) for v, x in zip(e.outvars, outs) if _is_var(v))
        for e in self.eqns:
            for v in [*e.invars, *e.outvars]:
                if _is_var(v) and v not in env:
                    env[v] = _placeholder(v.aval)
        tape = Tape(env, info.active, residuals)
        cts_out = [x if differentiable(v.aval) else None for v, x in zip(self.outs, g)]
        cts = backward(self.seg_jaxpr, tape, cts_out)
        return (*[c if c is not None else None for c in cts], *[None] * len(self.extras))


def kept_bytes(info, plan) -> tuple[int, int]:
    """(bytes the plan keeps, bytes the backward pass reads without a plan): estimates."""
    kept = set(inline_needed(info, plan))
    for s in segments_of(info, plan):
        kept |= {v for v in s.frontier if v in info.defined}
    needed = sum(nbytes(v.aval) for v in info.needed if v in info.defined)
    return sum(nbytes(v.aval) for v in kept), needed


def auto_or_none(info):
    """The auto plan, or None where it would keep nearly as much as no plan (then the extra
    segments only cost time, and XLA's own fusion does better: the 50-layer residual MLP)."""
    plan = plan_auto(info)
    kept, needed = kept_bytes(info, plan)
    return plan if kept <= 0.8 * needed else None


def build_segments(info, plan) -> list:
    """``[(start, end, _Segment or None)]``: None where the equations run inline (nothing in
    them is recomputed, so funcgrad's ordinary walk keeps what they need)."""
    jaxpr = info.closed.jaxpr
    out_set = {v for v in jaxpr.outvars if _is_var(v)}
    laters = []
    for _, b in plan.segments:
        laters.append({u for e in jaxpr.eqns[b:] for u in e.invars if _is_var(u)} | out_set)
    # Frontier values a later segment reads must leave the segment that makes them.
    trial = [
        None if _single_banned(jaxpr, a, b) else _Segment(info, plan, a, b, later)
        for (a, b), later in zip(plan.segments, laters)
    ]
    extra = {v for s in trial if s is not None for v in s.extras}
    segs = []
    for (a, b), later, s in zip(plan.segments, laters, trial):
        if s is None or not s.recompute:
            segs.append((a, b, None))
        else:
            segs.append((a, b, _Segment(info, plan, a, b, later | extra)))
    return segs


def segments_of(info, plan) -> list:
    return [s for _, _, s in build_segments(info, plan) if s is not None]


def inline_needed(info, plan) -> set:
    """Values the ordinary walk keeps for the equations that run inline."""
    jaxpr = info.closed.jaxpr
    out = set()
    for a, b, s in build_segments(info, plan):
        if s is None:
            out |= {v for e in jaxpr.eqns[a:b] for v in _roots(info, e) if v in info.defined}
    return out


def rewrite(info, plan) -> jcore.ClosedJaxpr:
    """The program with each planned segment that recomputes something wrapped as above."""
    closed = info.closed
    jaxpr = closed.jaxpr
    segs = build_segments(info, plan)

    def run(*args):
        env = dict(zip(jaxpr.constvars, closed.consts))
        env.update(zip(jaxpr.invars, args))

        def read(v):
            return v.val if isinstance(v, jcore.Literal) else env[v]

        for a, b, seg in segs:
            if seg is None:
                for e in jaxpr.eqns[a:b]:
                    outs = bind(e, [read(v) for v in e.invars])
                    env.update((v, x) for v, x in zip(e.outvars, outs) if _is_var(v))
            else:
                outs = seg.fun(*[read(v) for v in seg.args])
                env.update(zip(seg.outs, outs))
        return [read(v) for v in jaxpr.outvars]

    return jax.make_jaxpr(run)(*[v.aval for v in jaxpr.invars])


def _single_banned(jaxpr, a, b) -> bool:
    return b == a + 1 and _is_banned(jaxpr.eqns[a]) and jaxpr.eqns[a].primitive.name not in HEAVY


def _plan_loop_bodies(closed):
    """The program with each ``scan`` body rewritten by its own auto plan, so the residuals a
    scan stacks per step are only what its body's plan keeps."""
    jaxpr = closed.jaxpr
    if not any(e.primitive.name == "scan" for e in jaxpr.eqns):
        return closed

    def run(*args):
        env = dict(zip(jaxpr.constvars, closed.consts))
        env.update(zip(jaxpr.invars, args))
        for e in jaxpr.eqns:
            invals = [v.val if isinstance(v, jcore.Literal) else env[v] for v in e.invars]
            if e.primitive.name == "scan":
                body = e.params["jaxpr"]
                with eqn_context(e):  # the body is walked under the scan's vmap, if any
                    info = prepare(body, len(body.jaxpr.outvars))
                    plan = auto_or_none(info)
                    if plan is not None:
                        e = e.replace(params={**e.params, "jaxpr": rewrite(info, plan)})
            outs = bind(e, invals)
            env.update((v, x) for v, x in zip(e.outvars, outs) if _is_var(v))
        return [v.val if isinstance(v, jcore.Literal) else env[v] for v in jaxpr.outvars]

    return jax.make_jaxpr(run)(*[v.aval for v in jaxpr.invars])


def prepare(closed, n_out, active=None) -> Analysis:
    """``active[i]``: the i-th input is differentiated (default: every float input). The
    plan must see the user's choice: a gradient nobody asked for keeps values of its own."""
    flat = _plan_loop_bodies(inline_calls(closed))
    jaxpr = flat.jaxpr
    if active is None:
        active = [True] * len(jaxpr.invars)
    active_in = [a and differentiable(v.aval) for a, v in zip(active, jaxpr.invars, strict=True)]
    ct_mask = [k < n_out and differentiable(v.aval) for k, v in enumerate(jaxpr.outvars)]
    return analyse(flat, active_in, ct_mask)


_PLANS: OrderedDict = OrderedDict()  # plan key -> (rewritten jaxpr, where each const comes from)
_MAX_PLANS = 64


def apply(closed, remat, n_out, what="funcgrad", active=None):
    """The hook ``funcgrad.vjp`` calls: ``closed`` rewritten by the plan ``remat`` asks for,
    for the gradients of the inputs ``active`` marks.

    The plan depends on the program's structure, never on its constants' values, so it is
    made once per structure and reused with each call's constants. Eager calls then see the
    same rewritten program (the same custom_vjp segments) at every call, and the compiled
    eager cache reuses its program instead of recompiling at every step.
    """
    check_remat(remat, what)
    if remat is None:
        return closed
    key = _plan_key(closed, remat, n_out, active)
    hit = _PLANS.get(key)
    if hit is not None:
        _PLANS.move_to_end(key)
        jaxpr, sources = hit
        return jcore.ClosedJaxpr(jaxpr, [closed.consts[i] for i in sources])
    planned = _plan(closed, remat, n_out, what, active)
    sources = _const_sources(planned.consts, closed.consts)
    if sources is not None:  # every constant is one of the caller's: safe to reuse
        _PLANS[key] = (planned.jaxpr, sources)
        while len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    return planned


def _plan_key(closed, remat, n_out, active):
    from ._eager import structure_key  # the eager cache's key: structure, never values

    traced = tuple(isinstance(c, jax.core.Tracer) for c in closed.consts)  # Budget compiles
    budget = remat if remat == "auto" else ("Budget", remat.bytes)
    return (
        structure_key(closed.jaxpr),
        traced,
        budget,
        n_out,
        None if active is None else tuple(active),
    )


def _const_sources(new, old):
    """For each constant of the rewritten program, the index of the caller's constant it is
    (by identity); None when one is not the caller's (then the plan is not reused)."""
    index = {id(c): i for i, c in enumerate(old)}
    sources = [index.get(id(c)) for c in new]
    return None if None in sources else sources


def _plan(closed, remat, n_out, what, active):
    info = prepare(closed, n_out, active)
    if remat == "auto":
        plan = auto_or_none(info)
        return info.closed if plan is None else rewrite(info, plan)
    from ._memory import plan_for_budget

    return plan_for_budget(info, remat, n_out, what, active)
