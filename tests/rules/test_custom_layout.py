"""funcgrad/rules/_custom_layout.py: placing a custom_jvp rule's outputs as the call declares.

The programs that need it are in tests/fuzz/test_regressions.py (fuzz seed 424290 program
6505 and seed 424254 program 5137); here, the pieces: which layouts fit, that ``unapply`` is
the transpose of ``apply``, which layout is chosen when values cannot tell, and when the
function is not evaluated on generated values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad
from funcgrad.rules import _custom_layout as layout


def test_fits_lists_each_distinct_data_layout_once():
    assert layout.fits((2, 3), (2, 3)) == [(0, 1)]  # no other placement keeps the shape
    assert layout.fits((4, 4, 1), (4, 4, 1)) == [(0, 1, 2), (1, 0, 2)]
    assert layout.fits((2, 4, 1), (4, 2, 1)) == [(1, 0, 2)]
    assert layout.fits((1, 3), (1, 3)) == [(0, 1)]  # moving a size-1 axis moves no data
    assert layout.fits((5,), (2, 5)) == [(None, 0)]  # the batch axis broadcast
    assert len(layout.fits((0, 2), (2, 0, 2))) == 1  # an empty output: nothing to place
    assert len(layout.fits((2, 3, 4), (3, 4, 2))) == 1  # the shapes place each axis
    assert layout.fits((4, 2, 4), (2, 4, 4)) == [(1, 0, 2), (1, 2, 0)]  # two batch axes?
    assert sorted(layout.fits((3,), (3, 3)), key=str) == [(0, None), (None, 0)]
    assert layout.fits((2, 3), (5, 7)) == []


@pytest.mark.parametrize(
    "lay,rule_shape,declared",
    [
        ((1, 0, 2), (2, 4, 1), (4, 2, 1)),
        ((2, 0, 1), (3, 4, 5), (5, 3, 4)),
        ((0, None), (3,), (3, 2)),
    ],
)
def test_unapply_is_the_transpose_of_apply(lay, rule_shape, declared):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=rule_shape))
    ct = jnp.asarray(rng.normal(size=declared))
    out, pullback = jax.vjp(lambda x: layout.apply(lay, x, declared), x)
    assert out.shape == declared
    np.testing.assert_allclose(layout.unapply(lay, ct, rule_shape), pullback(ct)[0], rtol=1e-12)
    np.testing.assert_array_equal(layout._apply_np(lay, np.asarray(x), declared), out)


def test_only_a_placement_that_reproduces_the_function_decides():
    lays = [(0, 1), (1, 0)]
    f64, bf16 = np.dtype("float64"), jnp.dtype(jnp.bfloat16)
    assert layout._best(lays, [0.5, 0.0], f64) == ((1, 0), [(1, 0)])
    assert layout._best(lays, [0.0, 0.0], f64) == (None, lays)  # cannot tell
    assert layout._best(lays, [0.0, 1e-9], f64) == ((0, 1), [(0, 1)])  # one within rounding
    assert layout._best(lays, [1e-10, 1e-9], f64) == (None, lays)  # both another formula
    assert layout._best(lays, [0.5, 0.45], f64) == (None, [])  # neither: draws not faithful
    assert layout._best(lays, [np.inf, np.inf], f64) == (None, [])
    assert layout._tolerance(np.dtype("float32")) == pytest.approx(3.45e-4, rel=1e-2)
    # bfloat16's tolerance (0.088) admits a transposed 2x2 of softplus values 0.05 apart
    # (fuzz seed 424293 program 2982); the placement that reproduces them exactly decides.
    assert layout._best(lays, [0.0, 0.05], bf16) == ((0, 1), [(0, 1)])
    assert layout._best(lays, [0.04, 0.05], bf16) == (None, lays)


def _jvp_eqn(f, x):
    (eqn,) = [e for e in jax.make_jaxpr(f)(x).jaxpr.eqns if e.primitive.name == "custom_jvp_call"]
    return eqn


def test_elementwise_functions_are_not_evaluated():
    """relu on a square batch: the layout is proved by the jaxprs' structure."""
    eqn = _jvp_eqn(jax.vmap(jax.nn.relu), jnp.ones((3, 3)))
    assert layout._aligned(eqn.params["call_jaxpr"].jaxpr, eqn.params["call_jaxpr"].jaxpr)
    eqn = _jvp_eqn(jax.vmap(_cumsum_with_rule), jnp.ones((3, 3)))
    assert not layout._aligned(eqn.params["call_jaxpr"].jaxpr)


def test_a_uniform_value_of_another_shape_keeps_a_jaxpr_elementwise():
    """softplus's rule under vmap broadcasts a zero to (1, 1, 2), then to (2, 1, 1, 2)
    (fuzz seed 424293 program 2982): one value in every element places nothing. An input
    broadcast the same way does place something."""
    x = jnp.ones((2, 1, 1, 2))
    zero = lambda x: jnp.broadcast_to(jnp.zeros((1, 1, 2)), x.shape)  # noqa: E731
    uniform = jax.make_jaxpr(lambda x: jnp.where(x > 1.0, zero(x) + 1.0, jnp.exp(x)))(x)
    assert layout._aligned(uniform.jaxpr)
    varying = jax.make_jaxpr(lambda x, y: x * jnp.broadcast_to(y, x.shape))(x, x[0])
    assert not layout._aligned(varying.jaxpr)


@jax.custom_jvp
def _cumsum_with_rule(x):
    return jnp.cumsum(x, axis=0)


@_cumsum_with_rule.defjvp
def _cumsum_jvp(primals, tangents):
    return _cumsum_with_rule(primals[0]), jnp.cumsum(tangents[0], axis=0)


def _with_print(x):
    jax.debug.print("inside {}", jnp.sum(x))
    return jnp.cumsum(x, axis=0)


def _with_while(x):
    return lax.while_loop(
        lambda c: c[1] < 3, lambda c: (jnp.cumsum(c[0], axis=0), c[1] + 1), (x, 0)
    )[0]


@pytest.mark.parametrize("g", [_with_print, _with_while], ids=["effect", "while"])
def test_calls_with_effects_or_while_loops_are_not_evaluated(g, capsys):
    f = jax.custom_jvp(g)
    f.defjvp(lambda p, t: (f(p[0]), jnp.cumsum(t[0], axis=0)))
    eqn = _jvp_eqn(jax.vmap(f), jnp.ones((3, 3)))
    assert not layout._evaluable(eqn.params["call_jaxpr"].jaxpr)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    h = lambda x: jnp.sum(jax.vmap(f)(x) ** 2)  # noqa: E731
    capsys.readouterr()
    want = jax.grad(h)(x)
    jax.effects_barrier()
    printed_by_jax = capsys.readouterr().out.count("inside")
    np.testing.assert_allclose(funcgrad.grad(h)(x), want, rtol=1e-10)
    jax.effects_barrier()
    assert capsys.readouterr().out.count("inside") == printed_by_jax  # never for a probe


def test_a_square_custom_jvp_outside_vmap_keeps_its_layout():
    """Not batched, square: evaluated (cumsum is not elementwise), the identity wins."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    h = lambda x: jnp.sum(jnp.sin(_cumsum_with_rule(x)) * x)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(h)(x), jax.grad(h)(x), rtol=1e-10)


def _scan_then_cumprod_scaled(p, scale):
    def body(c, x):
        v = jnp.arcsinh(x)
        return jnp.broadcast_to(jnp.sum(v), (2, 1)).astype(p.dtype), v

    _, ys = lax.scan(body, p, jnp.concatenate([p, p], axis=0))
    return jnp.cumprod(ys, axis=0) * scale


def test_a_batched_call_whose_values_cannot_tell_the_layout_is_refused_not_guessed():
    """The fuzz finding's function (tests/fuzz/test_regressions.py) scaled by 0: its output
    is zero whatever the placement, at batch 4 the shapes agree too, and the rule's tangent
    differs between the two placements. Keeping the rule's layout gave a gradient 2.0 off
    jax.grad's (found by porting JAX's custom_jvp tests); funcgrad now says it cannot tell."""
    f = jax.custom_jvp(lambda p: _scan_then_cumprod_scaled(p, 0.0))

    @f.defjvp
    def f_jvp(primals, tangents):
        out, t = jax.jvp(lambda p: _scan_then_cumprod_scaled(p, 1.0), primals, tangents)
        return out * 0.0, 2.0 * t

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 2, 1)))
    w = jnp.asarray(rng.normal(size=(4, 4, 1)))
    h = lambda x: jnp.sum(jax.vmap(f)(x) * w)  # noqa: E731
    with pytest.raises(NotImplementedError, match="cannot tell where its JVP rule put"):
        funcgrad.grad(h)(x)
    x2 = x[:2]  # batch 2: the shapes decide
    w2 = w[:2]
    h2 = lambda x: jnp.sum(jax.vmap(f)(x) * w2)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(h2)(x2), jax.grad(h2)(x2), rtol=1e-10)


def test_a_symmetric_output_whose_tangent_is_symmetric_up_to_rounding_is_not_refused():
    """Fuzz seed 424293 program 870, shrunk (no vmap at all): ``inv(r @ r.T + 3 I)`` is
    symmetric, so both placements of the square output reproduce it, and its tangent is
    symmetric only up to rounding. funcgrad refused ("cannot tell where its JVP rule put
    the batch axis"); tangents that agree within the tolerance now decide nothing."""

    def g(a, b):
        r = jnp.maximum(a, 0.0)
        return jnp.linalg.inv(r @ r.T + 3 * jnp.eye(3, dtype=r.dtype))

    f = jax.custom_jvp(g)
    f.defjvp(lambda p, t: (g(*p), 2.0 * jax.jvp(g, p, t)[1]))
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(3, 1)))
    w = jnp.asarray(rng.normal(size=(3, 3)))
    h = lambda x: jnp.sum(f(x, x) * w)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(h)(x), jax.grad(h)(x), rtol=1e-10)
    xs = jnp.asarray(rng.normal(size=(3, 3, 1)))  # and batched: 3 is also the output's size
    ws = jnp.asarray(rng.normal(size=(3, 3, 3)))
    hv = lambda xs: jnp.sum(jax.vmap(lambda x: f(x, x))(xs) * ws)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(hv)(xs), jax.grad(hv)(xs), rtol=1e-10)


def test_an_operand_the_rule_reads_as_a_constant_keeps_the_rules_layout():
    """Inside a scan, a custom_jvp function's closed-over array reaches the call as an
    operand while its rule reads the array itself (JAX test test_initial_style_vmap_2):
    generated operands then make the function and the rule disagree in every placement, so
    the draws decide nothing and the rule's layout is kept (it is right here), where an
    earlier version refused the program."""
    y = jnp.arange(1.0, 4.0)

    @jax.custom_jvp
    def f(x):
        return 3 * x * jnp.sum(y)

    f.defjvp(lambda p, t: (f(p[0]), 2 * t[0]))

    def foo(x):
        return lax.scan(lambda c, _: (f(c), None), x, None, length=1)[0]

    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3)))
    loss = lambda x: jnp.sum(jnp.sin(jax.vmap(jax.vmap(foo))(x)) * x)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(loss)(x), jax.grad(loss)(x), rtol=1e-12)


def _seen_batched(monkeypatch):
    """Record the ``batched`` that each custom_jvp call's placement is decided with."""
    seen = []
    choose = layout.choose

    def spy(*args, batched=True, **kwargs):
        seen.append(batched)
        return choose(*args, batched=batched, **kwargs)

    monkeypatch.setattr(layout, "choose", spy)
    return seen


def _scan_of(f):
    return lambda x: lax.scan(lambda c, _: (f(c), None), x, None, length=2)[0]


_PER_EXAMPLE = {
    "plain": lambda f: f,
    "jit": jax.jit,
    "scan": _scan_of,
    "checkpoint": jax.checkpoint,
}
_VMAPPED = {
    "vmap": jax.vmap,
    "jit_of_vmap": lambda f: jax.jit(jax.vmap(f)),
    "vmap_of_jit": lambda f: jax.vmap(jax.jit(f)),
    "vmap_of_scan": lambda f: jax.vmap(_scan_of(f)),
    "scan_of_vmap": lambda f: _scan_of(jax.vmap(f)),
    "vmap_of_checkpoint": lambda f: jax.vmap(jax.checkpoint(f)),
}


@pytest.mark.parametrize("remat", [None, "auto"])
@pytest.mark.parametrize("wrap", [*_PER_EXAMPLE, *_VMAPPED])
def test_whether_a_vmap_batched_the_call_is_seen_through_enclosing_equations(
    monkeypatch, wrap, remat
):
    """funcgrad keeps the name stack as JAX's jaxpr evaluation does (``compat.eqn_context``),
    so a vmap outside a jit, scan or checkpoint is seen inside it, also where the memory
    planner splices jit bodies into their caller (``remat="auto"``); with no vmap the rule's
    layout is taken with nothing evaluated."""
    seen = _seen_batched(monkeypatch)
    batched = wrap in _VMAPPED
    g = (_VMAPPED if batched else _PER_EXAMPLE)[wrap](_cumsum_with_rule)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3, 3) if batched else (3, 3)))
    h = lambda x: jnp.sum(jnp.sin(g(x)) * x)  # noqa: E731
    want = jax.grad(h)(x)
    np.testing.assert_allclose(funcgrad.grad(h, remat=remat)(x), want, rtol=1e-10)
    np.testing.assert_allclose(jax.jit(funcgrad.grad(h, remat=remat))(x), want, rtol=1e-10)
    assert seen and all(s == batched for s in seen), seen


def test_a_vmap_is_seen_in_a_second_order_walk(monkeypatch):
    """grad of grad: the inner walk re-runs the vmapped call under its name stack, so the
    outer walk sees the vmap too."""
    seen = _seen_batched(monkeypatch)
    h = lambda x: jnp.sum(jnp.sin(jax.vmap(_cumsum_with_rule)(x)) ** 2)  # noqa: E731
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 3, 3)))
    outer = lambda x: jnp.sum(jnp.cos(funcgrad.grad(h)(x)))  # noqa: E731
    want = jax.grad(lambda x: jnp.sum(jnp.cos(jax.grad(h)(x))))(x)
    np.testing.assert_allclose(funcgrad.grad(outer)(x), want, rtol=1e-9)
    assert seen and all(seen), seen


def test_a_straight_through_rule_on_a_symmetric_output_outside_vmap_is_taken_as_is():
    """``x @ x.T`` is symmetric for every input, its straight-through rule's tangent is not:
    no value can tell a transposed placement apart, and outside vmap there is nothing to
    place (funcgrad refused before it kept the name stack). Under vmap it stays refused."""

    @jax.custom_jvp
    def gram(x):
        return x @ x.T

    gram.defjvp(lambda p, t: (gram(p[0]), t[0] @ lax.stop_gradient(p[0]).T))
    rng = np.random.default_rng(5)
    x, w = jnp.asarray(rng.normal(size=(3, 2))), jnp.asarray(rng.normal(size=(3, 3)))
    h = lambda x: jnp.sum(gram(x) * w)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(h)(x), jax.grad(h)(x), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(funcgrad.grad(h))(x), jax.grad(h)(x), rtol=1e-12)
    xs = jnp.asarray(rng.normal(size=(3, 3, 2)))
    ws = jnp.asarray(rng.normal(size=(3, 3, 3)))
    hv = lambda xs: jnp.sum(jax.vmap(gram)(xs) * ws)  # noqa: E731
    with pytest.raises(NotImplementedError, match="is batched .jax.vmap., and funcgrad cannot"):
        funcgrad.grad(hv)(xs)


@pytest.mark.parametrize("inner_vmap", [False, True], ids=["per_example", "vmap_inside"])
def test_per_example_gradients_with_a_square_custom_jvp(inner_vmap):
    """``jax.vmap(funcgrad.grad(loss), in_axes=(None, 0))``: funcgrad walks the per-example
    program with the vmap's tracers as values. The outer vmap does not batch the calls it
    walks, so nothing is evaluated; a call that a vmap inside the loss batched is probed,
    and where the probe's values are the outer vmap's tracers it keeps the rule's layout.
    Evaluating the call there crashed (TracerArrayConversionError) before."""
    cs = jax.vmap(_cumsum_with_rule) if inner_vmap else _cumsum_with_rule

    def loss(w, x):
        return jnp.sum(jnp.sin(cs(w * x)) * x)

    rng = np.random.default_rng(6)
    shape = (3, 3, 3) if inner_vmap else (3, 3)
    w, xs = jnp.asarray(rng.normal(size=shape)), jnp.asarray(rng.normal(size=(5, *shape)))
    want = jax.vmap(jax.grad(loss), in_axes=(None, 0))(w, xs)
    got = jax.vmap(funcgrad.grad(loss), in_axes=(None, 0))(w, xs)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    got = jax.jit(jax.vmap(funcgrad.grad(loss), in_axes=(None, 0)))(w, xs)
    np.testing.assert_allclose(got, want, rtol=1e-10)
