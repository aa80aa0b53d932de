"""The backward pass itself: fan-out sums, symbolic zeros, literals, odd graph shapes, depth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad


def assert_vjp_matches(f, *args, seed=0, rtol=1e-10):
    out, pull = funcgrad.vjp(f, *args)
    out_ref, pull_ref = jax.vjp(f, *args)
    rng = np.random.default_rng(seed)
    ct = jax.tree.map(
        lambda o: jnp.asarray(rng.standard_normal(np.shape(o)), jnp.result_type(o)), out_ref
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol), out, out_ref)
    got, want = pull(ct), pull_ref(ct)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12), got, want)
    return got


X = jnp.linspace(-1.5, 2.0, 12).reshape(3, 4)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: x * x,
        lambda x: x + x,
        lambda x: jnp.sin(x) + jnp.sin(x),
        lambda x: x * x * x - x,
        lambda x: (x + 2.0) * (x - 3.0) / (x * x + 1.0),
        lambda x: jnp.tanh(x) * jnp.exp(jnp.tanh(x)) + jnp.tanh(x),
    ],
    ids=["x*x", "x+x", "sin+sin", "x*x*x-x", "rational", "tanh-thrice"],
)
def test_fan_out_sums_every_use(f):
    assert_vjp_matches(f, X)


def test_one_variable_feeding_three_layers():
    rng = np.random.default_rng(0)
    ws = [jnp.asarray(rng.standard_normal((4, 4))) for _ in range(3)]

    def f(x, ws):
        h = jnp.tanh(x @ ws[0])
        return jnp.sum(jnp.tanh(h @ ws[1]) + jnp.tanh(h @ ws[2]) * h)

    assert_vjp_matches(f, X, ws)


def test_seed_branch_sum_gives_2x_minus_2y():
    x, y = jnp.float64(3.0), jnp.float64(-1.5)
    gx, gy = funcgrad.grad(lambda x, y: (x + y) * (x - y), argnums=(0, 1))(x, y)
    assert gx == 2 * x and gy == -2 * y


def test_literals_unused_inputs_and_outputs_that_are_inputs():
    def f(x, unused, y):
        return x, x, 2.0 * y + 1.0, y

    got = assert_vjp_matches(f, X, X, X[0])
    np.testing.assert_array_equal(got[1], jnp.zeros_like(X))  # unused input: zero, not error


def test_stop_gradient_and_integer_paths_cost_nothing_and_give_zero():
    def f(x):
        i = jnp.argmax(x, axis=1)
        return jnp.sum(jax.lax.stop_gradient(x) * x) + jnp.sum(i.astype(x.dtype))

    assert_vjp_matches(lambda x: f(x), X)


def test_stop_gradient_branch_is_symbolic_zero_in_the_program():
    f = funcgrad.grad(lambda x: jnp.sum(jax.lax.stop_gradient(jnp.exp(x)) * x))
    jaxpr = jax.make_jaxpr(f)(X)
    # The backward pass must not multiply anything into the stopped branch.
    assert sum(e.primitive.name == "exp" for e in jaxpr.jaxpr.eqns) == 1


def test_multiple_outputs_and_pytrees():
    def f(p):
        return {"a": jnp.sin(p["w"]) @ p["b"], "b": (p["w"].sum(), jnp.cos(p["b"]))}

    params = {"w": X, "b": jnp.arange(4.0)}
    assert_vjp_matches(f, params)


def test_ten_thousand_equation_chain_is_not_recursive():
    def f(x):
        for _ in range(5000):
            x = jnp.sin(x) * 0.999
        return x

    jaxpr = jax.make_jaxpr(f)(1.0)
    assert len(jaxpr.jaxpr.eqns) >= 10_000
    out, pull = funcgrad.vjp(f, jnp.float64(0.3))
    (g,) = pull(jnp.float64(1.0))
    _, pull_ref = jax.vjp(f, jnp.float64(0.3))
    np.testing.assert_allclose(g, pull_ref(jnp.float64(1.0))[0], rtol=1e-10)


def test_nested_jit_custom_jvp_and_remat():
    @jax.jit
    def inner(x):
        return jax.nn.softplus(x) * jax.nn.relu(x) + jnp.sinc(x)

    f = jax.checkpoint(lambda x: jnp.sum(inner(x) ** 2))
    assert_vjp_matches(f, X)


@pytest.mark.parametrize("x0", [0.0, -1.0, 2.0])
def test_custom_jvp_functions_keep_their_own_derivative_at_kinks(x0):
    x = jnp.float64(x0)
    for fn in (jax.nn.relu, jnp.sinc, jax.nn.softplus, jax.nn.gelu, jax.nn.silu):
        np.testing.assert_allclose(funcgrad.grad(fn)(x), jax.grad(fn)(x), rtol=1e-12)
    assert funcgrad.grad(jax.nn.relu)(jnp.float64(0.0)) == 0.0


def test_custom_vjp_runs_the_users_bwd():
    @jax.custom_vjp
    def clip_gradient(x):
        return x

    def fwd(x):
        return x, None

    def bwd(_, g):
        return (jnp.clip(g, -0.1, 0.1),)

    clip_gradient.defvjp(fwd, bwd)
    f = lambda x: jnp.sum(clip_gradient(x) * 5.0)  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(f)(X), jnp.full_like(X, 0.1))


def test_custom_vjp_with_residuals_and_two_inputs():
    @jax.custom_vjp
    def f(x, y):
        return jnp.sin(x) * y

    f.defvjp(
        lambda x, y: (jnp.sin(x) * y, (jnp.cos(x), y, jnp.sin(x))),
        lambda r, g: (g * r[0] * r[1], g * r[2]),
    )
    assert_vjp_matches(lambda x, y: f(x, y * 2.0), X, X + 1.0)


def test_cond_both_branches():
    def f(x, s):
        return lax.cond(s > 0, lambda x: jnp.sin(x) * x, lambda x: jnp.exp(x).sum() + x, x)

    assert_vjp_matches(f, X, 1.0)
    assert_vjp_matches(f, X, -1.0)


def test_switch_with_three_branches_and_closure():
    w = jnp.arange(4.0)

    def f(x, i):
        branches = [lambda x: x * w[None, :], jnp.tanh, lambda x: x * (x @ w)[:, None]]
        return lax.switch(i, branches, x)

    for i in range(3):
        assert_vjp_matches(lambda x, i=i: f(x, i), X)


def test_scan_rnn_and_reverse_scan():
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.standard_normal((4, 4))) * 0.5
    xs = jnp.asarray(rng.standard_normal((7, 4)))

    def rnn(w, xs, reverse):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h.sum()

        return lax.scan(step, jnp.zeros(4), xs, reverse=reverse)

    assert_vjp_matches(lambda w, xs: rnn(w, xs, False), w, xs)
    assert_vjp_matches(lambda w, xs: rnn(w, xs, True), w, xs)


def test_scan_with_integer_carry_and_unused_outputs():
    def f(x):
        def body(c, _):
            i, v = c
            return (i + 1, v * jnp.sin(v) + i.astype(v.dtype)), None

        (_, v), _ = lax.scan(body, (0, x), None, length=5)
        return v

    assert_vjp_matches(f, X)


def _dead_scan_and_cond_outputs():
    """Loops and branches with an output nothing uses, fed by cbrt at 0 (infinite slope):
    JAX drops such an output from its linear program, so no zero is walked back into the
    slope; where the output is used, zero times the slope is nan on both sides."""

    def scan_of(body, out="ys", length=3):
        def f(x):
            c, ys = lax.scan(lambda c, _: body(c, x), jnp.cbrt(x), None, length=length)
            return {"ys": ys, "c": c, "both": c + ys.sum(0)}[out]

        return f

    def const_only_in_dead_carry(x):
        k = jnp.cbrt(x)
        return lax.scan(lambda c, _: (k * c, x**2), x, None, length=2)[1]

    def dead_carry_reading_live_carry(x):
        body = lambda cd, _: ((jnp.cbrt(cd[1]), x), x**2 * cd[1])  # noqa: E731
        return lax.scan(body, (x, x), None, length=3)[1]

    def dead_carry_from_xs(x):
        return lax.scan(lambda c, xt: (jnp.cbrt(xt) * c, x**2), x, jnp.stack([x, x]))[1]

    def unused_stack_from_const(x):
        k = jnp.cbrt(x)
        return lax.scan(lambda c, _: (c, (x**2, k * 2)), x, None, length=2)[1][0]

    def cond_unused_output(x):
        return lax.cond(x[1] > 0, lambda x: (x**2, jnp.cbrt(x)), lambda x: (x, x), x)[0]

    def cond_unused_operand(x):
        branch = lambda x, y: (x**2, y * 2)  # noqa: E731
        return lax.cond(x[1] > 0, branch, branch, x, jnp.cbrt(x))[0]

    def ignores(y, *unread):
        # a cond that takes operands its branches never read
        return lax.cond(y[1] > 0, lambda y, *_: y**2, lambda y, *_: y * 3.0, y, *unread)

    def const_into_unread_operand(x):
        k = jnp.cbrt(x)
        return lax.fori_loop(0, 2, lambda i, c: ignores(c, k), x)

    def xs_into_unread_operand(x):
        return lax.scan(lambda c, xt: (ignores(c, xt), c), x, jnp.cbrt(jnp.stack([x, x])))[1]

    def dead_carry_into_unread_operand(x):
        body = lambda c, _: (x**4, ignores(x, c))  # noqa: E731
        return lax.scan(body, jnp.cbrt(x), None, length=2)[1]

    def operand_into_nested_unread_operand(x):
        branch = lambda x, y: ignores(x, y)  # noqa: E731
        return lax.cond(x[0] > 0, branch, branch, x, jnp.cbrt(x))

    return {
        "overwritten-carry": scan_of(lambda c, x: (x**4, x**4)),
        "carry-times-zero": scan_of(lambda c, x: (x**4 + 0 * c, x**4)),
        "overwritten-carry-used": scan_of(lambda c, x: (x**4, x**4), "c"),
        "overwritten-carry-used-both": scan_of(lambda c, x: (x**4, x**4), "both"),
        "zero-steps": scan_of(lambda c, x: (x**4, x**4), "c", 0),
        "ys-read-carry": scan_of(lambda c, x: (x**4, c)),
        "carry-passed-through": scan_of(lambda c, x: (c, x**4)),
        "const-only-in-dead-carry": const_only_in_dead_carry,
        "dead-carry-reading-live-carry": dead_carry_reading_live_carry,
        "dead-carry-from-xs": dead_carry_from_xs,
        "unused-stack-from-const": unused_stack_from_const,
        "cond-unused-output": cond_unused_output,
        "cond-unused-operand": cond_unused_operand,
        "const-into-unread-cond-operand": const_into_unread_operand,
        "xs-into-unread-cond-operand": xs_into_unread_operand,
        "dead-carry-into-unread-cond-operand": dead_carry_into_unread_operand,
        "operand-into-nested-unread-cond-operand": operand_into_nested_unread_operand,
    }


@pytest.mark.parametrize("name", sorted(_dead_scan_and_cond_outputs()))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_unused_loop_and_branch_outputs_walk_no_zeros_back(name, jit):
    f = _dead_scan_and_cond_outputs()[name]
    x = jnp.array([0.0, 1.0, 2.0])

    def wrap(grad):
        def loss(x):
            out = f(x)
            return jnp.sum(out * jnp.linspace(1.0, 2.0, out.size).reshape(out.shape))

        g = grad(loss)
        return jax.jit(g) if jit else g

    np.testing.assert_allclose(wrap(funcgrad.grad)(x), wrap(jax.grad)(x), rtol=1e-12)


def test_fori_loop_with_static_bounds():
    assert_vjp_matches(lambda x: lax.fori_loop(0, 4, lambda i, c: jnp.sin(c) * x, x), X)


def test_while_loop_is_refused_with_the_fix():
    def f(x):
        return lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 2.0, c[1] + 1), (x, 0))[0]

    with pytest.raises(funcgrad.NonDifferentiableError, match="while_loop.*fori_loop"):
        funcgrad.grad(lambda x: f(x).sum())(X)

    # Forward-only use of a while_loop (nothing differentiated flows through it) is fine.
    def g(x):
        n = lax.while_loop(lambda i: i < 3, lambda i: i + 1, 0)
        return jnp.sum(x * n)

    assert funcgrad.grad(g)(X)[0, 0] == 3.0


# ---------------------------------------------------------------- rule-parameter adapter


def _scale_primitive(name):
    prim = jax.extend.core.Primitive(name)
    prim.def_impl(lambda x, *, scale, **params: x * scale)
    prim.def_abstract_eval(lambda x, **params: jax.core.ShapedArray(x.shape, x.dtype))
    return prim


def test_a_param_a_rule_does_not_name_is_dropped_not_a_type_error():
    """A JAX release adding a keyword param (0.12's out_sharding) must not break a rule."""
    prim = _scale_primitive("fg_test_scale_new_param")

    @funcgrad.register_vjp(prim)
    def scale_vjp(g, ans, x, *, scale):  # names only what it reads
        del ans, x
        return (g * scale,)

    def f(x):
        return jnp.sum(prim.bind(x, scale=3.0, out_sharding=None, added_in_a_new_release=1))

    np.testing.assert_allclose(funcgrad.grad(f)(jnp.ones(3)), 3.0 * np.ones(3))


def test_a_param_a_rule_needs_but_jax_renamed_is_named_in_the_error():
    prim = _scale_primitive("fg_test_scale_renamed_param")

    @funcgrad.register_vjp(prim)
    def scale_vjp(g, ans, x, *, factor):
        del ans, x
        return (g * factor,)

    def f(x):
        return jnp.sum(prim.bind(x, scale=3.0))

    with pytest.raises(TypeError, match=r"reads the parameter\(s\) \['factor'\].*'scale'"):
        funcgrad.grad(f)(jnp.ones(3))
