"""Where a custom_jvp rule's outputs put their axes, when that is not where the call says.

Under ``vmap``, JAX batches a ``custom_jvp`` function and its JVP rule separately, and each
keeps the batch axis where its own batching rules leave it. When the call is staged (by
``jax.make_jaxpr``, ``jax.jit``, or funcgrad's own trace) the equation declares the
*function's* layout, while the rule, traced later from ``jvp_jaxpr_fun``, returns *its own*:
``custom_jvp(g)`` with ``g`` a ``lax.scan`` then ``cumprod``, under ``vmap`` over 2, declares
``(4, 2, 1)`` (the batch after the scan's stacked axis) and its rule returns ``(2, 4, 1)``
(fuzz seed 424290 program 6505). With a batch of 4 both read ``(4, 4, 1)`` and taking the
rule's output as declared gives a wrong gradient without a word. ``jax.grad`` of the
unstaged program never mixes the two layouts; ``jax.grad(jax.jit(jax.vmap(f)))`` mixes them
exactly so (a TypeError with a batch of 2, the same wrong gradient with 4, JAX 0.10.2 to
0.12). JAX keeps the rule's batch dimensions inside its batching internals, so funcgrad finds
the layout from the values:

- A layout maps each axis of the declared output to an axis of the rule's output, or to
  ``None`` where the rule left the output unbatched (the axis is then broadcast: JAX's
  batched rule returned a product over a size-0 axis as the unbatched constant 1, ``[0,2]``
  for a declared ``[2,0,2]``, fuzz seed 424254 program 5137).
- The layouts that fit the shapes are listed (the batch axis moved to another place, or
  inserted); layouts that move only size-1 axes are one layout. One fits: it is used.
- Where no ``vmap`` batched the call (none is in the name stack funcgrad's walk keeps, as
  JAX's jaxpr evaluation keeps it: ``compat.maybe_batched``), the rule's layout is the
  call's: a straight-through rule on ``x @ x.T`` has a square output symmetric for every
  input and a tangent that is not, and needs no placing.
- Several fit (a square output, or a batch as long as another axis): an elementwise
  function and rule keep the layout (``_aligned``, from the jaxprs alone); otherwise the
  function and the rule are evaluated at trace time on generated inputs (up to three
  draws) and the one layout whose rule primal output reproduces the function's output is
  used (where several reproduce it within the loose tolerance a rule's own formula needs,
  the one that reproduces it within rounding). Where no layout reproduces it (the draws
  were not faithful: an operand the rule reads as a closed-over constant instead) or the
  call cannot be evaluated safely (effects, a while loop that might not end, keys, traced
  closed-over values), the rule's own layout is kept, as JAX keeps it. Where several
  reproduce it (a zero or symmetric output) and the rule's tangent differs between them
  beyond that tolerance (a symmetric output's tangent is symmetric only up to rounding),
  ``Undecided`` is raised: funcgrad refuses rather than guess (found porting JAX's tests:
  a guess was 2.0 off).

The choice depends on the equation alone, so a recomputation (remat) chooses the same.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.extend.core import primitives as P

Layout = tuple  # one entry per declared axis: a rule-output axis, or None (broadcast)


def identity(ndim: int) -> Layout:
    return tuple(range(ndim))


def fits(rule_shape, declared_shape) -> list[Layout]:
    """Layouts taking an array of ``rule_shape`` to ``declared_shape``, one per distinct data
    layout, the identity first when it fits.

    Batching moves whole axes, one per ``vmap``, and may leave an output unbatched; the
    layouts tried are every placement of the rule's axes among the declared ones, the rest
    broadcast (above ``_MAX_LAYOUTS`` placements: one axis moved or inserted)."""
    rule_shape, declared_shape = tuple(rule_shape), tuple(declared_shape)
    n, m = len(declared_shape), len(rule_shape)
    if m > n:
        return []
    if math.comb(n, m) * math.factorial(m) <= _MAX_LAYOUTS:
        found = [
            _placed(slots, perm, n)
            for slots in itertools.combinations(range(n), m)
            for perm in itertools.permutations(range(m))
        ]
    else:
        found = [identity(n)] if m == n else []
        if m == n:
            for src, dst in itertools.permutations(range(n), 2):
                perm = list(range(n))
                perm.insert(dst, perm.pop(src))
                found.append(tuple(perm))
        elif m == n - 1:
            found = [_placed([d for d in range(n) if d != k], range(m), n) for k in range(n)]
    found.sort(key=lambda lay: lay != identity(n))  # the rule's own layout first
    unique, keys = [], set()
    for layout in found:
        if _shape_of(layout, rule_shape, declared_shape) != declared_shape:
            continue
        key = _key(layout, declared_shape)
        if key not in keys:
            keys.add(key)
            unique.append(layout)
    return unique


_MAX_LAYOUTS = 5040  # 7! placements


def _placed(slots, perm, n) -> Layout:
    """Rule axis ``perm[i]`` at declared axis ``slots[i]``; the other declared axes broadcast."""
    out = [None] * n
    for slot, axis in zip(slots, perm):
        out[slot] = axis
    return tuple(out)


def _shape_of(layout, rule_shape, declared_shape):
    return tuple(d if a is None else rule_shape[a] for a, d in zip(layout, declared_shape))


def _key(layout, declared_shape):
    """What a layout does to the data: the source of each declared axis longer than 1 (an
    empty output has no data to place)."""
    if 0 in declared_shape:
        return ()
    return tuple((d, a) for d, a in enumerate(layout) if declared_shape[d] != 1)


def apply(layout: Layout, x, declared_shape):
    """The rule's output ``x`` laid out as declared."""
    if layout == identity(len(declared_shape)):
        return x
    kept = [a for a in layout if a is not None]
    x = lax.transpose(x, kept) if kept != list(range(len(kept))) else x
    missing = [d for d, a in enumerate(layout) if a is None]
    if missing:
        x = jnp.broadcast_to(jnp.expand_dims(x, missing), declared_shape)
    return x


def _apply_np(layout: Layout, x, declared_shape):
    """``apply`` on a NumPy array (the probe's values), outside any trace."""
    kept = [a for a in layout if a is not None]
    x = np.transpose(x, kept)
    missing = [d for d, a in enumerate(layout) if a is None]
    return np.broadcast_to(np.expand_dims(x, missing), declared_shape) if missing else x


def unapply(layout: Layout, ct, rule_shape):
    """The transpose of ``apply``: a cotangent in the declared layout, in the rule's."""
    if layout == identity(len(layout)):
        return ct
    missing = tuple(d for d, a in enumerate(layout) if a is None)
    if missing:
        ct = jnp.sum(ct, axis=missing)
    kept = [a for a in layout if a is not None]
    if kept != list(range(len(kept))):
        ct = lax.transpose(ct, list(np.argsort(kept)))
    return jnp.reshape(ct, rule_shape)


def choose(
    rule_outs,
    call_jaxpr,
    rule_jaxpr,
    rule_consts,
    call_args,
    n_consts,
    tangents,
    out_zeros,
    batched=True,
):
    """One layout per output (``None`` where no layout fits the shapes).

    ``batched``: whether a jax.vmap may have batched the call (``compat.maybe_batched``);
    where none did the rule's layout is the call's, and nothing is evaluated.
    ``rule_outs``: the rule's primal outputs; ``call_args``: the call's operands (its
    closed-over values first, ``n_consts`` of them); ``tangents``: what the rule is given
    for its tangent inputs; ``out_zeros``: the rule's symbolically zero tangent outputs.
    Raises ``Undecided`` where the values cannot tell the placements apart and the rule's
    tangent differs between them."""
    declared = [av.shape for av in call_jaxpr.out_avals]
    options = [fits(np.shape(o), d) for o, d in zip(rule_outs, declared, strict=True)]
    chosen = [opts[0] if opts else None for opts in options]
    undecided = {k for k, opts in enumerate(options) if len(opts) > 1}
    if not batched or not undecided or _aligned(call_jaxpr.jaxpr, rule_jaxpr):
        return chosen
    tied = {}
    for draw in _DRAWS:
        probed = _probe(call_jaxpr, rule_jaxpr, rule_consts, call_args, n_consts, tangents, draw)
        if probed is None:  # cannot be evaluated safely: the rule's own layout, as JAX
            return chosen
        want, got, tangent_outs = probed
        for k in sorted(undecided):
            errs = [_distance(_apply_np(lay, got[k], declared[k]), want[k]) for lay in options[k]]
            winner, matching = _best(options[k], errs, want[k].dtype)
            if winner is not None:
                chosen[k] = winner
                undecided.discard(k)
                tied.pop(k, None)
            elif len(matching) > 1:
                tied[k] = matching
        if not undecided:
            return chosen
    # Still undecided: where no placement reproduced the function's values the draws were
    # not faithful (an operand the rule takes as a closed-over constant instead, say) and
    # the rule's own layout is kept, as JAX keeps it. Where several did, the values cannot
    # tell: if the rule's tangent is the same in each placement nothing depends on it.
    nonzero = iter(tangent_outs)
    tangent_of = [None if z else next(nonzero) for z in out_zeros]
    for k in sorted(tied):
        t = tangent_of[k]
        placed = [] if t is None else [_apply_np(lay, t, declared[k]) for lay in tied[k]]
        # Within rounding: a symmetric output's tangent is symmetric up to rounding only
        # (inv(a @ a.T + 3 I), fuzz seed 424293 program 870).
        if any(not _close(q, placed[0]) for q in placed):
            raise Undecided(declared[k], len(tied[k]))
        ident = identity(len(declared[k]))
        chosen[k] = ident if ident in tied[k] else tied[k][0]
    return chosen


def _eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.inexact) else 0.0


def _tolerance(dtype) -> float:
    """How far (relative) the rule's primal output may be from the function's and match: a
    rule may compute its primal output by another formula than the function's."""
    return max(np.sqrt(_eps(dtype)), 1e-12)


def _rounding(dtype) -> float:
    """How far (relative) a rule's primal output computed as the function's is from it."""
    return max(4 * _eps(dtype), 1e-12)


class Undecided(Exception):
    """The values of a custom_jvp call cannot tell where its rule put the batch axis."""

    def __init__(self, shape, count):
        super().__init__(shape, count)
        self.shape, self.count = shape, count


def _best(opts, errs, dtype):
    """(the one placement that reproduces the function's values, or None; those that do).

    Where several reproduce them within ``_tolerance`` (loose enough for a rule with its own
    formula, and in bfloat16, 0.09, loose enough to admit a transposed 2x2: fuzz seed 424293
    program 2982) and one alone within rounding, that one does."""
    matching = [lay for lay, e in zip(opts, errs) if e <= _tolerance(dtype)]
    if len(matching) > 1:
        exact = [lay for lay, e in zip(opts, errs) if e <= _rounding(dtype)]
        if len(exact) == 1:
            return exact[0], exact
    if len(matching) == 1:
        return matching[0], matching
    return None, matching


def _close(a, b) -> bool:
    """Whether two tangents agree within ``_tolerance`` (float0 tangents always do)."""
    if a.dtype == jax.dtypes.float0:
        return True
    return _distance(a, b) <= _tolerance(a.dtype)


def _distance(a, b) -> float:
    a, b = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
    both_nan = np.isnan(a) & np.isnan(b)
    same = (a == b) | both_nan
    diff = np.where(same, 0.0, np.abs(a - b))
    scale = np.max(np.abs(np.where(np.isfinite(b), b, 0.0)), initial=0.0) or 1.0
    return float(np.max(np.where(np.isnan(diff), np.inf, diff), initial=0.0) / scale)


# Elementwise primitives: output element i reads input elements i only, whatever the layout.
_ELEMENTWISE = frozenset(
    getattr(P, f"{name}_p")
    for name in (
        "abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp complex conj "
        "convert_element_type cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor "
        "ge gt imag integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg "
        "nextafter not or pow real reduce_precision rem round rsqrt select_n sign sin sinh "
        "sqrt square sub tan tanh xor copy"
    ).split()
    if hasattr(P, f"{name}_p")
)
_CALLS = (P.jit_p, P.closed_call_p)


def _aligned(*jaxprs) -> bool:
    """Whether every value of these jaxprs has one shape (or is a scalar, or uniform) and
    every equation is elementwise: then each output element reads only the same element of
    each input, in the function and in the rule alike, and the rule's layout is the declared
    one (relu, gelu, silu and most activation functions; no evaluation needed).

    A uniform value (a scalar literal broadcast, and elementwise results of uniform values
    alone) holds one number in every element, so its shape places nothing: softplus's rule
    under vmap broadcasts its zero to ``[1, 1, 2]`` and then to ``[2, 1, 1, 2]`` (fuzz seed
    424293 program 2982)."""
    shapes = set()

    def walk(jaxpr) -> bool:
        shapes.update(v.aval.shape for v in (*jaxpr.invars, *jaxpr.outvars) if v.aval.shape)
        uniform = set()
        is_uniform = lambda v: (  # noqa: E731
            v in uniform if not isinstance(v, jcore.Literal) else not np.shape(v.val)
        )
        for eqn in jaxpr.eqns:
            if eqn.primitive in _CALLS or eqn.primitive is P.custom_jvp_call_p:
                if not walk(next(iter(jcore.jaxprs_in_params(eqn.params)))):
                    return False
            elif eqn.primitive is P.broadcast_in_dim_p:
                if is_uniform(eqn.invars[0]):
                    uniform.update(eqn.outvars)
                    continue
                if eqn.invars[0].aval.shape:
                    return False
            elif eqn.primitive not in _ELEMENTWISE:
                return False
            elif all(is_uniform(v) for v in eqn.invars):
                uniform.update(eqn.outvars)
                continue
            shapes.update(v.aval.shape for v in (*eqn.invars, *eqn.outvars) if v.aval.shape)
        return True

    return all(walk(j) for j in jaxprs) and len(shapes) <= 1


def _evaluable(jaxpr) -> bool:
    """Whether evaluating ``jaxpr`` on generated values is safe: no effects (a print, a
    callback would run at trace time) and no while loop (it might never end)."""
    if jaxpr.effects:
        return False
    for eqn in jaxpr.eqns:
        if eqn.primitive is P.while_p:
            return False
        for sub in jcore.jaxprs_in_params(eqn.params):
            if not _evaluable(sub):
                return False
    return True


# Inputs drawn for a probe, one distribution after another until the values decide: inside
# (0, 1) (the domain of arcsin, log's positive half), signed (sign, relu-like kinks), then
# beyond 1 (functions defined there only, e.g. arccosh).
_DRAWS = ((0.1, 0.9), (-1.0, 1.0), (1.1, 3.0))


def _generated(aval, rng, draw):
    dtype, shape = aval.dtype, aval.shape
    lo, hi = draw
    if jnp.issubdtype(dtype, jnp.complexfloating):
        x = rng.uniform(lo, hi, shape) + 1j * rng.uniform(lo, hi, shape)
    elif jnp.issubdtype(dtype, jnp.floating):
        x = rng.uniform(lo, hi, shape)
    elif jnp.issubdtype(dtype, jnp.bool_):
        x = rng.integers(0, 2, shape).astype(bool)
    elif jnp.issubdtype(dtype, jnp.integer):
        x = rng.integers(0, 3, shape)
    else:  # float0, keys, other extended dtypes
        return None
    return jnp.asarray(x, dtype)


def _probe(call_jaxpr, rule_jaxpr, rule_consts, call_args, n_consts, tangents, draw):
    """(the function's outputs, the rule's primal outputs, its tangent outputs) on inputs
    drawn from ``draw``, or None where the call cannot be evaluated safely."""
    closed = call_args[:n_consts]
    concrete = lambda xs: not any(isinstance(x, jax.core.Tracer) for x in xs)  # noqa: E731
    if not (concrete(closed) and concrete(rule_consts) and concrete(call_jaxpr.consts)):
        return None
    if not (_evaluable(call_jaxpr.jaxpr) and _evaluable(rule_jaxpr)):
        return None
    rng = np.random.default_rng(0)
    with jax.ensure_compile_time_eval():
        primals = [_generated(av, rng, draw) for av in call_jaxpr.in_avals[n_consts:]]
        if any(x is None for x in primals):
            return None
        dirs = [
            np.zeros(np.shape(t), jax.dtypes.float0)
            if t.dtype == jax.dtypes.float0
            else _generated(jax.ShapeDtypeStruct(np.shape(t), t.dtype), rng, (-1.0, 1.0))
            for t in tangents
        ]
        try:
            want = jcore.jaxpr_as_fun(call_jaxpr)(*closed, *primals)
            rule = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(rule_jaxpr, rule_consts))
            got = rule(*primals, *dirs)
        except Exception:  # noqa: BLE001 - a probe that cannot run decides nothing
            return None
    if not concrete([*want, *got]):  # a value of an enclosing trace reached the outputs
        return None
    n = len(want)
    as_np = lambda xs: [np.asarray(x) for x in xs]  # noqa: E731
    return as_np(want), as_np(got[:n]), as_np(got[n:])
