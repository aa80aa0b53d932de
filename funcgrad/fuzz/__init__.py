"""A fuzzer over programs: random jax.numpy programs drawn from the whole rule table,
differentiated by ``funcgrad.vjp`` and by ``jax.vjp`` with one random cotangent, compared at
tolerances from the dtype; a mismatch is shrunk to a minimal program and printed as a
standalone reproduction.

Run ``python -m funcgrad.fuzz --programs N --seed S``. Not imported by ``import funcgrad``.
Programs are Python source (see ``_program.py``). Each case (JAX's and funcgrad's forward
values and cotangents) is traced and compiled as one ``jax.jit`` with XLA's cheap-compile
options (``_jax_compat.fast_compile_options``: no backend optimisation, no fast math), since
compiling dominated the cost; about four programs run per CPU-second (JAX's and funcgrad's
tracing and lowering are now most of it).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jax import lax

import funcgrad

from .. import _jax_compat, _registry
from . import _gen, _rounding
from ._program import Program, Var, shrink

# Normwise relative tolerance per leaf: max|got - want| <= TOL * max(1, max|want|).
TOL = {"float64": 1e-7, "float32": 2e-3, "bfloat16": 8e-2}
GRID = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])


@dataclasses.dataclass
class Outcome:
    status: str  # ok | skip | mismatch | error
    detail: str = ""
    values: tuple | None = None  # a judged case's (want_out, want, got_out, got)


def make_args(program: Program, seed: int, index: int) -> list:
    rng = np.random.default_rng([seed, index, 1])
    args = []
    lead = (program.batch,) if program.mode == "vmap" else ()
    for v in program.inputs:
        shape = lead + v.shape
        if rng.random() < 0.3:  # a small grid: ties, zeros, kinks
            vals = rng.choice(GRID, size=shape)
        else:
            vals = rng.uniform(-2.0, 2.0, size=shape)
        vals = vals.astype(np.float32 if v.dtype == "bfloat16" else v.dtype)
        args.append(jax.device_put(vals.astype(jnp.dtype(v.dtype))))
    return args


def namespace() -> dict:
    return {"jax": jax, "jnp": jnp, "lax": lax, "jsp": jsp, "np": np}


def compile_program(program: Program, *, widen: bool = False):
    """The program as a Python function; with ``widen``, every low-precision float type it
    names raised to float64 (see ``WIDEN``)."""
    src = program.source()
    if widen:
        for low, high in WIDEN.items():
            src = src.replace(f"jnp.{low}", f"jnp.{high}")
    ns = namespace()
    exec(src, ns)  # noqa: S102  (the program is our own generated source)
    return ns["program"]


def _random_like(rng, x):
    """Normal draws shaped and typed like ``x`` (host-side: no compilation per shape)."""
    return jax.device_put(rng.normal(size=np.shape(x)).astype(np.dtype(x.dtype)))


def targets(program: Program, fun, weights):
    """The functions compared: (funcgrad's, JAX's), per the program's mode."""
    if program.mode == "plain":
        return fun, fun
    if program.mode == "vmap":
        return jax.vmap(fun), jax.vmap(fun)

    def scalar(*xs):
        outs = fun(*xs)
        return sum(jnp.sum(o * w).astype(jnp.float32) for o, w in zip(outs, weights, strict=True))

    argnums = tuple(range(len(program.inputs)))
    return funcgrad.grad(scalar, argnums=argnums), jax.grad(scalar, argnums=argnums)


def _finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(leaf, np.float64))) for leaf in jax.tree.leaves(tree))


def _tol(leaves) -> float:
    return max(TOL.get(jnp.result_type(x).name, 1e-7) for x in leaves) if leaves else 1e-7


# A program that rounds with lax.reduce_precision (to float16's 10-bit mantissa here)
# differentiated twice: both sides round the cotangent, as the rule's linear-cast convention
# says, but at different points of the second-order program, so they differ by a few
# roundings of that format (fuzz seed 424246 program 6062: 2e-4 relative in float64).
REDUCED_PRECISION_TOL = 2.0**-9


def _tol_floor(program: Program) -> float:
    rounds = any("reduce_precision" in line.expr + "".join(line.defs) for line in program.lines)
    return REDUCED_PRECISION_TOL if program.mode == "gradgrad" and rounds else 0.0


def compare(got, want, floor: float = 0.0) -> str:
    """'' when every leaf agrees, else a description of the worst leaf. ``floor``: the
    smallest tolerance to use (see ``REDUCED_PRECISION_TOL``)."""
    g_leaves, w_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    if len(g_leaves) != len(w_leaves):
        return f"{len(g_leaves)} leaves, expected {len(w_leaves)}"
    for k, (g, w) in enumerate(zip(g_leaves, w_leaves, strict=True)):
        if np.shape(g) != np.shape(w) or jnp.result_type(g) != jnp.result_type(w):
            return f"leaf {k}: {jax.typeof(g)} vs expected {jax.typeof(w)}"
        if np.size(w) == 0:
            continue
        g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
        err = float(np.max(np.abs(g64 - w64))) if np.all(np.isfinite(g64)) else float("inf")
        scale = max(1.0, float(np.max(np.abs(w64))))
        tol = max(_tol([g, w]), floor)
        if not err <= tol * scale:
            return f"leaf {k} ({jax.typeof(w)}): max error {err:.3g} > {tol:g} * {scale:.3g}"
    return ""


def _both(fg_target, ref_target, args, ct):
    want_out, ref_pb = jax.vjp(ref_target, *args)
    got_out, fg_pb = funcgrad.vjp(fg_target, *args)
    return want_out, ref_pb(ct), got_out, fg_pb(ct)


def _target_shapes(program: Program, outs, args) -> tuple:
    """The shapes and dtypes the compared function returns, from the program's own outputs
    (``outs``, traced once) without tracing the target again."""
    if program.mode == "vmap":
        return tuple(jax.ShapeDtypeStruct((program.batch, *o.shape), o.dtype) for o in outs)
    if program.mode == "gradgrad":  # the gradient with respect to every input
        return tuple(jax.ShapeDtypeStruct(np.shape(a), a.dtype) for a in args)
    return tuple(outs)


def setup(program: Program, seed: int, index: int):
    """The compared functions, their arguments and the cotangent of one case."""
    fun = compile_program(program)
    args = make_args(program, seed, index)
    rng = np.random.default_rng([seed, index, 2])
    inner = [a[0] for a in args] if program.mode == "vmap" else args
    outs = jax.eval_shape(fun, *inner)
    weights = [_random_like(rng, o) for o in outs]
    fg_target, ref_target = targets(program, fun, weights)
    ct = tuple(_random_like(rng, o) for o in _target_shapes(program, outs, args))
    return fg_target, ref_target, args, ct, weights


# Cases judged a second time, and why: with XLA's default options where the cheap build
# could not decide ("build failed": XLA raised; "disagreed": a mismatch the default build did
# not see), op by op where XLA could not run a valid program, and against the float64 answer
# where a low-precision mismatch was within JAX's own rounding (see ``_against_float64``).
REJUDGED = collections.Counter()

# Float types of a program raised to float64 (and their complex types with them) to compute
# the answer that both sides' low-precision results approximate.
WIDEN = {
    "bfloat16": "float64",
    "float16": "float64",
    "float32": "float64",
    "complex64": "complex128",
}


def _widen(tree):
    def one(x):
        name = jnp.result_type(x).name
        return x.astype(WIDEN[name]) if name in WIDEN else x

    return jax.tree.map(one, tree)


def _targets64(program: Program, weights):
    """The program with its low-precision floats raised to float64, and its (funcgrad's,
    JAX's) targets at ``weights`` raised likewise."""
    fun64 = compile_program(program, widen=True)
    return (fun64, *targets(program, fun64, _widen(weights)))


def _low_precision(program: Program) -> bool:
    src = program.source()
    return any(name in src for name in WIDEN) or any(v.dtype in WIDEN for v in program.inputs)


def _leaves64(tree) -> list:
    return [np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64) for x in tree]


def _within(got, centre, spread) -> bool:
    """Whether each element of ``got`` is within twice ``spread`` of ``centre``, plus the
    dtype's tolerance of ``centre``'s size (leaf by leaf; a non-finite ``centre`` or
    ``spread``, or a leaf that does not line up, fails)."""
    leaves = [jax.tree.leaves(t) for t in (got, centre, spread)]
    if len({len(x) for x in leaves}) != 1:
        return False
    for g, c, d in zip(*leaves, strict=True):
        g64, c64, d64 = _leaves64((g, c, d))
        if not (np.shape(g64) == np.shape(c64) == np.shape(d64)):
            return False
        if not np.all(np.isfinite(c64) & np.isfinite(d64)):
            return False
        slack = _tol([g]) * max(1.0, float(np.max(np.abs(c64), initial=0.0)))
        if not np.all(np.abs(g64 - c64) <= 2 * np.abs(d64) + slack):
            return False
    return True


def _distance(a, b) -> list:
    """Leaf by leaf, elementwise |a - b| in float64 (a leaf that does not line up: inf)."""
    out = []
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x64, y64 = _leaves64((x, y))
        out.append(np.abs(x64 - y64) if x64.shape == y64.shape else np.array(np.inf))
    return out


def _widest(spread, a, b) -> list:
    """``spread`` widened, element by element, to ``|a - b|`` where that is larger."""
    return [np.maximum(s, d) for s, d in zip(spread, _distance(a, b), strict=True)]


def _within_twice(got, other, centre) -> bool:
    """Whether each element of ``got`` is within twice ``other``'s distance from ``centre``
    (see ``_within``)."""
    if len(jax.tree.leaves(other)) != len(jax.tree.leaves(centre)):
        return False
    return _within(got, centre, _distance(other, centre))


# Nearby cotangents, and nearby inputs, at which JAX's own low-precision rounding is sampled
# (``_against_float64``); a nearby input is at most ``NEARBY_ULPS`` ulps from the drawn one.
NEARBY_COTANGENTS = 8
NEARBY_INPUTS = 8
NEARBY_ULPS = 4


def _nearby(rng, c):
    """``c`` with each element scaled by a factor in [0.75, 1.25] (a float or complex
    cotangent; others unchanged), in its own dtype."""
    if not jnp.issubdtype(c.dtype, jnp.inexact):
        return c
    (c64,) = _leaves64([c])
    return jax.device_put((c64 * rng.uniform(0.75, 1.25, np.shape(c))).astype(np.dtype(c.dtype)))


def _ulps_away(rng, x):
    """``x`` with each element moved by up to ``NEARBY_ULPS`` ulps of its dtype (a float or
    complex input; others unchanged), in its own dtype."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    (x64,) = _leaves64([x])
    steps = rng.integers(-NEARBY_ULPS, NEARBY_ULPS + 1, np.shape(x))
    moved = x64 * (1 + steps * float(jnp.finfo(x.dtype).eps))
    return jax.device_put(moved.astype(np.dtype(x.dtype)))


def _value_and_pullback(f, args, ct):
    out, pb = jax.vjp(f, *args)
    return out, pb(ct)


def _against_float64(program: Program, ref_target, args, ct, weights, out: Outcome) -> Outcome:
    """A low-precision mismatch judged against the float64 answer.

    Summing large terms that cancel loses a bfloat16 or float32 result's leading digits, and
    the two sides round their intermediate products at different points, so their results can
    differ by far more than the dtype's tolerance of the result's own size (fuzz seed 424246
    program 7546: terms near 100 summed to -2.5 in bfloat16; JAX -2.5, funcgrad -1.5). Both
    approximate the same float64 answer, computed here by JAX from the program with every
    low-precision float raised to float64. The mismatch is rounding, not a wrong rule, if

    * funcgrad's own float64 program agrees with that answer at float64's tolerance (so its
      rules give the right values), and
    * each element of funcgrad's low-precision cotangent is within twice JAX's rounding error
      of the float64 answer, plus the dtype's tolerance. One sample of JAX's error can be
      lucky (seed 424261 program 494: JAX off by 0.16, funcgrad by 1.6, JAX by up to 2.6 at
      cotangents 25% away), so JAX's error is taken as its largest at the cotangent and at
      ``NEARBY_COTANGENTS`` cotangents near it, each against its own float64 answer: the
      spread of JAX's own algorithm there, not of one draw. Under grad of grad the
      compared value is itself a gradient, whose cotangent is the program's weights: its
      error is judged the same way, at weights near the drawn ones. Both the value and the
      cotangent are also judged against JAX's error at ``NEARBY_INPUTS`` inputs a few ulps
      from the drawn ones: where a result is decided by rounding alone (seed 424267 program
      2323: ``sin`` of a float32 product near 8.65e8, whose ulp, 64, spans ten periods; JAX's
      differentiated program rounds the product 2 ulps away from the program's own value, so
      its sin is -0.81 and funcgrad's, the program's own, 0.99), JAX's error a few ulps away
      is as large as the result; where the program is well conditioned it stays as small as
      at the drawn input.

    A rule that is wrong fails the first test; one that loses precision JAX keeps fails the
    second wherever JAX's low-precision results are accurate.
    """
    want_out, want, got_out, got = out.values
    try:
        fun64, fg64, ref64 = _targets64(program, weights)
        wide = tuple(_widen(args))
        exact_out, exact, _, fg_exact = jax.jit(_both, static_argnums=(0, 1))(
            fg64, ref64, wide, _widen(ct)
        )
        if compare(fg_exact, exact):  # funcgrad's float64 values are wrong: a real mismatch
            return out
        both = jax.jit(_value_and_pullback, static_argnums=0)
        spread = _distance(want, exact)
        out_spread = _distance(want_out, exact_out)
        rng = np.random.default_rng(0)
        for _ in range(NEARBY_COTANGENTS):
            near = tuple(_nearby(rng, c) for c in ct)
            spread = _widest(
                spread, both(ref_target, args, near)[1], both(ref64, wide, _widen(near))[1]
            )
        if program.mode == "gradgrad":  # the compared value is a gradient, with weights for
            # its cotangent (seed 424266 program 6528): sample JAX's rounding near them too
            fun_low = compile_program(program)
            for _ in range(NEARBY_COTANGENTS):
                near_w = [_nearby(rng, x) for x in weights]
                low = jax.jit(targets(program, fun_low, near_w)[1])(*args)
                exact_w = jax.jit(targets(program, fun64, _widen(near_w))[1])(*wide)
                out_spread = _widest(out_spread, low, exact_w)
        for _ in range(NEARBY_INPUTS):  # (seed 424267 program 2323)
            near_a = tuple(_ulps_away(rng, a) for a in args)
            low_out, low = both(ref_target, near_a, ct)
            exact_near_out, exact_near = both(ref64, _widen(near_a), _widen(ct))
            out_spread = _widest(out_spread, low_out, exact_near_out)
            spread = _widest(spread, low, exact_near)
    except Exception:  # noqa: BLE001  (no float64 answer: the mismatch stands)
        return out
    if not (_within(got_out, exact_out, out_spread) and _within(got, exact, spread)):
        return out
    REJUDGED["low precision, within JAX's rounding of float64"] += 1
    return Outcome("ok", "within JAX's own rounding of the float64 answer")


def _against_forward_over_reverse(program: Program, ref_target, args, ct, out: Outcome) -> Outcome:
    """A second-order mismatch judged against JAX's second way to the same numbers.

    grad of grad multiplies the cotangent by the Hessian, which is symmetric, so JAX's
    forward-over-reverse product (``jax.jvp`` of its gradient) is the same quantity rounded
    along another path. Where second-order terms much larger than the result cancel, the
    rounding of those terms decides the result, and JAX's two paths disagree by as much as
    funcgrad disagrees with either (fuzz seed 424254 program 4772: hypot(v, v) at v near
    1e-17, terms near 1/v, JAX's two answers 0.017 apart in float64; seed 424251 program 3573:
    the same in bfloat16). funcgrad's result passes if each element is within twice JAX's
    own spread, plus the dtype's tolerance: where JAX's two paths agree, a wrong rule still
    fails.
    """
    if program.mode != "gradgrad" or out.values is None:
        return out
    try:
        alt = jax.jit(lambda a, t: jax.jvp(ref_target, a, t)[1])(tuple(args), tuple(ct))
    except Exception:  # noqa: BLE001  (no second path: the mismatch stands)
        return out
    want_out, want, got_out, got = out.values
    if compare(got_out, want_out):
        return out
    if not _within_twice(got, alt, want):
        return out
    REJUDGED["second order, within JAX's forward-over-reverse spread"] += 1
    return Outcome("ok", "within the spread of JAX's reverse and forward-over-reverse answers")


def _compiled_both(fg_target, ref_target, args, ct, *, cheap: bool = True):
    """``_both`` traced and compiled as one program, with XLA's cheap-compile options unless
    ``cheap`` is False; where XLA fails to build or run that (its FFT thunk rejects some
    layouts the unoptimised pipeline leaves), the same lowered program is rebuilt with XLA's
    default options, so a compiler-mode failure is never taken for funcgrad's."""
    lowered = jax.jit(_both, static_argnums=(0, 1)).lower(fg_target, ref_target, args, ct)
    if cheap:
        try:
            compiled = lowered.compile(compiler_options=_jax_compat.fast_compile_options())
            return jax.block_until_ready(compiled(args, ct))
        except Exception:  # noqa: BLE001  (XLA's; the default build below decides)
            REJUDGED["build failed"] += 1
    return jax.block_until_ready(lowered.compile()(args, ct))


def run(program: Program, seed: int, index: int, *, eager: bool = False) -> Outcome:
    """Differentiate ``program`` with funcgrad and with JAX; compare values and cotangents.

    By default both run inside one ``jax.jit`` (one compilation per program, far cheaper
    than compiling every primitive eagerly) built with XLA's cheap-compile options. Those
    once miscompiled JAX's side (fuzz seed 424245 program 543: legacy emitters at
    optimisation level 0), so a mismatch is only reported if XLA's default build shows it
    too. ``eager=True`` runs op by op.
    """
    try:
        case = setup(program, seed, index)
    except Exception as e:  # noqa: BLE001  (JAX cannot run it: not a case)
        return Outcome("skip", f"reference: {type(e).__name__}: {str(e)[:200]}")
    return judge(program, case, eager=eager)


def judge(program: Program, case: tuple, *, eager: bool = False) -> Outcome:
    """``run``'s judgement of one case, ``setup``'s (targets, args, cotangent, weights)."""
    fg_target, ref_target, args, ct, weights = case
    floor = _tol_floor(program)
    out = _judge(fg_target, ref_target, args, ct, "eager" if eager else "cheap", floor)
    if out.status == "mismatch" and not eager:
        out = _judge(fg_target, ref_target, args, ct, "default", floor)
        if out.status != "mismatch":
            REJUDGED["disagreed"] += 1
    if out.status == "mismatch":
        out = _against_value_alone(ref_target, args, out)
    if out.status == "mismatch" and _low_precision(program):
        out = _against_float64(program, ref_target, args, ct, weights, out)
    if out.status == "mismatch":
        out = _against_forward_over_reverse(program, ref_target, args, ct, out)
    if out.status == "mismatch":
        out = _against_moved_rounding(program, ref_target, args, ct, weights, out)
    return out


def _against_moved_rounding(program: Program, ref_target, args, ct, weights, out: Outcome):
    """A mismatch judged against how far JAX's own result moves when its rounding does.

    Where terms far larger than the result cancel, the result is decided by how each term
    rounds, in every dtype alike (fuzz seed 424279 program 6558, grad of grad in float32:
    the second derivative of ``cbrt(v**3)`` at ``v = sinc(1)``, which is 2.8e-8 in float32
    and 3.9e-17 in float64 instead of 0, sums terms near ``2/v``; JAX's and funcgrad's
    results differ by 4.0, half an ulp of those terms, in float32 and float64 alike, and
    JAX's forward-over-reverse answer agrees with its reverse one, so neither the float64
    nor the forward-over-reverse judgement can tell). ``_rounding.spread`` re-runs JAX's
    differentiated program with every rounded intermediate moved by up to one ulp, keeping
    only samples whose comparisons, indices and ties are unchanged (``_moved_within``).

    A program with float32 or bfloat16 in it must pass twice: as drawn, and raised to
    float64 (funcgrad's float64 result within the spread of JAX's float64 result), as the
    float64 judgement asks. A program that rounds its cotangent through bfloat16 spreads
    JAX's float32 result by a percent or two, which would hide a rule 1% off (found by
    breaking dot_general's rule on purpose, fuzz seed 777 program 150); its float64 program
    has no such rounding, and the wrong rule fails there.
    """
    if out.values is None or not _moved_within(ref_target, args, ct, *out.values):
        return out
    if _low_precision(program):
        try:
            _, fg64, ref64 = _targets64(program, weights)
            wide, wide_ct = tuple(_widen(args)), _widen(ct)
            values64 = jax.jit(_both, static_argnums=(0, 1))(fg64, ref64, wide, wide_ct)
        except Exception:  # noqa: BLE001  (no float64 program: the mismatch stands)
            return out
        want_out, want, got_out, got = values64
        agree = not compare(got_out, want_out) and not compare(got, want)
        if not (agree or _moved_within(ref64, wide, wide_ct, *values64)):
            return out
    REJUDGED["within JAX's spread when its rounding moves"] += 1
    return Outcome("ok", "within the spread of JAX's own result when its rounding moves")


def _moved_within(ref_target, args, ct, want_out, want, got_out, got) -> bool:
    """Whether each element of funcgrad's value and cotangent is within the dtype's
    tolerance of JAX's (as ``compare`` asks of them all) or within twice the spread of JAX's
    result when its rounding moves (widened by JAX's op-by-op vs compiled difference); not
    the two added: in bfloat16 the spread of a well-conditioned result is a few percent, and
    a rule 10% off must still fail. Where fewer than half the samples keep the program's
    decisions, only the op-by-op vs compiled difference counts."""
    try:
        base, spread, kept = _rounding.spread(
            lambda a, c: _value_and_pullback(ref_target, a, c), tuple(args), ct
        )
    except Exception:  # noqa: BLE001  (JAX's program could not be re-run: no spread)
        return False
    if kept < _rounding.SAMPLES // 2:  # too few samples keep the program's decisions: JAX's
        # op-by-op vs compiled difference alone (seed 424284 program 2549: funcgrad's value is
        # JAX's op by op, where XLA's fusion keeps a float32 where the program casts to bfloat16)
        spread = [np.zeros_like(s) for s in spread]
    centre = jax.tree.leaves((want_out, want))
    spread = _widest(spread, base, centre)
    for g, c, d in zip(jax.tree.leaves((got_out, got)), centre, spread, strict=True):
        g64, c64 = _leaves64((g, c))
        slack = _tol([g]) * max(1.0, float(np.max(np.abs(c64), initial=0.0)))
        if not np.all(np.abs(g64 - c64) <= np.maximum(2 * d, slack)):
            return False
    return True


def _against_value_alone(ref_target, args, out: Outcome) -> Outcome:
    """A forward-value mismatch judged against JAX's value of the same function computed
    alone, without ``jax.vjp`` around it.

    XLA compiles a differentiated program differently from the function alone, and where a
    result is decided by rounding the two disagree (fuzz seed 424280 program 9635, float64:
    ``fmod(p, 0.75)`` of a product ``p`` whose ulp is 0.002; ``jax.vjp``'s forward gives
    0.54053, the program run alone, compiled or op by op, 0.54150, as does funcgrad's; seed
    424267 program 2323 is the same in float32). funcgrad's forward value passes if the
    cotangents agree and it equals, at the dtype's tolerance, JAX's value of the function
    alone, compiled or op by op: the value the researcher's own program computes.
    """
    if out.values is None or not out.detail.startswith("forward value"):
        return out
    want_out, want, got_out, got = out.values
    if compare(got, want):
        return out
    try:  # compiled first; op by op (slow for a large program) only if that differs
        if all(compare(got_out, alone(*args)) for alone in (jax.jit(ref_target), ref_target)):
            return out
    except Exception:  # noqa: BLE001  (no value alone: the mismatch stands)
        return out
    REJUDGED["forward value, equal to the function's own value alone"] += 1
    return Outcome("ok", "forward value equals JAX's value of the function alone")


def _judge(fg_target, ref_target, args, ct, build: str, floor: float = 0.0) -> Outcome:
    try:
        if build == "eager":
            want_out, want, got_out, got = _both(fg_target, ref_target, args, ct)
        else:
            cheap = build == "cheap"
            want_out, want, got_out, got = _compiled_both(
                fg_target, ref_target, args, ct, cheap=cheap
            )
    except Exception as e:  # noqa: BLE001  (a failure of funcgrad is a finding; of JAX, not)
        if isinstance(e, jax.errors.JaxRuntimeError) and build != "eager":
            # XLA could not build or run a valid program (its CPU FFT thunk RET_CHECKs on
            # some layouts, fuzz seeds 424242/232, 424245/926): judge it op by op instead.
            REJUDGED["XLA runtime error, judged op by op"] += 1
            return _judge(fg_target, ref_target, args, ct, "eager", floor)
        try:  # does JAX alone run it? (some programs trace but fail to compile, or to run:
            # XLA's CPU FFT thunk rejects JAX's own program too in seed 424261 program 8670;
            # block, as a runtime failure only shows when the result is read)
            jax.block_until_ready(
                jax.jit(lambda a, c: jax.vjp(ref_target, *a)[1](c))(tuple(args), ct)
            )
        except Exception as ref_e:  # noqa: BLE001
            return Outcome("skip", f"reference: {type(ref_e).__name__}: {str(ref_e)[:200]}")
        return Outcome("error", f"{type(e).__name__}: {e}"[:400])
    if not (_finite(want_out) and _finite(want)):
        return Outcome("skip", "reference not finite")
    values = (want_out, want, got_out, got)
    bad = compare(got_out, want_out, floor)
    if bad:
        return Outcome("mismatch", "forward value " + bad, values)
    bad = compare(got, want, floor)
    return Outcome("mismatch", "cotangent " + bad, values) if bad else Outcome("ok")


@contextlib.contextmanager
def broken_rule(name: str, factor: float = 1.1):
    """Within the block, the VJP rule of the primitive named ``name`` returns ``factor``
    times the cotangents it should: a wrong rule on purpose, to check that the judgement
    still catches one (``python -m funcgrad.fuzz --break NAME``). A run with a broken rule
    should end in mismatches, and every re-judgement it counts is one to look at."""
    found = [p for p in _registry.VJP_RULES if p.name == name]
    if not found:
        raise ValueError(
            f"--break {name!r}: no primitive of that name has a VJP rule registered by its "
            f"Primitive object; give a name from funcgrad.extend.registered_primitives(), "
            f"e.g. 'sin', 'dot_general' or 'reduce_sum' (those registered by name only, "
            f"such as 'stack', cannot be broken here)"
        )
    saved = {p: _registry.VJP_RULES[p] for p in found}

    def wrong(primitive, right):
        def rule(*args, **params):
            cts = _jax_compat.call_with_params(right.rule, primitive, args, params)
            return tuple(c * factor if hasattr(c, "dtype") else c for c in cts)

        return _registry.Entry(rule, right.forward)

    try:
        for p, right in saved.items():
            _registry.VJP_RULES[p] = wrong(p, right)
        yield
    finally:
        _registry.VJP_RULES.update(saved)


def generate(seed: int, index: int, n_ops: int = 8) -> Program:
    return _gen.program(np.random.default_rng([seed, index, 0]), n_ops)


def minimise(program: Program, seed: int, index: int, status: str) -> Program:
    def fails(p):
        return run(p, seed, index).status == status

    return shrink(program, fails)


def reproduction(program: Program, seed: int, index: int) -> str:
    """A standalone Python snippet that shows the disagreement."""
    args = make_args(program, seed, index)
    lit = ",\n    ".join(_literal(a) for a in args)
    return (
        "import jax, jax.numpy as jnp, jax.scipy.special as jsp, numpy as np\n"
        "from jax import lax\n"
        "import funcgrad\n"
        "from funcgrad.fuzz import compare, targets, run_args\n\n"
        'jax.config.update("jax_enable_x64", True)\n\n'
        f"{program.source()}\n"
        f"args = [\n    {lit},\n]\n"
        f"print(run_args(program, args, mode={program.mode!r}, seed={seed}, index={index}))\n"
    )


def run_args(fun, args, *, mode: str, seed: int, index: int) -> str:
    """Differentiate ``fun`` at ``args`` both ways (as :func:`run` does); describe the result."""
    rng = np.random.default_rng([seed, index, 2])
    outs0 = jax.eval_shape(fun, *(a[0] for a in args) if mode == "vmap" else args)
    weights = [_random_like(rng, o) for o in outs0]
    stub = Program(tuple(Var(f"x{i}", (), "float64") for i in range(len(args))), (), mode)
    fg_target, ref_target = targets(stub, fun, weights)
    want_out, ref_pb = jax.vjp(ref_target, *args)
    ct = jax.tree.map(lambda o: _random_like(rng, o), want_out)
    got_out, fg_pb = funcgrad.vjp(fg_target, *args)
    return compare(got_out, want_out) or compare(fg_pb(ct), ref_pb(ct)) or "agree"


def _literal(a) -> str:
    dt = jnp.result_type(a).name
    vals = np.asarray(a, np.float64).tolist()
    return f"jnp.asarray(np.array({vals!r}, np.float64).reshape({np.shape(a)}), jnp.{dt})"
