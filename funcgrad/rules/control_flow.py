"""Rules for primitives that hold jaxprs: jit, custom_jvp, custom_vjp, remat, cond, scan, while.

Each recurses into funcgrad's own forward/backward walk over its sub-jaxpr; the main loop
has no special cases. Rules registered with ``forward=`` keep their own residuals.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.extend import source_info_util
from jax.extend.core import primitives as p

from .. import _jax_compat as compat
from .._backward import (
    Residual,
    activity,
    backward,
    forward,
    instantiate,
    reaches,
    zeros_like_aval,
)
from .._errors import NonDifferentiableError
from .._linearize import linearize
from .._registry import Entry, lookup, register_vjp
from .._watch import rename_scope, step_scope
from . import _custom_layout as _layout
from .custom_lin import in_tangent_map, zero_tangents

# ---------------------------------------------------------------- calls: jit, closed_call


def _call_forward(active, *args, jaxpr, **params):
    del params
    return forward(jaxpr.jaxpr, jaxpr.consts, args, active)


@register_vjp(p.jit_p, forward=_call_forward)
def jit_vjp(g, tape, *args, jaxpr, **params):
    """A jit is transparent to differentiation: walk its jaxpr backwards."""
    del args, params
    return tuple(backward(jaxpr.jaxpr, tape, g))


def _closed_call_forward(active, *args, call_jaxpr, **params):
    del params
    return forward(call_jaxpr.jaxpr, call_jaxpr.consts, args, active)


@register_vjp(p.closed_call_p, forward=_closed_call_forward)
def closed_call_vjp(g, tape, *args, call_jaxpr, **params):
    del args, params
    return tuple(backward(call_jaxpr.jaxpr, tape, g))


# ---------------------------------------------------------------- custom derivatives


def _where() -> str:
    """' at FILE:LINE (FUNCTION)' of the user's frame now being traced ('' if none is)."""
    where = source_info_util.summarize(source_info_util.current())
    return f" at {where}" if where.strip() else ""


def _closed_over_error(kind):
    return NonDifferentiableError(
        f"a {kind} function{_where()} is being differentiated with respect to a value it "
        f"closes over. Pass that value as an explicit argument of the {kind} function "
        f"(or wrap the function with jax.closure_convert)."
    )


def _stale_closure_error():
    return NonDifferentiableError(
        f"the jax.custom_jvp function{_where()} has a JVP rule that uses a traced array it "
        "does not take as an argument: one passed through nondiff_argnums "
        "(jax.scipy.special.expn does this with its order n), or a value it closes over that "
        "an enclosing jax.vmap or jax.jit traced (a vmapped value closed over inside the "
        "vmapped function). funcgrad differentiates the program after tracing it, when that "
        "traced array no longer exists, so this rule cannot be run. Make that array an "
        "ordinary argument of the custom_jvp function (differentiated or not), or give it "
        "as a concrete value: a Python number, or an array that is not traced."
    )


def _custom_jvp_forward(active, *args, call_jaxpr, jvp_jaxpr_fun, num_consts, symbolic_zeros):
    """Trace the function's own JVP rule; its tangent map is linear, so reversing it is the VJP.

    Inside another rule's tangent map (a rule that applies a custom_jvp function to its
    tangent, ``neg_jvp = lambda p, t: (neg(p[0]), neg(t[0]))``) the call is linear in the
    tangent, and its function is walked instead of its rule, as JAX transposes it: walking
    the rule there would trace the same rule again without end."""
    if in_tangent_map():
        outs, tape = forward(call_jaxpr.jaxpr, call_jaxpr.consts, args, active)
        return outs, Residual(_THROUGH_FUNCTION, tape)
    if any(active[:num_consts]):
        raise _closed_over_error("jax.custom_jvp")
    primals, act = args[num_consts:], active[num_consts:]
    # Without symbolic_zeros the user's rule expects real arrays for every tangent.
    passed = [a or not symbolic_zeros for a in act]
    n_args = len(primals) + sum(passed)
    try:
        jvp_jaxpr, jvp_consts, out_zeros = compat.custom_jvp_jaxpr(
            jvp_jaxpr_fun, [not t for t in passed], n_args
        )
    except jax.errors.UnexpectedTracerError as err:
        raise _stale_closure_error() from err
    if compat.stale_tracers(jvp_consts):
        raise _stale_closure_error()
    tangents = [_zero_tangent(x) for x, t in zip(primals, passed) if t]
    # Every passed tangent is walked as active (cotangents of the inactive ones are dropped
    # below), so a custom_lin on any tangent path gets its rule; all tangent values are zero.
    active_in = [False] * len(primals) + [True] * len(tangents)
    try:
        with zero_tangents():
            outs, tape = forward(jvp_jaxpr, jvp_consts, [*primals, *tangents], active_in)
    except jax.errors.UnexpectedTracerError as err:
        raise _stale_closure_error() from err
    n_out = len(out_zeros)
    try:
        layouts = _layout.choose(
            outs[:n_out],
            call_jaxpr,
            jvp_jaxpr,
            jvp_consts,
            args,
            num_consts,
            tangents,
            out_zeros,
            batched=compat.maybe_batched(),
        )
    except _layout.Undecided as err:
        raise NotImplementedError(
            f"the jax.custom_jvp function{_where()} is batched (jax.vmap), and funcgrad "
            "cannot tell where its JVP rule put the batch axis. JAX batches the function and "
            f"its rule separately; the call declares the function's output layout {err.shape}, "
            f"the rule's output fits it {err.count} ways, the function's values on generated "
            "inputs do not tell them apart (its output is constant or symmetric there), and "
            "the rule's tangent differs between them. funcgrad stops rather than guess "
            "(jax.grad(jax.jit(jax.vmap(f))) guesses, and can be wrong). To differentiate it: "
            "apply jax.vmap inside the custom_jvp function (define the custom_jvp on the "
            "batched function), or use jax.custom_vjp."
        ) from None
    declared = [av.shape for av in call_jaxpr.out_avals]
    for o, lay, shape in zip(outs[:n_out], layouts, declared, strict=True):
        if lay is None:
            raise NotImplementedError(_no_layout_message(shape, np.shape(o)))
    outs = [_layout.apply(lay, o, d) for o, lay, d in zip(outs[:n_out], layouts, declared)]
    static = (jvp_jaxpr, tuple(out_zeros), act, passed, num_consts, tuple(layouts))
    return outs, Residual(static, tape)


def _no_layout_message(declared, got):
    what = (
        f"the jax.custom_jvp function{_where()} returned an output of shape {declared}, but "
        f"its JVP rule returned a primal output of shape {got}"
    )
    if len(got) > len(declared):  # the rule batched where the function is not
        return (
            f"{what}: under jax.vmap, JAX batched the rule's output while the function's "
            "output does not depend on the batched inputs, so the program funcgrad "
            "differentiates (like jax.jit's) holds one unbatched value where jax.grad holds "
            "one per example, and the per-example derivatives cannot be recovered from it. "
            "Make the function's output depend on the batched input as its rule's does, or "
            "apply jax.vmap inside the custom_jvp function, or use jax.custom_vjp."
        )
    return (
        f"{what}, which no placement of a batch axis turns into the other. Please report it "
        "with the function."
    )


def _zero_tangent(x):
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return np.zeros(np.shape(x), jax.dtypes.float0)
    return jnp.zeros(np.shape(x), dtype)


_THROUGH_FUNCTION = "walked through the function (inside a tangent map)"


@register_vjp(p.custom_jvp_call_p, forward=_custom_jvp_forward)
def custom_jvp_call_vjp(g, res, *args, call_jaxpr, jvp_jaxpr_fun, num_consts, symbolic_zeros):
    del args, jvp_jaxpr_fun, symbolic_zeros
    if res.static == _THROUGH_FUNCTION:
        with zero_tangents():
            return tuple(backward(call_jaxpr.jaxpr, res.arrays, g))
    jvp_jaxpr, out_zeros, act, passed, num_consts, layouts = res.static
    tangent_outs = iter(jvp_jaxpr.outvars[len(out_zeros) :])
    # Each cotangent goes back to the rule's own layout (see _custom_layout).
    ct_tangents = []
    for ct, z, lay in zip(g, out_zeros, layouts, strict=True):
        if not z:
            shape = next(tangent_outs).aval.shape
            ct_tangents.append(ct if ct is None else _layout.unapply(lay, ct, shape))
    with zero_tangents():  # a remat inside the rule recomputes its forward here
        cts = backward(jvp_jaxpr, res.arrays, [None] * len(out_zeros) + ct_tangents)
    ct_t = iter(cts[len(act) :])
    cts_in = [next(ct_t) if t else None for t in passed]
    return (None,) * num_consts + tuple(c if a else None for c, a in zip(cts_in, act))


def _custom_vjp_forward(
    active, *args, call_jaxpr, fwd_jaxpr_thunk, num_consts, bwd, out_trees, symbolic_zeros
):
    """Run the user's own fwd, keeping its residuals for the user's own bwd."""
    del bwd, symbolic_zeros
    if any(active[:num_consts]):
        raise _closed_over_error("jax.custom_vjp")
    outs = compat.custom_vjp_fwd(fwd_jaxpr_thunk, active[num_consts:], args[num_consts:])
    n_res = len(outs) - len(call_jaxpr.out_avals)
    input_fwds = compat.custom_vjp_input_fwds(out_trees, n_res)
    computed = iter(outs[:n_res])
    # A forwarded residual is an operand of the equation: its index counts the closed-over
    # constants, which come first (indexing the primals alone was off by num_consts).
    res = [next(computed) if f is None else args[f] for f in input_fwds]
    return outs[n_res:], Residual(num_consts, res)


@register_vjp(p.custom_vjp_call_p, forward=_custom_vjp_forward)
def custom_vjp_call_vjp(g, res, *args, call_jaxpr, bwd, **params):
    del args, params
    cts_out = [instantiate(ct, av) for ct, av in zip(g, call_jaxpr.out_avals)]
    cts_in = compat.custom_vjp_bwd(bwd, res.arrays, cts_out)
    return (None,) * res.static + tuple(cts_in)


# ---------------------------------------------------------------- remat / checkpoint


def _saved_eqns(policy, jaxpr) -> tuple:
    """Equations whose outputs the policy saves.  A nested rule (scan, cond, ...) needs its
    own residuals, not just its outputs, so it is recomputed whatever the policy says."""
    if policy is None:
        return ()
    return tuple(
        i
        for i, e in enumerate(jaxpr.eqns)
        if compat.policy_saves(policy, e) and not _keeps_own_residuals(e)
    )


def _keeps_own_residuals(eqn) -> bool:
    entry = lookup(eqn.primitive)
    return entry is not None and entry.forward is not None


def _remat_forward(active, *args, jaxpr, prevent_cse, differentiated, policy):
    """Keep only what the policy saves (nothing by default); the rest is recomputed.

    The block runs with the real activity, as it would without the checkpoint, so a
    custom_vjp inside computes its outputs with the user's fwd: differentiated again
    (grad of grad), they follow fwd's own code, as in JAX and as without the checkpoint. With
    no activity it would stay a custom_vjp call, whose derivative is the user's bwd."""
    del prevent_cse, differentiated
    if policy is None:
        outs, _ = forward(jaxpr, (), args, active)
        return outs, Residual((active, ()), ())
    outs, tape = forward(jaxpr, (), args, active, keep_all=True)
    keep = _saved_eqns(policy, jaxpr)
    saved = tuple(tuple(tape.env[v] for v in jaxpr.eqns[i].outvars) for i in keep)
    return outs, Residual((active, keep), saved)


@register_vjp(p.remat_p, forward=_remat_forward)
def remat_vjp(g, res, *args, jaxpr, prevent_cse, differentiated, policy):
    """Recompute the block's forward inside the backward pass, then walk it backwards."""
    del differentiated, policy
    active, keep = res.static
    saved = res.arrays
    if prevent_cse:  # stop XLA from merging the recomputation with the original forward
        args, saved = lax.optimization_barrier((tuple(args), saved))
    _, tape = forward(jaxpr, (), args, active, saved=dict(zip(keep, saved)))
    return tuple(backward(jaxpr, tape, g))


@register_vjp(compat.OPTIMIZATION_BARRIER)
def optimization_barrier_vjp(g, ans, *xs):
    """The identity on every operand (it only orders XLA's schedule): cotangents pass
    through, behind a barrier of their own so the backward pass keeps the same ordering.
    remat's rule and funcgrad's memory plans emit it, so it appears when a checkpointed
    block is differentiated twice."""
    del ans, xs
    present = [k for k, x in enumerate(g) if x is not None]
    out = list(g)
    if present:
        for k, x in zip(present, lax.optimization_barrier([g[k] for k in present])):
            out[k] = x
    return tuple(out)


# ---------------------------------------------------------------- cond


def _cond_forward(active, index, *ops, branches, **params):
    del params
    act = list(active[1:])
    out_act = [any(col) for col in zip(*(activity(b.jaxpr, act) for b in branches))]
    # An operand no branch differentiably uses gets no cotangent (None, not zeros), so the
    # backward pass does not walk zeros back through whatever computed it.
    used = [any(col) for col in zip(*(reaches(b.jaxpr, out_act) for b in branches))]
    act = [a and u for a, u in zip(act, used)]
    lins = [linearize(b, act, out_act) for b in branches]
    own = [[k for k, s in enumerate(lin.res_src) if s is None] for lin in lins]

    def branch_fn(i):
        def run(*ops):
            outs = jcore.jaxpr_as_fun(lins[i].fwd)(*ops)
            res = outs[lins[i].num_out :]
            slots = [
                [res[k] for k in own[j]]
                if j == i
                else [zeros_like_aval(lins[j].res_avals[k]) for k in own[j]]
                for j in range(len(lins))
            ]
            return outs[: lins[i].num_out], slots

        return run

    outs, slots = lax.switch(index, [branch_fn(i) for i in range(len(lins))], *ops)
    return outs, Residual((lins, own, act, out_act), slots)


@register_vjp(p.cond_p, forward=_cond_forward)
def cond_vjp(g, res, index, *ops, **params):
    del params
    lins, own, act, out_act = res.static
    slots = res.arrays
    cts = [instantiate(ct, v.aval) for ct, v, a in zip(g, lins[0].fwd.jaxpr.outvars, out_act) if a]
    # An output with no cotangent is unused: JAX drops it from its linear program, so zeros
    # are not walked back through it (into cbrt's infinite slope at 0, say), nor through an
    # operand whose backward walk gets no cotangent from the others (one no branch reads, or
    # one that only feeds a nested loop or branch that never reads it).
    present = [a and c is not None for a, c in zip(out_act, g)]
    bwds = [lin.bwd for lin in lins]
    if present != list(out_act):
        bwds = [lin.bwd_for(present) or lin.bwd for lin in lins]
    used = [any(col) for col in zip(*(lin.reached_for(present) for lin in lins))]

    def branch_bwd(i):
        def run(slots, ops, cts):
            mine = iter(slots[i])
            res_vals = [next(mine) if s is None else ops[s] for s in lins[i].res_src]
            return jcore.jaxpr_as_fun(bwds[i])(*res_vals, *cts)

        return run

    ct_ops = iter(lax.switch(index, [branch_bwd(i) for i in range(len(lins))], slots, ops, cts))
    cts_in = [next(ct_ops) if a else None for a in _float_mask(act, ops)]
    return (None,) + tuple(c if u else None for c, u in zip(cts_in, used))


def _float_mask(act, vals):
    return [a and jnp.issubdtype(jnp.result_type(v), jnp.inexact) for a, v in zip(act, vals)]


# ---------------------------------------------------------------- scan (and fori_loop)


def _scan_activity(body, active, num_consts, num_carry):
    """Carry activity is a fixed point: an active carry-out makes the carry-in active."""
    nc, nk = num_consts, num_carry
    act = list(active)
    while True:
        out = activity(body.jaxpr, act)
        carry = [a or o for a, o in zip(act[nc : nc + nk], out[:nk])]
        if carry == act[nc : nc + nk]:
            return act, out
        act[nc : nc + nk] = carry


def _scan_forward(active, *args, jaxpr, num_consts, num_carry, length, reverse, unroll, **params):
    del params
    nc, nk = num_consts, num_carry
    act, out_act = _scan_activity(jaxpr, active, nc, nk)
    act = _float_mask(act, args)
    ct_mask = act[nc : nc + nk] + out_act[nk:]
    # A const or xs that reaches no output with a cotangent gets none (None, not zeros, which
    # the backward pass would walk back through, e.g. into cbrt's infinite slope at 0: fuzz
    # seed 424252 program 1158). Carries keep their activity: in and out must match.
    used = reaches(jaxpr.jaxpr, ct_mask)
    act = [a and (used[k] or nc <= k < nc + nk) for k, a in enumerate(act)]
    lin = linearize(jaxpr, act, ct_mask)
    # Residuals that are the loop's consts or xs are read from the inputs, not stacked.
    stacked = [k for k, s in enumerate(lin.res_src) if s is None or nc <= s < nc + nk]
    consts, init, xs = args[:nc], args[nc : nc + nk], args[nc + nk :]
    n_out = lin.num_out

    def body(carry, x):
        outs = jcore.jaxpr_as_fun(lin.fwd)(*consts, *carry, *x)
        return outs[:nk], (outs[nk:n_out], [outs[n_out + k] for k in stacked])

    carry, (ys, res) = lax.scan(
        body, list(init), list(xs), length=length, reverse=reverse, unroll=unroll
    )
    return [*carry, *ys], Residual((lin, act, ct_mask, tuple(stacked)), res)


@register_vjp(p.scan_p, forward=_scan_forward)
def scan_vjp(g, res, *args, jaxpr, num_consts, num_carry, length, reverse, unroll, **params):
    """Reverse scan: the carry's cotangent flows backwards, consts' cotangents accumulate."""
    del params
    lin, act, ct_mask, stacked = res.static
    nc, nk = num_consts, num_carry
    out_avals = [v.aval for v in jaxpr.jaxpr.outvars]
    ct_carry = [instantiate(c, av) for c, av, m in zip(g[:nk], out_avals, ct_mask) if m]
    ct_ys = [
        instantiate(c, _stack_aval(av, length))
        for c, av, m in zip(g[nk:], out_avals[nk:], ct_mask[nk:])
        if m
    ]
    consts, xs = args[:nc], args[nc + nk :]
    xs_idx = sorted({s - nc - nk for s in lin.res_src if s is not None and s >= nc + nk})
    acc0 = [zeros_like_aval(jax.typeof(c)) for c, a in zip(consts, act[:nc]) if a]
    n_act_carry = sum(act[nc : nc + nk])
    slot = {k: i for i, k in enumerate(stacked)}

    # A carry whose final value gets no cotangent and that feeds no output that does is
    # dead, as is an output stack with no cotangent: JAX drops them from its linear
    # program, so zeros are not walked back through them (fuzz seed 424254 program 2590:
    # a carry init from cbrt at 0 that the body overwrites gave nan where JAX gives 0).
    present = _live_outputs(lin, g, ct_mask, nc, nk)
    bwd = lin.bwd if present == list(ct_mask) else (lin.bwd_for(present) or lin.bwd)

    def body(carry, x):
        ct_c, acc = carry
        ct_y, res_t, xs_t = x
        xs_t = dict(zip(xs_idx, xs_t))
        res_vals = [
            res_t[slot[k]] if k in slot else (consts[s] if s < nc else xs_t[s - nc - nk])
            for k, s in enumerate(lin.res_src)
        ]
        cts = jcore.jaxpr_as_fun(bwd)(*res_vals, *ct_c, *ct_y)
        n_c = len(acc)
        acc = [a + c for a, c in zip(acc, cts[:n_c])]
        return (cts[n_c : n_c + n_act_carry], acc), cts[n_c + n_act_carry :]

    (ct_init, ct_consts), ct_xs = lax.scan(
        body,
        (ct_carry, acc0),
        (ct_ys, res.arrays, [xs[i] for i in xs_idx]),
        length=length,
        reverse=not reverse,
        unroll=unroll,
    )
    # A const or xs whose walk back from the live outputs gets no cotangent gets None, so its
    # producer is not walked either (fuzz seed 424259 program 3044: a const passed to a cond
    # that never reads it). A live carry keeps its zeros: JAX walks them back too.
    reached = list(lin.reached_for(present))
    reached[nc : nc + nk] = present[:nk]
    it = iter([*ct_consts, *ct_init, *ct_xs])
    cts = [next(it) if a else None for a in act]
    return tuple(c if c is None or reached[k] else None for k, c in enumerate(cts))


def _live_outputs(lin, g, ct_mask, nc, nk) -> list[bool]:
    """Per body output: whether it is live. An output stack is live if it has a cotangent; a
    carry is live if its final value has one, or if the backward walk of one step, from the
    live outputs, gives its incoming value a cotangent (a fixed point over the body)."""
    live = [m and c is not None for c, m in zip(g, ct_mask)]
    while True:
        into = lin.reached_for(live)[nc : nc + nk]
        carries = [a or b for a, b in zip(live[:nk], into)]
        if carries == live[:nk]:
            return live
        live[:nk] = carries


def _stack_aval(aval, length):
    return aval.update(shape=(length, *aval.shape))


# ---------------------------------------------------------------- while_loop


def _while_forward(active, *args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    del active, args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts
    raise NonDifferentiableError(
        f"reverse-mode differentiation through the lax.while_loop{_where()} is not "
        f"possible: its trip count is only known at run time, so its intermediate values "
        f"cannot be stored for the backward pass. Use lax.fori_loop with Python-int bounds "
        f"(it becomes a scan), or lax.scan with a fixed length."
    )


@register_vjp(p.while_p, forward=_while_forward)
def while_vjp(g, res, *args, **params):  # pragma: no cover - the forward always raises
    raise AssertionError("unreachable: while_loop's forward refuses reverse mode")


# ---------------------------------------------------------------- opened forms (diagnostics)
# Under a watch (funcgrad/_watch.py) that opens them, cond walks only the branch it took and
# scan is unrolled, each step's body walked with that step's values, so a diagnostic sees
# every equation with concrete values. Same activity logic and custom rules as above.


def _cond_taken_forward(active, index, *ops, branches, **params):
    del params
    k = int(np.clip(int(index), 0, len(branches) - 1))
    rename_scope(f"cond branch {k}")
    outs, tape = forward(branches[k].jaxpr, branches[k].consts, ops, active[1:])
    return outs, Residual(k, tape)


def _cond_taken_vjp(g, res, index, *ops, branches, **params):
    del index, ops, params
    return (None, *backward(branches[res.static].jaxpr, res.arrays, g))


def _scan_unrolled_forward(active, *args, jaxpr, num_consts, num_carry, length, reverse, **params):
    del params
    nc, nk = num_consts, num_carry
    act, _ = _scan_activity(jaxpr, active, nc, nk)
    consts, carry, xs = args[:nc], list(args[nc : nc + nk]), args[nc + nk :]
    order = range(length - 1, -1, -1) if reverse else range(length)
    tapes, ys = {}, None
    for t in order:
        with step_scope(t, f"step {t}"):
            outs, tapes[t] = forward(
                jaxpr.jaxpr, jaxpr.consts, [*consts, *carry, *[x[t] for x in xs]], act
            )
        carry = outs[:nk]
        ys = ys or [[None] * length for _ in outs[nk:]]
        for j, y in enumerate(outs[nk:]):
            ys[j][t] = y
    stacked = [jnp.stack(y) for y in (ys or [])]
    return [*carry, *stacked], Residual(tuple(order), tapes)


def _scan_unrolled_vjp(g, res, *args, jaxpr, num_consts, num_carry, **params):
    del params
    nc, nk = num_consts, num_carry
    ct_carry, ct_ys = list(g[:nk]), g[nk:]
    ct_consts = [None] * nc
    xs_avals = [jax.typeof(x) for x in args[nc + nk :]]
    ct_xs = [{} for _ in xs_avals]
    for t in reversed(res.static):
        ct_step = [*ct_carry, *[None if c is None else c[t] for c in ct_ys]]
        cts = backward(jaxpr.jaxpr, res.arrays[t], ct_step)
        ct_consts = [_add_maybe(a, b) for a, b in zip(ct_consts, cts[:nc])]
        ct_carry = cts[nc : nc + nk]
        for j, c in enumerate(cts[nc + nk :]):
            if c is not None:
                ct_xs[j][t] = c
    return (*ct_consts, *ct_carry, *[_stack_steps(c, av) for c, av in zip(ct_xs, xs_avals)])


def _add_maybe(a, b):
    return b if a is None else (a if b is None else a + b)


def _stack_steps(per_step: dict, aval):
    if not per_step:
        return None
    zero = jnp.zeros(aval.shape[1:], aval.dtype)
    return jnp.stack([per_step.get(t, zero) for t in range(aval.shape[0])])


OPENED_RULES = {
    p.cond_p.name: Entry(_cond_taken_vjp, _cond_taken_forward),
    p.scan_p.name: Entry(_scan_unrolled_vjp, _scan_unrolled_forward),
}
