"""Regressions for the nested-jaxpr rules (issue 9): custom_vjp closing over constants,
odeint and a DEQ fixed point, second order through checkpoint, and every remat policy around
scan, cond and plain code.  Each compares with jax.grad on the same program."""

import jax
import jax.ad_checkpoint as adc
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.experimental.ode import odeint

import funcgrad

X = jnp.array([0.3, -0.7, 1.1])
Y = jnp.array([0.5, 2.0, -1.5])


def assert_same_grads(f, *args, argnums=None):
    argnums = tuple(range(len(args))) if argnums is None else argnums
    want = jax.grad(f, argnums)(*args)
    got = funcgrad.grad(f, argnums)(*args)
    for k, (w, g) in enumerate(zip(want, got, strict=True)):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12, err_msg=f"argument {k}")


# ---------------------------------------------------------------- custom_vjp with constants

CONSTS = [jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, -1.0, 2.0]), jnp.array([2.0, 0.0, 1.0])]


def _custom_vjp_fn(n_consts, residual):
    """f(x, y) = sum(c1 * ... * x * y) closing over ``n_consts`` arrays; its fwd keeps as a
    residual an input (x), an output (the value itself) or a new value (c * y)."""
    cs = CONSTS[:n_consts]

    def scale():
        return jnp.prod(jnp.stack(cs), axis=0) if cs else jnp.ones(3)

    @jax.custom_vjp
    def f(x, y):
        return jnp.sum(scale() * x * y)

    def fwd(x, y):
        out = f(x, y)
        kept = {"input": (x, y), "output": (out, x, y), "new": (scale() * y, x)}[residual]
        return out, kept

    def bwd(res, g):
        if residual == "input":
            x, y = res
            return g * scale() * y, g * scale() * x
        if residual == "output":
            _, x, y = res
            return g * scale() * y, g * scale() * x
        sy, x = res
        return g * sy, g * scale() * x

    f.defvjp(fwd, bwd)
    return f


@pytest.mark.parametrize("residual", ["input", "output", "new"])
@pytest.mark.parametrize("n_consts", [0, 1, 3])
def test_custom_vjp_closing_over_constants(n_consts, residual):
    assert_same_grads(_custom_vjp_fn(n_consts, residual), X, Y)


def test_custom_vjp_issue_reproduction():
    c = jnp.arange(3.0)

    @jax.custom_vjp
    def f(x, y):
        return jnp.sum(c * x * y)

    f.defvjp(lambda x, y: (f(x, y), x), lambda x, g: (g * c * 2.0, g * c * x))
    assert_same_grads(f, jnp.ones(3), 5 * jnp.ones(3))


def test_custom_vjp_residual_is_the_second_input():
    """Forwarded residual of the *second* primal behind two constants (index = 2 + 1)."""
    a, b = jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 1.0, 2.0])

    @jax.custom_vjp
    def f(x, y):
        return jnp.sum(a * jnp.sin(x) + b * y * y)

    f.defvjp(
        lambda x, y: (f(x, y), (y, x)),
        lambda r, g: (g * a * jnp.cos(r[1]), 2 * g * b * r[0]),
    )
    assert_same_grads(f, X, Y)


# ---------------------------------------------------------------- odeint and a DEQ


def test_odeint_matches_jax():
    t = jnp.linspace(0.0, 1.0, 4)

    def loss(y0, k):
        ys = odeint(lambda y, t, k: -k * y + jnp.sin(t), y0, t, k)
        return jnp.sum(ys**2)

    assert_same_grads(loss, jnp.array([1.0, 2.0]), 0.7)


def _fixed_point(f, a, x_guess):
    """z* = f(a, z*), differentiated implicitly (the DEQ of JAX's custom_vjp tutorial),
    iterated a fixed number of times so reverse mode could also unroll it."""

    def solve(a, z):
        return lax.fori_loop(0, 60, lambda i, z: f(a, z), z)

    @jax.custom_vjp
    def fp(a, x_guess):
        return solve(a, x_guess)

    def fwd(a, x_guess):
        z = fp(a, x_guess)
        return z, (a, z)

    def bwd(res, z_bar):
        a, z = res
        _, vjp_a = jax.vjp(lambda a: f(a, z), a)
        _, vjp_z = jax.vjp(lambda z: f(a, z), z)
        w = lax.fori_loop(0, 60, lambda i, w: vjp_z(w)[0] + z_bar, z_bar)
        return vjp_a(w)[0], jnp.zeros_like(z)

    fp.defvjp(fwd, bwd)
    return fp(a, x_guess)


def test_deq_fixed_point_closing_over_weights():
    w = jnp.array([[0.3, -0.2, 0.1], [0.05, 0.2, -0.3], [0.1, 0.1, 0.25]])

    def layer(a, z):
        return jnp.tanh(w @ z + a)  # closes over w: a constant of the custom_vjp

    def loss(a):
        return jnp.sum(_fixed_point(layer, a, jnp.zeros(3)) * jnp.array([1.0, 2.0, 3.0]))

    assert_same_grads(loss, jnp.array([0.1, -0.4, 0.8]))


# ---------------------------------------------------------------- second order through remat


def _ckpt_plain(x):
    return jnp.sum(jax.checkpoint(lambda x: jnp.sin(jnp.sin(x)) * x)(x))


def _ckpt_cond(x):
    branch = jax.checkpoint(lambda x: lax.cond(x[0] > 0, jnp.sin, jnp.cos, x * x))
    return jnp.sum(branch(x))


def _ckpt_scan(x):
    def run(x):
        return lax.scan(lambda c, a: (jnp.sin(c * a) + a, c * a), 1.0, x)

    carry, ys = jax.checkpoint(run)(x)
    return carry + jnp.sum(ys)


@pytest.mark.parametrize("fn", [_ckpt_plain, _ckpt_cond, _ckpt_scan], ids=["plain", "cond", "scan"])
def test_grad_of_grad_through_checkpoint(fn):
    def fg(x):
        return jnp.sum(funcgrad.grad(fn)(x) ** 2)

    def jg(x):
        return jnp.sum(jax.grad(fn)(x) ** 2)

    np.testing.assert_allclose(funcgrad.grad(fg)(X), jax.grad(jg)(X), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- every remat policy

_CP = jax.checkpoint_policies
POLICIES = {
    "everything_saveable": _CP.everything_saveable,
    "nothing_saveable": _CP.nothing_saveable,
    "dots_saveable": _CP.dots_saveable,
    "checkpoint_dots": _CP.checkpoint_dots,
    "dots_with_no_batch_dims_saveable": _CP.dots_with_no_batch_dims_saveable,
    "checkpoint_dots_with_no_batch_dims": _CP.checkpoint_dots_with_no_batch_dims,
    "save_only_these_names": _CP.save_only_these_names("h"),
    "save_any_names_but_these": _CP.save_any_names_but_these("h"),
    "save_anything_except_these_names": _CP.save_anything_except_these_names("h"),
    "save_from_both_policies": _CP.save_from_both_policies(
        _CP.dots_saveable, _CP.save_only_these_names("h")
    ),
}
W = jnp.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6], [0.3, 0.2, 0.1]])


def _block(x):
    h = adc.checkpoint_name(jnp.tanh(W @ x), "h")
    return jnp.sin(h) * x


def _plain(policy):
    return lambda x: jnp.sum(jax.checkpoint(_block, policy=policy)(x))


def _scan(policy):
    def run(x):
        xs = x[None] * jnp.array([[1.0], [-1.0]])
        return lax.scan(lambda c, a: (_block(c) + a, jnp.sum(c)), x, xs)

    def f(x):
        carry, ys = jax.checkpoint(run, policy=policy)(x)
        return jnp.sum(carry) + jnp.sum(ys)

    return f


def _cond(policy):
    def run(x):
        return lax.cond(x[0] > 0, _block, lambda x: jnp.cos(W @ x), x)

    return lambda x: jnp.sum(jax.checkpoint(run, policy=policy)(x))


@pytest.mark.parametrize("where", [_plain, _scan, _cond], ids=["plain", "scan", "cond"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_checkpoint_policy(policy, where):
    assert_same_grads(where(POLICIES[policy]), X)


def test_custom_jvp_rule_closing_over_a_traced_nondiff_array_is_a_clear_error():
    """jax.scipy.special.expn passes its order through custom_jvp's nondiff_argnums: on JAX
    0.10 a traced order is captured by the JVP rule's closure and is gone once the program
    is traced.
    funcgrad says so, with the fix, instead of JAX's UnexpectedTracerError; a concrete order
    (the usual case) differentiates as jax.grad does."""
    from jax.scipy.special import expn

    x = jnp.array([0.3, 0.5, 0.7])

    def f(n, x):
        return jnp.sum(expn(n, x))

    n = jnp.array([1, 2, 3])

    def jitted(n, x):  # under jit even an integer order is traced (the discovery's case)
        return jax.vjp(lambda x: expn(n, x), x)[1](jnp.ones(3)), funcgrad.vjp(
            lambda x: expn(n, x), x
        )[1](jnp.ones(3))

    if jax.__version_info__ >= (0, 12):  # JAX 0.12 passes such arrays as operands
        np.testing.assert_allclose(
            funcgrad.grad(f, argnums=1)(x, x), jax.grad(f, argnums=1)(x, x), rtol=1e-12
        )
        want, got = jax.jit(jitted)(n, x)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    else:
        with pytest.raises(funcgrad.NonDifferentiableError, match="nondiff_argnums"):
            funcgrad.grad(f, argnums=1)(x, x)
        # not JAX's UnexpectedTracerError when the outer jit runs
        with pytest.raises(funcgrad.NonDifferentiableError, match="not traced"):
            jax.jit(jitted)(n, x)
    np.testing.assert_allclose(
        funcgrad.grad(lambda x: jnp.sum(expn(n, x)))(x),
        jax.grad(lambda x: jnp.sum(expn(n, x)))(x),
        rtol=1e-12,
    )


# ---- found by porting JAX's own custom_jvp tests (tests/custom_api_test.py) -------------


@pytest.mark.parametrize("calls_itself", [False, True])
def test_custom_jvp_closing_over_a_constant_array(calls_itself):
    """JAX 0.12 hoists a custom_jvp function's closed-over constant arrays into operands and
    returns its rule's jaxpr with them as leading inputs; funcgrad moved them to constvars
    with ``Jaxpr.replace``, which on 0.12 keeps an input a constant only with its value
    attached: a KeyError, or endless recursion when the rule calls the function (JAX tests
    test_custom_jvp_unbroadcasting, test_initial_style_vmap_2). 0.10.2 was fine."""
    a = jnp.array([1.0, 2.0])
    y = jnp.arange(1.0, 4.0)

    @jax.custom_jvp
    def f(x):
        return a * x * jnp.sum(y)

    @f.defjvp
    def f_jvp(p, t):
        out = f(p[0]) if calls_itself else a * p[0] * jnp.sum(y)
        return out, a * t[0]

    def loss(x):
        return jnp.sum(jnp.sin(f(x)))

    for g in (funcgrad.grad(loss), jax.jit(funcgrad.grad(loss))):
        np.testing.assert_allclose(g(0.3), jax.grad(loss)(0.3), rtol=1e-12)
    x = jnp.linspace(0.1, 0.5, 3)
    vl = lambda x: jnp.sum(jax.vmap(loss)(x))  # noqa: E731
    np.testing.assert_allclose(funcgrad.grad(vl)(x), jax.grad(vl)(x), rtol=1e-12)


def test_custom_jvp_rule_applying_the_function_to_its_tangent():
    """``neg_jvp = lambda p, t: (neg(p[0]), neg(t[0]))``: the rule is linear in the tangent
    through the custom_jvp function itself (JAX tests test_linear_in_scan,
    test_custom_jvp_transpose_vjp3). funcgrad walked that inner call through its rule, which
    holds the same call again: RecursionError. In a tangent map the call is now walked
    through its function, as JAX transposes it."""

    @jax.custom_jvp
    def neg(x):
        return -x

    @neg.defjvp
    def neg_jvp(p, t):
        return neg(p[0]), neg(t[0])

    @jax.custom_jvp
    def div(x, y):
        return x / y

    @div.defjvp
    def div_jvp(p, t):
        return div(*p), div(t[0], p[1]) - div(p[0] * t[1], p[1] ** 2)

    def loss(x):
        return jnp.sum(neg(jnp.sin(x)) * div(x, x + 2.0)) + jnp.sum(
            lax.scan(lambda c, xi: (c + neg(xi) * c, None), 1.0, x)[0]
        )

    x = jnp.array([0.3, -0.7, 1.1])
    want = jax.grad(loss)(x)
    np.testing.assert_allclose(funcgrad.grad(loss)(x), want, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(funcgrad.grad(loss))(x), want, rtol=1e-12)
    ct = jnp.array([0.5, -1.0, 2.0])
    want2 = jax.vjp(jax.grad(loss), x)[1](ct)[0]
    np.testing.assert_allclose(funcgrad.vjp(funcgrad.grad(loss), x)[1](ct)[0], want2, rtol=1e-10)


def test_custom_jvp_closing_over_a_vmapped_value_is_a_clear_error():
    """A custom_jvp defined inside a vmapped function, closing over the vmapped value (JAX
    tests test_closure_with_vmap2, test_nondiff_arg_vmap_tracer): funcgrad traces the rule
    after the vmap's trace has ended. It said so only as JAX's UnexpectedTracerError; now
    it is funcgrad's error with the fix, and the fix works."""

    def h(z):
        def per(xi):
            @jax.custom_jvp
            def g(y):
                return xi * y

            @g.defjvp
            def g_jvp(p, t):
                return xi * p[0], xi * t[0]

            return g(z)

        return jnp.sum(jax.vmap(per)(jnp.arange(3.0)))

    with pytest.raises(funcgrad.NonDifferentiableError, match="ordinary argument"):
        funcgrad.grad(h)(1.0)

    @jax.custom_jvp
    def g2(xi, y):  # the fix: xi as an argument
        return xi * y

    @g2.defjvp
    def g2_jvp(p, t):
        return g2(*p), t[0] * p[1] + p[0] * t[1]

    def h2(z):
        return jnp.sum(jax.vmap(lambda xi: g2(xi, z))(jnp.arange(3.0)))

    np.testing.assert_allclose(funcgrad.grad(h2)(1.0), jax.grad(h2)(1.0), rtol=1e-12)


def test_custom_jvp_whose_function_is_unbatched_but_rule_batched_is_a_clear_error():
    """Under vmap the function's output does not depend on the batched input but its rule's
    does (JAX test test_hard_stuff2): the staged program holds one value where jax.grad holds
    one per example, so the per-example derivatives are not in it. jax.grad(jax.jit(vmap))
    fails too (a TypeError); funcgrad says why and what to do."""

    @jax.custom_jvp
    def f(x):
        return jnp.zeros(())

    @f.defjvp
    def f_jvp(p, t):
        return jnp.zeros(()) * p[0], t[0]

    def loss(x):
        return jnp.sum(jax.vmap(f)(x) * jnp.arange(1.0, 4.0))

    np.testing.assert_allclose(jax.grad(loss)(jnp.ones(3)), [1.0, 2.0, 3.0])
    with pytest.raises(NotImplementedError, match="does not depend on the batched inputs"):
        funcgrad.grad(loss)(jnp.ones(3))
