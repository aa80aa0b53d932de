"""The fuzzer's last judgement: JAX's own result when its rounding moves (``_rounding``).

A result decided by rounding (terms far larger than it cancel) passes if funcgrad's is within
the spread of JAX's own result when every rounded intermediate moves by up to one ulp; a
wrong rule, and a wrong tie, must still fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from funcgrad import _registry, fuzz
from funcgrad.fuzz import _rounding
from funcgrad.fuzz._program import Line, Program, Var

# v, and v of normal size, where terms near 2/v cancel in d2/dv2 cbrt(v**3) = 0
TINY = {"float32": 3e-8, "float64": 4e-17}
SCALES = np.array([1.0, -1.0, 2.0, -2.0, 0.5, 3.0, -0.7, 1.5])


def _case(expr: str, dtype: str, values, mode: str = "gradgrad", n_inputs: int = 1):
    """A one-line program over ``x1``.. and a fresh case of it (``fuzz.setup``'s targets,
    cotangent and weights; every input at ``values``). Fresh targets each call: a patched
    rule is only traced by targets made after the patch."""
    xs = tuple(Var(f"x{k + 1}", (len(values),), dtype) for k in range(n_inputs))
    out = Var(f"v{n_inputs + 1}", (len(values),), dtype)
    program = Program(xs, (Line((out,), expr, tuple(x.name for x in xs)),), mode)
    fg_target, ref_target, args, ct, weights = fuzz.setup(program, 0, 0)
    args = [jnp.asarray(values, a.dtype) for a in args]
    return program, (fg_target, ref_target, args, ct, weights)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_second_derivative_where_terms_near_1_over_v_cancel(dtype):
    """Fuzz seed 424279 program 6558 (grad of grad, float32, JAX 0.10.2), shrunk: the second
    derivative of ``cbrt(v**3)`` at ``v = sinc(integer)``, which rounds to 2.8e-8 in float32
    (3.9e-17 in float64) instead of 0. It is 0, as a sum of terms near ``2/v`` (7e7; 5e16)
    that cancel, so both sides' results are rounding of those terms: JAX and funcgrad 4.0
    apart in float32 and in float64 alike, and JAX's forward-over-reverse answer agrees with
    its reverse one, so neither earlier judgement could tell. Here at tiny ``v`` directly
    (JAX 0.12's sinc gives exact zeros at integers, where the second derivative is nan)."""
    program, case = _case("jnp.cbrt(x1 ** 3)", dtype, SCALES * TINY[dtype])
    fg_target, ref_target, args, ct, weights = case
    first = fuzz._judge(fg_target, ref_target, args, ct, "default")
    assert first.status == "mismatch" and first.detail.startswith("cotangent"), first
    assert fuzz._against_forward_over_reverse(program, ref_target, args, ct, first) == first
    if dtype != "float64":
        assert fuzz._against_float64(program, ref_target, args, ct, weights, first) == first
    judged = fuzz._against_moved_rounding(program, ref_target, args, ct, weights, first)
    assert judged.status == "ok", judged
    assert fuzz.judge(program, case).status == "ok"


def test_the_fuzz_finding_itself():
    program = fuzz.generate(424279, 6558)
    outcome = fuzz.run(program, 424279, 6558)
    if jax.__version_info__ >= (0, 12):  # sinc(1) is exactly 0: JAX's answer is not finite
        assert outcome.status == "skip" and "not finite" in outcome.detail, outcome
    else:
        assert outcome.status == "ok", outcome


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_moved_rounding_still_catches_a_wrong_second_order_rule(monkeypatch, dtype):
    """cbrt(v**3) + sin(v) at tiny and at normal v: with a cos rule 10% off (sin's second
    order wrong, its first right), the normal-sized elements are off by far more than JAX's
    spread there, which is a few ulps."""
    values = np.concatenate([SCALES * TINY[dtype], SCALES])
    program, case = _case("jnp.cbrt(x1 ** 3) + jnp.sin(x1)", dtype, values)
    assert fuzz.judge(program, case).status == "ok"
    right = _registry.VJP_RULES[lax.cos_p]

    def wrong(g, ans, x, **params):
        return tuple(1.1 * c for c in right.rule(g, ans, x, **params))

    with monkeypatch.context() as m:
        m.setitem(_registry.VJP_RULES, lax.cos_p, _registry.Entry(wrong, right.forward))
        outcome = fuzz.judge(*_case("jnp.cbrt(x1 ** 3) + jnp.sin(x1)", dtype, values))
    assert outcome.status == "mismatch", outcome


def _max_spread(fun, x, y):
    ct = jnp.asarray(np.random.default_rng(0).normal(size=x.shape), x.dtype)
    return _rounding.spread(lambda a, c: fuzz._value_and_pullback(fun, a, c), (x, y), ct)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32, jnp.bfloat16])
def test_a_tie_between_equal_values_stays_a_tie(dtype):
    """Equal values move alike (the step is a hash of the value), so ``max(3x, 3y)`` at
    ``x == y`` keeps its ties in every sample, and the spread is a few ulps."""
    x = jnp.asarray([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 0.7, 1.3], dtype)
    _, spread, kept = _max_spread(lambda a, b: jnp.maximum(a * 3.0, b * 3.0), x, x)
    assert kept == _rounding.SAMPLES
    eps = float(jnp.finfo(dtype).eps)
    assert max(float(np.max(s)) for s in spread) <= 16 * eps * 6


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32, jnp.bfloat16])
def test_a_sample_that_breaks_a_tie_is_dropped(dtype):
    """``max(3x / 3, y)`` at ``x == y``: moving the roundings of ``3x`` and ``/ 3`` breaks
    the tie in most samples; those are dropped, so too few remain to judge by."""
    x = jnp.asarray([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 0.7, 1.3, 0.1, 1.7], dtype)
    x = x[np.asarray(x * 3.0 / 3.0 == x)]  # a tie where 3x / 3 rounds back to x
    assert x.size >= 5
    _, _, kept = _max_spread(lambda a, b: jnp.maximum(a * 3.0 / 3.0, b), x, x)
    assert kept < _rounding.SAMPLES // 2


@pytest.mark.parametrize(
    "expr", ["jnp.maximum(x1 * 3.0, x2 * 3.0)", "jnp.maximum(x1 * 3.0 / 3.0, x2)"]
)
def test_moved_rounding_still_catches_a_wrong_tie(monkeypatch, expr):
    """A max rule that gives the whole cotangent to the first operand at a tie (JAX splits
    it) is a mismatch no judgement passes, whether the samples keep the tie or drop it."""
    values = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]
    assert fuzz.judge(*_case(expr, "float64", values, "plain", 2)).status == "ok"
    right = _registry.VJP_RULES[lax.max_p]

    def first_wins(g, ans, x, y, **params):
        gx, gy = right.rule(g, ans, x, y, **params)
        return gx + gy * (x == y), gy * (x != y)

    with monkeypatch.context() as m:
        m.setitem(_registry.VJP_RULES, lax.max_p, _registry.Entry(first_wins, right.forward))
        outcome = fuzz.judge(*_case(expr, "float64", values, "plain", 2))
    assert outcome.status == "mismatch", outcome


def test_low_precision_program_must_also_pass_raised_to_float64(monkeypatch):
    """Fuzz seed 777 program 150 rounds a float32 cotangent through bfloat16 (``v17``), so
    JAX's float32 cotangent moves by a percent or two when its rounding does. A dot_general
    rule 1% off hid inside that spread; raised to float64 the program has no bfloat16
    rounding, and there the wrong rule is far outside JAX's spread."""
    program = fuzz.generate(777, 150)
    assert "bfloat16" in program.source()
    assert fuzz.run(program, 777, 150).status == "ok"
    right = _registry.VJP_RULES[lax.dot_general_p]

    def wrong(g, ans, x, y, **params):
        return tuple(1.01 * c for c in right.rule(g, ans, x, y, **params))

    with monkeypatch.context() as m:
        m.setitem(_registry.VJP_RULES, lax.dot_general_p, _registry.Entry(wrong, right.forward))
        fg_target, ref_target, args, ct, weights = case = fuzz.setup(program, 777, 150)
        first = fuzz._judge(fg_target, ref_target, args, ct, "default")
        assert first.status == "mismatch", first
        assert fuzz._moved_within(ref_target, args, ct, *first.values)  # as drawn: hidden
        assert fuzz.judge(program, case).status == "mismatch"


def test_value_rounded_through_a_bfloat16_cast_xla_fuses_away():
    """Fuzz seed 424284 program 2549 (grad of grad, float32, JAX 0.12): the first gradient
    passes a float32 -> bfloat16 -> float32 cast. JAX's program compiled differs from the
    same program run op by op by up to 0.0117 (XLA's fusion keeps float32 where the program
    rounds to bfloat16), and funcgrad's value is JAX's op-by-op one; every moved sample
    changes a comparison (heaviside, where, copysign) and is dropped, so that difference
    alone is JAX's spread. funcgrad's float64 program agrees with JAX's."""
    program = fuzz.generate(424284, 2549)
    fg_target, ref_target, args, ct, weights = fuzz.setup(program, 424284, 2549)
    first = fuzz._judge(fg_target, ref_target, args, ct, "default")
    assert fuzz.run(program, 424284, 2549).status == "ok"
    if first.status == "ok":  # XLA may fuse (and round) both programs alike
        return
    assert first.detail.startswith("forward value"), first
    _, _, kept = _rounding.spread(
        lambda a, c: fuzz._value_and_pullback(ref_target, a, c), tuple(args), ct
    )
    assert kept < _rounding.SAMPLES // 2
    assert fuzz._moved_within(ref_target, args, ct, *first.values)
