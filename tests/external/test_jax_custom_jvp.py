"""Ports of JAX's own custom_jvp (and a few custom_vjp) tests, checked as funcgrad vs jax.grad.

Sources (read with the repository index, not copied wholesale):
  * jax-ml/jax tests/custom_api_test.py  (commit 002c3dc3...), classes CustomJVPTest and
    CustomVJPTest -- the modern home of these tests;
  * jax-ml/jax tests/api_test.py          (commit 0011fd5e...), class CustomJVPTest -- the older
    copy (mid-2020); every test in it that touches vmap is also in custom_api_test.py.

Each port builds a scalar loss from the original test's function -- either the test's own grad
target, or ``sum(sin(F(x)) * w)`` with a fixed random ``w`` of F's output shape -- and asserts

    funcgrad.grad(loss)(x)            == jax.grad(loss)(x)
    jax.jit(funcgrad.grad(loss))(x)   == jax.grad(loss)(x)

with np.testing.assert_allclose(rtol=1e-6, atol=1e-12) in float64. Where the original vmaps,
the batch size is chosen to equal another axis of the output (a (3,)-shaped per-example output
gets a batch of 3, etc.), since equal sizes are where a layout mix-up is silent. Names are
``test_<what>__from_<original test name>``.

What funcgrad does not do as jax.grad does is listed in ``KNOWN`` below: each such case is
an ``xfail(strict=True)`` that must raise the named error (a wrong value, or another error,
fails the test), so fixing one also shows. The bugs these ports found and that are fixed
have their own regression tests in tests/rules/test_control_flow_regressions.py and
tests/rules/test_custom_layout.py.

Not ported: tests that need jax._src internals (test_initial_style_vmap_with_collective,
test_maybe_perturbed_*, test_symbolic_zeros_memoization_caching, test_dce's pe.dce_jaxpr part,
test_pretty_print), JAX error-message tests, tests JAX itself skips (test_vmap_axes, test_pmap,
test_nondiff_arg_jit_tracer), test_ensure_compile_time_eval (its rule returns None),
test_concurrent_initial_style (threads), test_hard_stuff (no custom_jvp of its own).
"""

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad

RTOL = 1e-6
ATOL = 1e-12


# ----------------------------------------------------------------------------- known gaps

_VMAP_CLOSURE = (
    "the rule uses a value traced by an enclosing vmap (closed over, or through "
    "nondiff_argnums); funcgrad traces the rule after that trace ended and refuses with the fix"
)
_UNBATCHED_FUNCTION = (
    "under vmap the function's output is unbatched while its rule's is batched: the staged "
    "program holds one value where jax.grad holds one per example; funcgrad refuses with why"
)
_UNDECIDED = (
    "the function's output is zero in every placement of the batch axis and the rule's "
    "tangent depends on it: funcgrad refuses rather than guess"
)
KNOWN = {  # test name (with its parameters) -> (the error funcgrad raises, why)
    "test_python_control_flow__from_test_python_control_flow": (
        jax.errors.TracerBoolConversionError,
        "Python branches on a value inside a custom_jvp function: the recorded eager path "
        "cannot evaluate a custom_jvp body on values (docs/eager.md, limits)",
    ),
    "test_nondiff_arg_vmap_tracer__from_test_nondiff_arg_vmap_tracer": (
        funcgrad.NonDifferentiableError,
        _VMAP_CLOSURE,
    ),
    "test_nondiff_argnums_vmap_tracer__from_test_nondiff_argnums_vmap_tracer[jvp]": (
        funcgrad.NonDifferentiableError,
        _VMAP_CLOSURE,
    ),
    "test_nondiff_argnums_vmap_tracer__from_test_nondiff_argnums_vmap_tracer[vmap_seeds]": (
        funcgrad.NonDifferentiableError,
        _VMAP_CLOSURE,
    ),
    "test_closure_with_vmap__from_test_closure_with_vmap": (
        funcgrad.NonDifferentiableError,
        _VMAP_CLOSURE,
    ),
    "test_closure_with_vmap2__from_test_closure_with_vmap2": (
        funcgrad.NonDifferentiableError,
        _VMAP_CLOSURE,
    ),
    **{
        f"test_hard_stuff2__from_test_hard_stuff2[{v}]": (NotImplementedError, _UNBATCHED_FUNCTION)
        for v in ("jit_vmap", "grad_vmap", "jit_grad_vmap", "vmap_vmap_extra")
    },
    "test_vmap_inside_defjvp__from_test_vmap_inside_defjvp[vmap_extra]": (
        NotImplementedError,
        _UNBATCHED_FUNCTION,
    ),
    "test_symbolic_zero_custom_jvp_vmap_doesnt_instantiate__from_test_symbolic_zero_custom_jvp_"
    "vmap_doesnt_instantiate": (
        AssertionError,
        "the rule is shown an array where JAX shows a SymbolicZero (funcgrad's activity "
        "analysis does not know the inner call's tangent is symbolically zero); the "
        "gradients agree",
    ),
    "test_extra_rule_layout_differs_under_vmap[vmap-zeros-4]": (NotImplementedError, _UNDECIDED),
    "test_extra_rule_layout_differs_under_vmap[jit_vmap-zeros-4]": (
        NotImplementedError,
        _UNDECIDED,
    ),
}


@pytest.fixture(autouse=True)
def _known_gaps(request):
    known = KNOWN.get(request.node.name)
    if known is not None:
        error, why = known
        request.applymarker(pytest.mark.xfail(strict=True, raises=error, reason=why))


# ----------------------------------------------------------------------------- helpers


def _close(got, want, what):
    gl, gt = jax.tree.flatten(got)
    wl, wt = jax.tree.flatten(want)
    assert gt == wt, f"{what}: tree structure {gt} != {wt}"
    for i, (g, w) in enumerate(zip(gl, wl)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{what}: leaf {i} shape {g.shape} != {w.shape}"
        np.testing.assert_allclose(
            g,
            w,
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{what}: leaf {i} (max abs diff {np.max(np.abs(g - w)) if g.size else 0.0})",
        )


def check(loss, *args, argnums=0, jit=True, ref=None):
    """funcgrad.grad and jax.jit(funcgrad.grad) against the unstaged jax.grad.

    ``ref``: a loss with the same value written without the jit that makes jax.grad raise (or
    be wrong); jax.grad of it is the reference."""
    if ref == "jacfwd":  # where jax.grad itself raises: JAX's forward mode is the reference
        want = jax.jacfwd(loss, argnums)(*args)
    else:
        want = jax.grad(loss if ref is None else ref, argnums)(*args)
    got = funcgrad.grad(loss, argnums)(*args)
    _close(got, want, "funcgrad.grad vs jax.grad")
    if jit:
        got_j = jax.jit(funcgrad.grad(loss, argnums))(*args)
        _close(got_j, want, "jax.jit(funcgrad.grad) vs jax.grad")
    return want


def check2(loss, *args, jit=True):
    """Second order: funcgrad.grad(funcgrad.grad) against jax.grad(jax.grad)."""
    want = jax.grad(jax.grad(loss))(*args)
    got = funcgrad.grad(funcgrad.grad(loss))(*args)
    _close(got, want, "funcgrad.grad(funcgrad.grad) vs jax.grad(jax.grad)")
    if jit:
        got_j = jax.jit(funcgrad.grad(funcgrad.grad(loss)))(*args)
        _close(got_j, want, "jit(funcgrad.grad(funcgrad.grad)) vs jax.grad(jax.grad)")


def weighted(F, *args, seed=0):
    """loss(*a) = sum over F's float output leaves of sum(sin(leaf) * w_leaf), w fixed random."""
    out = jax.eval_shape(F, *args)
    leaves = jax.tree.leaves(out)
    rng = np.random.RandomState(seed)
    ws = [rng.randn(*l.shape) if jnp.issubdtype(l.dtype, jnp.inexact) else None for l in leaves]

    def loss(*a):
        outs = jax.tree.leaves(F(*a))
        assert len(outs) == len(ws)
        return sum(jnp.sum(jnp.sin(o) * w) for o, w in zip(outs, ws) if w is not None)

    return loss


def rand(*shape, seed=1):
    return np.random.RandomState(seed).randn(*shape)


# ----------------------------------------------------------------------------- CustomJVPTest


def _sin2cos(ndim_assert=False):
    @jax.custom_jvp
    def f(x):
        if ndim_assert:
            assert jnp.ndim(x) == 0
        return jnp.sin(x)

    def f_jvp(primals, tangents):
        (x,), (g,) = primals, tangents
        if ndim_assert:
            assert jnp.ndim(x) == jnp.ndim(g) == 0
        return f(x), 2 * jnp.cos(x) * g

    f.defjvp(f_jvp)
    return f


def test_basic__from_test_basic():
    f = _sin2cos()
    check(f, 3.0)
    x = rand(3)
    check(weighted(f, x), x)


def test_invariance__from_test_invariance():
    @jax.custom_jvp
    def f(x):
        return jnp.cos(2 * x) / 2.0

    def f_jvp(primals, tangents):
        (x,), (g,) = primals, tangents
        return (f(x), 3 * g)

    f.defjvp(f_jvp)

    def f2(x):
        y, _ = jax.jvp(f, (x,), (x,))
        return y

    def f3(x):
        y, _ = jax.jvp(f2, (x,), (x,))
        return y

    for fun in (f, f2, f3):
        check(fun, 1.0)
    # the tangent outputs too
    check(lambda x: jax.jvp(f, (x,), (x,))[1], 1.0)
    check(lambda x: jax.jvp(f2, (x,), (x,))[1], 1.0)


def test_python_control_flow__from_test_python_control_flow():
    # the function branches on the value of x: jax.jit(jax.grad(f)) raises too, so no jit check
    @jax.custom_jvp
    def f(x):
        if x > 0:
            return jnp.sin(x)
        else:
            return jnp.cos(x)

    def f_jvp(primals, tangents):
        (x,), (g,) = primals, tangents
        if x > 0:
            return f(x), 2 * g
        else:
            return f(x), 3 * g

    f.defjvp(f_jvp)
    check(f, 2.0, jit=False)
    check(f, -2.0, jit=False)


_VMAP_VARIANTS = [
    "vmap_f",
    "vmap_vmap_f",
    "vmap_jvp_f",
    "vmap_vmap_jvp_f",
    "jvp_vmap_f",
    "jvp_vmap_vmap_f",
    "vmap_jvp_vmap_f",
]


@pytest.mark.parametrize("variant", _VMAP_VARIANTS)
def test_vmap__from_test_vmap(variant):
    f = _sin2cos(ndim_assert=True)
    x = rand(3)
    xx = rand(3, 3)  # original (2, 3): both vmaps 3 here, equal sizes
    jvp_self = lambda g: lambda x: jax.jvp(g, (x,), (x,))  # noqa: E731
    F, arg = {
        "vmap_f": (jax.vmap(f), x),
        "vmap_vmap_f": (jax.vmap(jax.vmap(f)), xx),
        "vmap_jvp_f": (jax.vmap(jvp_self(f)), x),
        "vmap_vmap_jvp_f": (jax.vmap(jax.vmap(jvp_self(f))), xx),
        "jvp_vmap_f": (jvp_self(jax.vmap(f)), x),
        "jvp_vmap_vmap_f": (jvp_self(jax.vmap(jax.vmap(f))), xx),
        "vmap_jvp_vmap_f": (jax.vmap(jvp_self(jax.vmap(f))), xx),
    }[variant]
    check(weighted(F, arg), arg)


@pytest.mark.parametrize("variant", ["jit", "jit_jit", "jit_jvp", "jvp_jit"])
def test_jit__from_test_jit(variant):
    f = _sin2cos()
    F = {
        "jit": jax.jit(f),
        "jit_jit": jax.jit(jax.jit(f)),
        "jit_jvp": jax.jit(lambda x: jax.jvp(f, (x,), (x,))),
        "jvp_jit": lambda x: jax.jvp(jax.jit(f), (x,), (x,)),
    }[variant]
    check(weighted(F, 3.0), 3.0)
    x = rand(3)
    check(weighted(F, x), x)


def test_pytrees__from_test_pytrees():
    @jax.custom_jvp
    def f(x):
        return {"b": jnp.sin(x["a"])}

    def f_jvp(primals, tangents):
        (x,), (g,) = primals, tangents
        return f(x), {"b": 2 * jnp.cos(x["a"]) * g["a"]}

    f.defjvp(f_jvp)
    for x in ({"a": 3.0}, {"a": rand(3)}):
        check(weighted(f, x), x)
    xs = {"a": rand(3, 3)}
    check(weighted(jax.vmap(f), xs), xs)


def test_kwargs__from_test_kwargs():
    @jax.custom_jvp
    def my_fun(x, y, c=1.0):
        return c * (x + y)

    def my_jvp(primals, tangents):
        x, y, c = primals
        t_x, t_y, t_c = tangents
        return my_fun(x, y, c), t_c

    my_fun.defjvp(my_jvp)
    f = lambda x, y: jnp.square(my_fun(x, y, c=2.0)).sum()  # noqa: E731
    check(f, 10.0, 5.0, argnums=(0, 1))
    xs, ys = rand(3), rand(3, seed=2)
    F = jax.vmap(lambda x, y: my_fun(x, y, c=2.0))
    check(weighted(F, xs, ys), xs, ys, argnums=(0, 1))


def _initial_style_foo(closes_over=None):
    @jax.custom_jvp
    def f(x):
        assert jnp.ndim(x) == 0
        if closes_over is None:
            return 3 * x
        return 3 * x * jnp.sum(closes_over)

    def f_jvp(primals, tangents):
        (x,), (g,) = primals, tangents
        return f(x), 2 * g

    f.defjvp(f_jvp)

    def foo(x):
        out, _ = lax.scan(lambda c, _: (f(c), None), x, None, length=1)
        return out

    return foo


@pytest.mark.parametrize(
    "variant",
    ["grad", "grad_jit", "grad_grad", "grad_grad_jit", "grad_jit_grad"],
)
def test_initial_style__from_test_initial_style(variant):
    foo = _initial_style_foo()
    if variant == "grad":
        check(foo, 3.0)  # also jit(grad(foo))
    elif variant == "grad_jit":
        check(jax.jit(foo), 3.0)
    elif variant == "grad_grad":
        check2(foo, 3.0)  # also jit(grad(grad(foo)))
    elif variant == "grad_grad_jit":
        check2(jax.jit(foo), 3.0)
    elif variant == "grad_jit_grad":
        want = jax.grad(jax.jit(jax.grad(foo)))(3.0)
        got = funcgrad.grad(jax.jit(funcgrad.grad(foo)))(3.0)
        _close(got, want, "grad(jit(grad(foo)))")


_IS_VMAP_VARIANTS = ["vmap", "vmap_jit", "jit_vmap", "jit_of_loss", "vmap_vmap_extra"]


def _initial_style_vmap_F(foo, variant):
    return {
        "vmap": jax.vmap(foo),
        "vmap_jit": jax.vmap(jax.jit(foo)),
        "jit_vmap": jax.jit(jax.vmap(foo)),
        "jit_of_loss": jax.vmap(foo),  # loss wrapped in jit below
        "vmap_vmap_extra": jax.vmap(jax.vmap(foo)),  # not in the original: (3,3) batch
    }[variant]


@pytest.mark.parametrize("variant", _IS_VMAP_VARIANTS)
def test_initial_style_vmap__from_test_initial_style_vmap(variant):
    foo = _initial_style_foo()
    x = rand(3, 3) if variant == "vmap_vmap_extra" else rand(3)
    F = _initial_style_vmap_F(foo, variant)
    # the test's own grad target: vmap(foo)(x).sum()
    own = lambda x: F(x).sum()  # noqa: E731
    loss = weighted(F, x)
    if variant == "jit_of_loss":
        own, loss = jax.jit(own), jax.jit(loss)
    check(own, x)
    check(loss, x)


@pytest.mark.parametrize("variant", _IS_VMAP_VARIANTS)
def test_initial_style_vmap_2__from_test_initial_style_vmap_2(variant):
    # f closes over y = arange(1., 4.) (length 3); the batch is 3 too
    foo = _initial_style_foo(closes_over=jnp.arange(1.0, 4.0))
    x = rand(3, 3) if variant == "vmap_vmap_extra" else rand(3)
    F = _initial_style_vmap_F(foo, variant)
    own = lambda x: F(x).sum()  # noqa: E731
    loss = weighted(F, x)
    if variant == "jit_of_loss":
        own, loss = jax.jit(own), jax.jit(loss)
    check(own, x)
    check(loss, x)


def test_nondiff_argnums__from_test_nondiff_argnums():
    @partial(jax.custom_jvp, nondiff_argnums=(0,))
    def app(f, x):
        return f(x)

    def app_jvp(f, primals, tangents):
        (x,), (t,) = primals, tangents
        return app(f, x), 3 * t

    app.defjvp(app_jvp)
    check(lambda x: app(lambda y: 2 * y, x), 1.0)
    xs = rand(3)
    check(weighted(jax.vmap(lambda x: app(lambda y: 2 * y, x)), xs), xs)


def test_nondiff_argnames__from_test_nondiff_argnames():
    @partial(jax.custom_jvp, nondiff_argnames=("f",))
    def app(f, x):
        return f(x)

    def app_jvp(f, primals, tangents):
        (x,), (t,) = primals, tangents
        return app(f, x), 3 * t

    app.defjvp(app_jvp)
    check(lambda x: app(lambda y: 2 * y, x), 1.0)
    xs = rand(3)
    check(weighted(jax.vmap(lambda x: app(lambda y: 2 * y, x)), xs), xs)


def test_nondiff_arg_vmap_tracer__from_test_nondiff_arg_vmap_tracer():
    @partial(jax.custom_jvp, nondiff_argnums=(0,))
    def f(x, y):
        return x * y

    def f_jvp(x, primals, tangents):
        (y,), (t_y,) = primals, tangents
        return f(x, y), 5 * t_y

    f.defjvp(f_jvp)
    g = jax.vmap(f)
    xs = jnp.asarray(rand(3, seed=3))  # original: batch of 1
    ys = rand(3)
    check(weighted(lambda y: g(xs, y), ys), ys)


def test_multiple_rule_invocations__from_test_multiple_rule_invocations():
    @jax.custom_jvp
    def expit(x):
        return 1 / (1 + lax.exp(-x))

    @expit.defjvp
    def _expit_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        ans = expit(x)
        return ans, t * ans * (1 - ans)

    def scanned_fun(c, _):
        return [expit(c[0])] + [c[i - 1] + c[i] for i in range(1, len(c))], None

    def foo(x):
        zero = jnp.zeros_like(x)
        c, _ = lax.scan(scanned_fun, [x, zero, zero, zero, zero], None, length=10)
        return c[-1]

    check(foo, 3.0)
    check(lambda x: jax.vmap(foo)(x).sum(), jnp.arange(3.0))
    x = rand(3)
    check(weighted(jax.vmap(foo), x), x)


@pytest.mark.parametrize(
    "variant", ["jit_vmap", "vmap_grad_fwd", "grad_vmap", "jit_grad_vmap", "vmap_vmap_extra"]
)
def test_hard_stuff2__from_test_hard_stuff2(variant):
    @jax.custom_jvp
    def f(x):
        return np.zeros(x.shape, x.dtype)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), t

    x = rand(3)
    if variant == "jit_vmap":
        # jax.grad(jax.jit(jax.vmap(f))) raises in JAX itself (a TypeError in broadcast_in_dim:
        # f's output is unbatched, its rule's is batched); the reference is the unstaged grad
        with pytest.raises(TypeError):
            jax.grad(weighted(jax.jit(jax.vmap(f)), x))(x)
        check(weighted(jax.jit(jax.vmap(f)), x), x, ref=weighted(jax.vmap(f), x))
    elif variant == "vmap_grad_fwd":
        # jax.jit(jax.vmap(jax.grad(f))): compare funcgrad.grad under vmap, forward values
        _close(
            jax.jit(jax.vmap(funcgrad.grad(f)))(x),
            jax.jit(jax.vmap(jax.grad(f)))(x),
            "jit(vmap(funcgrad.grad(f)))",
        )
        _close(jax.vmap(funcgrad.grad(f))(x), jax.vmap(jax.grad(f))(x), "vmap(funcgrad.grad(f))")
    elif variant == "grad_vmap":
        check(lambda x: jax.vmap(f)(x).sum(), x)
        check(weighted(jax.vmap(f), x), x)
    elif variant == "jit_grad_vmap":
        # the original's jax.jit(jax.grad(lambda x: vmap(f)(x).sum())); check() also runs
        # jax.jit(funcgrad.grad(...))
        check(lambda x: jax.vmap(f)(x).sum(), x)
    else:
        xx = rand(3, 3)
        check(weighted(jax.vmap(jax.vmap(f)), xx), xx)


@pytest.mark.parametrize(
    "variant", ["jit_vmap", "vmap_grad_fwd", "grad_vmap", "jit_grad_vmap", "jvp_jit_vmap"]
)
def test_hard_stuff3__from_test_hard_stuff3(variant):
    @jax.custom_jvp
    def relu(x):
        return jnp.maximum(x, 0)

    @relu.defjvp
    def _relu_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return relu(x), lax.select(x > 0, t, lax.full_like(t, 0))

    def scanned_fun(c, _):
        return [relu(c[0])] + [c[i - 1] + c[i] for i in range(1, len(c))], None

    def f(x):
        zero = jnp.zeros_like(x)
        c, _ = lax.scan(scanned_fun, [x, zero, zero, zero, zero], None, length=10)
        return c[-1]

    x = rand(3)  # has negative entries; the original used arange(3.)
    if variant == "jit_vmap":
        check(weighted(jax.jit(jax.vmap(f)), x), x)
    elif variant == "vmap_grad_fwd":
        _close(
            jax.jit(jax.vmap(funcgrad.grad(f)))(x),
            jax.jit(jax.vmap(jax.grad(f)))(x),
            "jit(vmap(funcgrad.grad(f)))",
        )
    elif variant == "grad_vmap":
        check(lambda x: jax.vmap(f)(x).sum(), x)
        check(lambda x: jax.vmap(f)(x).sum(), jnp.arange(3.0))
    elif variant == "jit_grad_vmap":
        check(jax.jit(lambda x: jax.vmap(f)(x).sum()), x)
    else:
        F = lambda x: jax.jvp(jax.jit(jax.vmap(f)), (x,), (jnp.ones(3),))  # noqa: E731
        check(weighted(F, x), x)


def test_eval_shape__from_test_eval_shape():
    @jax.custom_jvp
    def expit(x):
        return 1 / (1 + lax.exp(-x))

    @expit.defjvp
    def _expit_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        ans = expit(x)
        return ans, t * ans * (1 - ans)

    x = rand(2, 3)
    loss = lambda x: expit(x).sum()  # noqa: E731
    check(loss, x)
    assert jax.eval_shape(funcgrad.grad(loss), x).shape == (2, 3)
    xx = rand(3, 3)
    check(weighted(jax.vmap(expit), xx), xx)


@pytest.mark.parametrize("variant", ["plain", "vmap_theta", "vmap_stacked_extra"])
def test_jaxpr_zeros__from_test_jaxpr_zeros(variant):
    @jax.custom_jvp
    def f(A, b):
        return A @ b

    def f_jvp(primals, tangents):
        A, b = primals
        dA, db = tangents
        z = f(A, b)
        return z, A @ db + dA @ b

    f.defjvp(f_jvp)

    def experiment(theta, stacked=False):
        def step(q, _):
            z = f(jnp.eye(3), jnp.ones(3) * theta)
            q += z[0]
            return q, q

        q, qs = lax.scan(step, 0.0, None, 4)
        return (q, qs) if stacked else q

    if variant == "plain":
        check(experiment, 1.0)
    elif variant == "vmap_theta":
        th = rand(3)
        check(weighted(jax.vmap(experiment), th), th)
    else:
        # not in the original: also return the scan's stacked q's (length 4), batch of 4
        th = rand(4)
        F = jax.vmap(partial(experiment, stacked=True))
        check(weighted(F, th), th)


def test_linear_in_scan__from_test_linear_in_scan():
    @jax.custom_jvp
    def f(x):
        return -x

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        return f(x), f(x_dot)

    def foo(x):
        out, _ = lax.scan(lambda c, _: (f(c), None), x, None, length=1)
        return out

    check(foo, 3.0)
    x = rand(3)
    check(weighted(jax.vmap(foo), x), x)


def test_custom_jvps_first_rule_is_none__from_test_custom_jvps_first_rule_is_none():
    @jax.custom_jvp
    def f(x, y):
        return x**2 * y

    f.defjvps(None, lambda x_dot, primal_out, x, y: 2 * x * y * x_dot)
    check(f, 2.0, 3.0, argnums=1)
    check(f, 2.0, 3.0, argnums=(0, 1))
    xs, ys = rand(3), rand(3, seed=2)
    check(weighted(jax.vmap(f), xs, ys), xs, ys, argnums=(0, 1))


@pytest.mark.parametrize("variant", ["jvp", "vmap_seeds"])
def test_nondiff_argnums_vmap_tracer__from_test_nondiff_argnums_vmap_tracer(variant):
    @partial(jax.custom_jvp, nondiff_argnums=(0, 2))
    def sample(shape, param, seed):
        return jax.random.uniform(key=seed, shape=shape, minval=param)

    @sample.defjvp
    def sample_jvp(shape, seed, primals, tangents):
        (param,), (dparam,) = primals, tangents
        dparam = jnp.broadcast_to(dparam, shape)
        samples = sample(shape, param, seed)
        return samples, samples * dparam

    if variant == "jvp":
        F = lambda x: sample((2, 3), x, jax.random.key(1))  # noqa: E731
    else:
        keys = jax.random.split(jax.random.key(1), 3)  # original: 10 keys; 3 == shape[1]
        F = lambda p: jax.vmap(lambda seed: sample((2, 3), p, seed))(keys)  # noqa: E731
    check(weighted(F, 0.25), 0.25)


def test_fun_with_nested_calls_2__from_test_fun_with_nested_calls_2():
    def call(f, *args):
        f = jax.custom_jvp(f)
        f.defjvp(lambda primals, tangents: (f(*primals), sum(tangents)))
        return f(*args)

    def fun_with_nested_calls_2(x):
        def bar(y):
            def baz(w):
                q = call(lambda x: y, x)
                q = q + call(lambda: y)
                q = q + call(lambda y: w + y, y)
                q = call(lambda w: call(jnp.sin, x) * y, 1.0) + q
                return q

            return jax.jit(baz)(x)

        return call(bar, x)

    # The original only runs jit and vmap forward. jax.grad of it raises (an
    # UnexpectedTracerError: the custom_jvp functions close over differentiated values), so
    # there is nothing to compare: funcgrad must refuse too, not return a number.
    x = rand(3)
    for loss, arg in [
        (fun_with_nested_calls_2, 3.0),
        (jax.jit(fun_with_nested_calls_2), 3.0),
        (weighted(jax.vmap(fun_with_nested_calls_2), x), x),
    ]:
        with pytest.raises(Exception):  # noqa: B017 - JAX's error, whichever it is
            jax.grad(loss)(arg)
        with pytest.raises(funcgrad.NonDifferentiableError):
            funcgrad.grad(loss)(arg)
    # the forward check the original makes
    np.testing.assert_allclose(jax.jit(fun_with_nested_calls_2)(3.0), fun_with_nested_calls_2(3.0))


def test_closure_with_vmap__from_test_closure_with_vmap():
    def sample(seed, alpha):
        @jax.custom_jvp
        def f(alpha):
            return jax.random.gamma(seed, alpha, shape=[])

        @f.defjvp
        def f_jvp(primal, tangent):
            (alpha,), (dalpha,) = primal, tangent
            sample = f(alpha)
            partial_alpha = lax.random_gamma_grad(alpha, sample)
            return sample, partial_alpha * dalpha

        return f(alpha)

    keys = jax.random.split(jax.random.key(1), 3)
    F = lambda alpha: jax.vmap(lambda k: sample(k, alpha))(keys)  # noqa: E731
    alpha = jnp.asarray(2.0)  # the original's alpha is np.float32(2.): an array, not a float
    check(weighted(F, alpha), alpha)


def test_closure_with_vmap2__from_test_closure_with_vmap2():
    def h(z):
        def f(x):
            @jax.custom_jvp
            def g(y):
                return x * y

            @g.defjvp
            def g_jvp(primals, tangents):
                (y,), (ydot,) = primals, tangents
                return x * y, x * ydot

            return g(z)

        return jax.vmap(f)(jnp.arange(3.0))

    check(weighted(h, 1.0), 1.0)
    check(lambda z: h(z).sum(), 1.0)


def test_float0__from_test_float0():
    @jax.custom_jvp
    def f(x, y):
        return x, y

    def f_jvp(primals, _):
        x, y = primals
        return (x, y), (2.0, jax.custom_derivatives.zero_from_primal(y))

    f.defjvp(f_jvp)
    check(lambda x: f(x, 3)[0], 2.0)
    check(lambda x: jnp.sin(f(x, 3)[0]) * f(x, 3)[1], 2.0)


def test_float0_initial_style__from_test_float0_initial_style():
    @jax.custom_jvp
    def f(x, y):
        return x, y

    def f_jvp(primals, _):
        x, y = primals
        return (x, y), (2.0, jax.custom_derivatives.zero_from_primal(y))

    f.defjvp(f_jvp)

    def foo(x, y):
        out, _ = lax.scan(lambda c, _: (f(*c), None), (x, y), None, length=1)
        return out

    check(lambda x: foo(x, 3)[0], 2.0)


def test_remat__from_test_remat():
    f = _sin2cos()

    @jax.remat
    def g(x):
        return f(f(x))

    check(g, 2.0)
    x = rand(3)
    check(weighted(jax.vmap(g), x), x)


@pytest.mark.parametrize("variant", ["grad_grad_ckpt", "grad_ckpt_grad", "grad3_ckpt"])
def test_remat_higher_order__from_test_remat_higher_order(variant):
    f = _sin2cos()

    def g(x):
        return f(f(x))

    if variant == "grad_grad_ckpt":
        check2(jax.checkpoint(g), 2.0)
    elif variant == "grad_ckpt_grad":
        want = jax.grad(jax.checkpoint(jax.grad(g)))(2.0)
        got = funcgrad.grad(jax.checkpoint(funcgrad.grad(g)))(2.0)
        _close(got, want, "grad(checkpoint(grad(g)))")
    else:
        want = jax.grad(jax.grad(jax.grad(jax.checkpoint(g))))(2.0)
        got = funcgrad.grad(funcgrad.grad(funcgrad.grad(jax.checkpoint(g))))(2.0)
        _close(got, want, "grad(grad(grad(checkpoint(g))))")


def test_custom_jvp_vmap_broadcasting_interaction__from_test_custom_jvp_vmap_broadcasting_interaction():  # noqa: E501
    def f2(y, z):
        v1 = z
        v2 = jnp.sum(y) + z
        return jnp.logaddexp(v1, v2)

    def f1(y, z):
        v = jax.vmap(lambda _y: f2(_y, z))(y)
        return jnp.sum(v)

    y = rand(3, 3)  # original ones((3, 2))
    check(lambda z: f1(y, z), 0.1)
    check(f1, y, 0.1, argnums=(0, 1))
    F = lambda y, z: jax.vmap(lambda _y: f2(_y, z))(y)  # noqa: E731
    check(weighted(F, y, 0.1), y, 0.1, argnums=(0, 1))


@pytest.mark.parametrize("box_kind", ["scalar", "matrix"])
def test_custom_jvp_vmap_broadcasting_interaction_2__from_test_custom_jvp_vmap_broadcasting_interaction_2(  # noqa: E501
    box_kind,
):
    @jax.custom_jvp
    def transform(box, R):
        if jnp.isscalar(box) or box.size == 1:
            return R * box
        elif box.ndim == 2:
            return jnp.einsum("ij,j->i", box, R)
        raise ValueError()

    @transform.defjvp
    def transform_jvp(primals, tangents):
        box, R = primals
        dbox, dR = tangents
        return (transform(box, R), dR + transform(dbox, R))

    def periodic_general(box):
        def displacement_fn(Ra, Rb, **kwargs):
            _box = kwargs.get("box", box)
            return transform(_box, Ra - Rb)

        return displacement_fn

    N = 2  # original 250; N == 2 == the coordinate dimension
    displacement = periodic_general(1.0)
    R = jax.random.uniform(jax.random.key(0), (N, 2))

    def energy_fn(box, R):
        d = partial(displacement, box=box)
        d = jax.vmap(jax.vmap(d, (None, 0)), (0, None))
        return jnp.sum(d(R, R) ** 2)

    def pairs(box, R):
        d = partial(displacement, box=box)
        return jax.vmap(jax.vmap(d, (None, 0)), (0, None))(R, R)

    box = 1.0 if box_kind == "scalar" else jnp.asarray(rand(2, 2) + 2 * np.eye(2))
    check(energy_fn, box, R, argnums=(0, 1))
    check(weighted(pairs, box, R), box, R, argnums=(0, 1))


def test_custom_jvp_implicit_broadcasting__from_test_custom_jvp_implicit_broadcasting():
    # the original skips itself under x64; here it runs in float64 and compares gradients
    @jax.custom_jvp
    def projection_unit_simplex(x):
        s = 1.0
        n_features = x.shape[0]
        u = jnp.sort(x)[::-1]
        cssv = jnp.cumsum(u) - s
        ind = jnp.arange(n_features, dtype=x.dtype) + 1
        cond = u - cssv / ind > 0
        idx = jnp.count_nonzero(cond)
        threshold = cssv[idx - 1] / idx.astype(x.dtype)
        return jax.nn.relu(x - threshold)

    @projection_unit_simplex.defjvp
    def projection_unit_simplex_jvp(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        primal_out = projection_unit_simplex(x)
        supp = (primal_out > 0).astype(x_dot.dtype)
        card = jnp.count_nonzero(supp).astype(x_dot.dtype)
        tangent_out = supp * x_dot - (jnp.dot(supp, x_dot) / card) * supp
        return primal_out, tangent_out

    rng = np.random.RandomState(0)
    x = rng.rand(5)
    _close(
        funcgrad.jacrev(projection_unit_simplex)(x),
        jax.jacrev(projection_unit_simplex)(x),
        "jacrev",
    )
    proj = jax.vmap(projection_unit_simplex)
    X = rng.rand(5, 5)  # original (4, 5): the batch equals the feature axis here
    check(lambda X: jnp.sum(proj(X) ** 2), X)
    check(weighted(proj, X), X)


@pytest.mark.parametrize("variant", ["plain", "vmap_extra"])
def test_vmap_inside_defjvp__from_test_vmap_inside_defjvp(variant):
    mat = jax.random.normal(jax.random.key(47), (2, 3))

    @jax.custom_jvp
    def f(mat, aux):
        num_rows, num_cols = mat.shape
        return jnp.ones((num_rows, 1)) / num_cols

    @f.defjvp
    def f_jvp(primals, tangents):
        mat, aux = primals
        vec, _ = tangents
        output = f(*primals)
        num_rows, num_cols = mat.shape
        size = num_rows * num_cols
        bd_mat = mat.reshape(1, 1, num_rows, num_cols)
        bd_mat = jnp.tile(bd_mat, reps=(num_rows, num_cols))
        bd_mat = bd_mat.reshape(size, num_rows, num_cols)
        rowsum = jnp.sum(mat, axis=1, keepdims=True)
        colsum = jnp.sum(mat, axis=0, keepdims=True)
        bd_rowsum = jnp.tile(rowsum, reps=(1, num_rows))
        bd_colsum = jnp.tile(colsum, reps=(num_cols, 1))
        bd_vec = vec.reshape(size, 1)

        def operate(mx, val):
            buf = 0
            for i in range(2):
                buf = buf + jnp.matmul(mx, bd_colsum) / jnp.power(aux, i)
            buf = jnp.matmul(bd_rowsum, buf)
            return buf * val[None, :]

        bd_buf = jax.vmap(operate, in_axes=(0, 0), out_axes=0)(bd_mat, bd_vec)
        bd_buf = bd_buf / aux
        jvp = jnp.sum(bd_buf, axis=0)
        jvp = jnp.mean(jvp, axis=1, keepdims=True)
        return (output, jvp)

    if variant == "plain":
        check(lambda mat, aux: jnp.sum(f(mat, aux)), mat, 0.5, argnums=(0, 1))
        check(weighted(f, mat, 0.5), mat, 0.5, argnums=(0, 1))
    else:
        # not in the original: a batch of 2 matrices (batch 2 == rows 2), output (2, 2, 1)
        mats = jax.random.normal(jax.random.key(48), (2, 2, 3))
        F = jax.vmap(f, in_axes=(0, None))
        check(weighted(F, mats, 0.5), mats, 0.5, argnums=(0, 1))


def test_custom_jvp_unbroadcasting__from_test_custom_jvp_unbroadcasting():
    a = jnp.array([1.0, 1.0])

    @jax.custom_jvp
    def f(x):
        return a * x

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        return a * x, a * dx

    check(lambda x: jnp.sum(f(x)), jnp.array(1.0))
    check(weighted(f, 1.0), 1.0)
    xs = rand(2)  # batch 2 == len(a): per-example output (2,), batched (2, 2)
    check(weighted(jax.vmap(f), xs), xs)


def test_sinc_constant_function_batching__from_test_sinc_constant_function_batching():
    batch_data = jnp.arange(9.0).reshape(3, 3)  # original (5, 3)

    @jax.vmap
    def f(x):
        return jax.lax.map(jnp.sinc, x)

    g = lambda param: f(param * batch_data).sum()  # noqa: E731

    @jax.vmap
    def f_ref(x):
        return jnp.stack([jnp.sinc(x_) for x_ in x])

    g_ref = lambda param: f_ref(param * batch_data).sum()  # noqa: E731
    check(g, 0.1)
    check(g_ref, 0.1)
    _close(funcgrad.grad(g)(0.1), jax.grad(g_ref)(0.1), "funcgrad.grad(g) vs jax.grad(g_ref)")
    check(weighted(lambda p: f(p * batch_data), 0.1), 0.1)
    X = jnp.asarray(rand(3, 3))
    check(weighted(f, X), X)


@pytest.mark.parametrize(
    "maybe_jit,maybe_vmap",
    [(True, True), (True, False), (False, True), (False, False), ("batch2", "batch2")],
    ids=["jit_vmap", "jit", "vmap", "plain", "vmap_batch2_extra"],
)
def test_symbolic_zero_custom_jvp__from_test_symbolic_zero_custom_jvp(maybe_jit, maybe_vmap):
    def f(static_scalar, static_array, dyn_scalar, dyn_array):
        out1 = static_scalar + dyn_scalar
        out2 = static_array + dyn_array
        return out1, out2

    def _pack(x):
        return lax.broadcast(x, (1,))

    def _unpack(x):
        (x,) = x
        return x

    def _vmap(fun):
        def _fun(*args):
            args = jax.tree.map(_pack, args)
            out = jax.vmap(fun)(*args)
            return jax.tree.map(_unpack, out)

        return _fun

    f = jax.custom_jvp(f)

    @partial(f.defjvp, symbolic_zeros=True)
    def f_jvp(primals, tangents):
        static_scalar, *_ = primals
        t_static, t_static_arr, t_dyn_scalar, t_dyn_array = tangents
        assert type(t_static) is jax.custom_derivatives.SymbolicZero, type(t_static)
        assert type(t_static_arr) is jax.custom_derivatives.SymbolicZero, type(t_static_arr)
        assert t_static.shape == ()
        assert t_static_arr.shape == (2,)
        return f(*primals), (static_scalar + 90, t_dyn_array + 91)

    if maybe_vmap == "batch2":
        # not in the original: a real batch of 2 (== len(static_array))
        sa = jnp.asarray(rand(2, 2, seed=5))

        def g(dyn_scalar, dyn_array):
            return jax.vmap(f)(jnp.array([1.0, 1.5]), sa, dyn_scalar, dyn_array)

        args = (jnp.asarray(rand(2)), jnp.asarray(rand(2, 2, seed=2)))
        check(weighted(g, *args), *args, argnums=(0, 1))
        return

    def g(dyn_scalar, dyn_array):
        f_ = _vmap(f) if maybe_vmap else f
        return f_(1.0, jnp.array([2.0, 3.0]), dyn_scalar, dyn_array)

    loss = weighted(g, 4.0, jnp.array([5.0, 6.0]))
    if maybe_jit:
        loss = jax.jit(loss)
    check(loss, 4.0, jnp.array([5.0, 6.0]), argnums=(0, 1))


def test_symbolic_zero_custom_jvp_vmap_output__from_test_symbolic_zero_custom_jvp_vmap_output():
    @jax.custom_jvp
    def f(x, y):
        return x * y

    @partial(f.defjvp, symbolic_zeros=True)
    def f_jvp(primals, tangents):
        x, y = primals
        x_dot, y_dot = tangents
        assert type(y_dot) is jax.custom_derivatives.SymbolicZero, type(y_dot)
        return f(x, y), y_dot

    x, y = rand(3), rand(3, seed=2)
    check(lambda x, y: jax.vmap(f)(x, y).sum(), x, y)
    check(weighted(jax.vmap(f), x, y), x, y)


def test_custom_jvp_functools_partial__from_test_custom_jvp_functools_partial():
    def fun(x, y, a):
        return x + y * a

    fun_wrapped = functools.partial(fun, a=0.1)

    def jvp_fn(primals, tangents):
        return jax.jvp(fun_wrapped, primals, tangents)

    fn = jax.custom_jvp(fun_wrapped)
    fn.defjvp(jvp_fn)
    check(lambda args: fn(*args), (1.0, 2.0))
    xs = (rand(3), rand(3, seed=2))
    check(weighted(jax.vmap(lambda args: fn(*args)), xs), xs)


def test_run_rules_more_than_once__from_test_run_rules_more_than_once():
    @jax.custom_jvp
    def f(x, y):
        return x

    @partial(f.defjvp, symbolic_zeros=True)
    def f_jvp(primals, tangents):
        x, _ = primals
        x_dot, _ = tangents
        return x, x_dot

    def body(x_y, _):
        x, y = x_y
        return (f(x, y), x), None

    def g(x):
        (out, _), _ = lax.scan(body, (x, 1.0), xs=None, length=2)
        return out

    check(g, 1.0)
    xs = rand(3)
    check(weighted(jax.vmap(g), xs), xs)


def test_symbolic_zero_custom_jvp_vmap_doesnt_instantiate__from_test_symbolic_zero_custom_jvp_vmap_doesnt_instantiate():  # noqa: E501
    @jax.custom_jvp
    def f(x, y):
        return y

    def f_jvp(primals, tangents):
        (_, y), (_, y_dot) = primals, tangents
        assert type(y_dot) is jax.custom_derivatives.SymbolicZero, type(y_dot)
        return y, y_dot

    f.defjvp(f_jvp, symbolic_zeros=True)

    def g(x):
        return f(x, f(x, 1.0))

    x = rand(3)
    check(weighted(jax.vmap(g), x), x)


def test_symbolic_zero_under_vmap_of_jit__from_test_symbolic_zero_under_vmap_of_jit():
    @jax.custom_jvp
    def f(x):
        return x + 1

    @f.defjvp
    def f_jvp(x, t):
        (x,), (t,) = x, t
        z = jax.custom_derivatives.zero_from_primal(x, symbolic_zeros=True)
        return f(x), z

    # jax.grad raises here in every form ("Argument 'SymbolicZero' ... is not a valid JAX
    # type", also without vmap or jit); the original runs jax.jvp, so jax.jacfwd is the reference
    x = jnp.arange(3.0)
    with pytest.raises(TypeError):
        jax.grad(weighted(jax.vmap(jax.jit(f)), x))(x)
    check(weighted(jax.vmap(jax.jit(f)), x), x, ref="jacfwd")
    xx = jnp.asarray(rand(3, 3))
    check(weighted(jax.vmap(jax.jit(f)), xx), xx, ref="jacfwd")


def test_custom_jvp_transpose_vjp3__from_test_custom_jvp_transpose_vjp3():
    @jax.custom_jvp
    def div(x, y):
        return x / y

    @div.defjvp
    def div_jvp(primals, tangents):
        (x, y), (x_dot, y_dot) = primals, tangents
        del y_dot
        return div(x, y), div(x_dot, y)

    _, jf = jax.vjp(lambda x: div(x, 2.0), 1.0)
    _, ff = funcgrad.vjp(lambda x: div(x, 2.0), 1.0)
    _close(ff(1.0), jf(1.0), "funcgrad.vjp vs jax.vjp")
    check(lambda x: div(x, 2.0), 1.0)
    check(div, 1.0, 2.0, argnums=(0, 1))
    xs, ys = rand(3), rand(3, seed=2) + 3
    check(weighted(jax.vmap(div), xs, ys), xs, ys, argnums=(0, 1))


def test_symbolic_zeros_under_jit__from_test_symbolic_zeros_under_jit():
    Zero = jax.custom_derivatives.SymbolicZero

    @jax.custom_jvp
    def f(x, y):
        return x * y

    @partial(f.defjvp, symbolic_zeros=True)
    def fjvp(primals, tangents):
        x, y = primals
        tx, ty = tangents
        assert type(tx) is not Zero or type(ty) is not Zero
        return f(x, y), (ty if type(tx) is Zero else tx if type(ty) is Zero else tx + ty)

    for argnums in (0, 1, (0, 1)):
        check(jax.jit(f), 0.1, 0.2, argnums=argnums)


def test_dce_symbolic_zeros__from_test_dce_symbolic_zeros():
    @jax.custom_jvp
    def f(x):
        return x

    @partial(f.defjvp, symbolic_zeros=True)
    def f_jvp(primals, tangents):
        (x,), (tx,) = primals, tangents
        return f(x), tx

    def f_wrapped(x):
        return jax.jit(f)((x, 3.0))

    x = jnp.asarray(rand(2))
    _close(funcgrad.jacrev(f_wrapped)(x), jax.jacrev(f_wrapped)(x), "jacrev")
    _close(
        jax.jacfwd(funcgrad.jacrev(f_wrapped))(x),
        jax.jacfwd(jax.jacrev(f_wrapped))(x),
        "jacfwd(jacrev)",
    )
    check(weighted(f_wrapped, x), x)


def test_dce_function__from_test_dce():
    # the original inspects pe.dce_jaxpr (jax._src internals); this keeps its function and
    # checks the gradient with each output alone (what DCE would keep) and with both
    @jax.custom_jvp
    def f(x, y):
        return jnp.sin(x), x + jnp.cos(y)

    @f.defjvp
    def f_jvp(primals, tangents):
        x, y = primals
        dx, dy = tangents
        return f(x, y), (2.0 * jnp.cos(x) * dx, 1.5 * dx - 0.5 * jnp.sin(y) * dy)

    x, y = 0.1, -1.3
    check(lambda x, y: f(x, y)[0], x, y, argnums=(0, 1))
    check(lambda x, y: f(x, y)[1], x, y, argnums=(0, 1))
    check(weighted(f, x, y), x, y, argnums=(0, 1))
    xs, ys = rand(3), rand(3, seed=2)
    check(weighted(jax.vmap(f), xs, ys), xs, ys, argnums=(0, 1))


def test_closed_over_tracers_error_message__from_test_closed_over_tracers_error_message():
    # JAX raises UnexpectedTracerError; funcgrad must raise too (not return a number)
    def f(x):
        @jax.custom_jvp
        def g(y):
            return x + y

        def g_jvp(primals, tangents):
            return g(x), 2 * primals[0]

        g.defjvp(g_jvp)
        return g(1.0)

    with pytest.raises(Exception):  # noqa: B017 - JAX's error, whichever it is
        jax.grad(f)(3.0)
    with pytest.raises(funcgrad.NonDifferentiableError):
        funcgrad.grad(f)(3.0)


def test_nondiff_arg_hiding_jvp_tracer__from_test_nondiff_arg_hiding_jvp_tracer():
    def f(x):
        @partial(jax.custom_jvp, nondiff_argnums=(0,))
        def g(h, x):
            return h(x)

        @g.defjvp
        def g_jvp(h, primals, tangents):
            (x,), (t,) = primals, tangents
            return g(h, x), 2.0 * t

        h = lambda y: x + y  # noqa: E731
        return g(h, x)

    with pytest.raises(Exception):  # noqa: B017 - JAX's error, whichever it is
        jax.jvp(f, (2.0,), (1.0,))
    # jax.grad: record what it does, then require funcgrad to agree (value) or raise with it
    try:
        want = jax.grad(f)(2.0)
    except Exception:
        with pytest.raises(funcgrad.NonDifferentiableError):
            funcgrad.grad(f)(2.0)
    else:
        _close(funcgrad.grad(f)(2.0), want, "funcgrad.grad vs jax.grad")


# ----------------------------------------------------------------------------- CustomVJPTest


def _vjp_sin2cos(ndim_assert=False):
    @jax.custom_vjp
    def f(x):
        if ndim_assert:
            assert jnp.ndim(x) == 0
        return jnp.sin(x)

    def f_fwd(x):
        if ndim_assert:
            assert jnp.ndim(x) == 0
        return f(x), jnp.cos(x)

    def f_rev(cos_x, g):
        return (2 * cos_x * g,)

    f.defvjp(f_fwd, f_rev)
    return f


@pytest.mark.parametrize("variant", ["vmap", "vmap_vmap", "vmap_grad_fwd", "vmap_grad_vmap_fwd"])
def test_vjp_vmap__from_CustomVJPTest_test_vmap(variant):
    f = _vjp_sin2cos(ndim_assert=True)
    x, xx = rand(3), rand(3, 3)
    if variant == "vmap":
        check(weighted(jax.vmap(f), x), x)
        check(lambda x: jax.vmap(f)(x).sum(), x)
    elif variant == "vmap_vmap":
        check(weighted(jax.vmap(jax.vmap(f)), xx), xx)
    elif variant == "vmap_grad_fwd":
        _close(jax.vmap(funcgrad.grad(f))(x), jax.vmap(jax.grad(f))(x), "vmap(grad(f))")
        _close(
            jax.vmap(jax.vmap(funcgrad.grad(f)))(xx),
            jax.vmap(jax.vmap(jax.grad(f)))(xx),
            "vmap(vmap(grad(f)))",
        )
    else:
        gf = lambda g: lambda x: jax.vmap(f)(x).sum()  # noqa: E731
        _close(
            jax.vmap(funcgrad.grad(gf(f)))(xx),
            jax.vmap(jax.grad(gf(f)))(xx),
            "vmap(grad(vmap(f).sum))",
        )


def _vjp_initial_style_foo(closes_over=None):
    """CustomVJPTest's initial-style function: a custom_vjp 3x (times sum(closes_over))."""
    scale = 1.0 if closes_over is None else closes_over

    @jax.custom_vjp
    def f(x):
        assert jnp.ndim(x) == 0
        return 3 * x * jnp.sum(scale)

    def f_fwd(x):
        return f(x), jnp.cos(x)

    def f_rev(cos_x, g):
        return (2 * cos_x * g,)

    f.defvjp(f_fwd, f_rev)

    def foo(x):
        out, _ = lax.scan(lambda c, _: (f(c), None), x, None, length=1)
        return out

    return foo


def test_vjp_initial_style_vmap__from_CustomVJPTest_test_initial_style_vmap():
    foo = _vjp_initial_style_foo()
    x = rand(3)
    check(lambda x: jax.vmap(foo)(x).sum(), x)
    check(weighted(jax.vmap(foo), x), x)


def test_vjp_initial_style_vmap_3__from_CustomVJPTest_test_initial_style_vmap_3():
    foo = _vjp_initial_style_foo(closes_over=jnp.arange(1.0, 4.0))
    x = rand(3)
    check(lambda x: jax.vmap(foo)(x).sum(), x)
    check(weighted(jax.vmap(foo), x), x)


def test_vjp_bwd_closes_over_tracer__from_CustomVJPTest_test_bwd_closes_over_tracer():
    def f(y):
        @jax.custom_vjp
        def f(x):
            return 2.0 * jnp.sin(x)

        def fwd(x):
            return f(x), ()

        def bwd(_, g):
            return (2.0 * jnp.cos(y) * g,)

        f.defvjp(fwd, bwd)
        return jax.grad(f)(1.0)

    # grad of a function that itself calls jax.grad of the custom_vjp
    check(f, 4.0)
    x = rand(3)
    check(weighted(jax.vmap(f), x), x)
    check(weighted(jax.jit(jax.vmap(f)), x), x)


def test_vjp_bwd_nones_vmap__from_CustomVJPTest_test_bwd_nones_vmap():
    @jax.custom_vjp
    def f(x, y):
        return x * jnp.sin(y)

    def f_fwd(x, y):
        return f(x, y), jnp.cos(y)

    def f_rev(cos, g):
        return (None, 2 * cos * g)

    f.defvjp(f_fwd, f_rev)
    x = rand(3)
    check(lambda x: jax.vmap(f)(x, x).sum(), x)
    check(weighted(lambda x: jax.vmap(f)(x, x), x), x)


def test_vjp_scan_batching_edge_case__from_CustomVJPTest_test_custom_vjp_scan_batching_edge_case():
    @jax.custom_vjp
    def mul(x, coeff):
        return x * coeff

    def mul_fwd(x, coeff):
        return mul(x, coeff), (x, coeff)

    def mul_bwd(res, g):
        x, coeff = res
        return g * coeff, (x * g).sum()

    mul.defvjp(mul_fwd, mul_bwd)

    def scan_over_mul(x, coeff):
        def f_(x, t):
            return mul(x, coeff), None

        y, _ = jax.lax.scan(f_, x, jnp.arange(3))
        return y

    x_batch = jax.random.normal(jax.random.key(1), (3, 3))  # original (3, 2)
    coeff = jnp.array(1.1)
    F = jax.vmap(scan_over_mul, in_axes=(0, None), out_axes=0)
    check(weighted(F, x_batch, coeff), x_batch, coeff, argnums=(0, 1))


# ----------------------------------------------------------------------------- extras
# Not from JAX's tests: the shape the fix is about (a custom_jvp whose function batches its
# output with the batch axis somewhere else than its rule does), at equal sizes.


def _scan_then_cumprod(p, scale=1.0):
    # the shape of funcgrad's regression test (fuzz seed 424290 program 6505): under vmap the
    # function declares (4, B, 1) and its rule (jax.jvp of the same code) returns (B, 4, 1)
    def body(c, x):
        v = jnp.arcsinh(x)
        return jnp.broadcast_to(jnp.sum(v), (2, 1)).astype(p.dtype), v

    _, ys = lax.scan(body, p, jnp.concatenate([p, p], axis=0))
    return jnp.cumprod(ys, axis=0) * scale


def _scan_then_cumprod_custom(scale):
    f = jax.custom_jvp(lambda p: _scan_then_cumprod(p, scale))

    @f.defjvp
    def f_jvp(primals, tangents):
        out, t = jax.jvp(_scan_then_cumprod, primals, tangents)
        return out * scale, 2.0 * t  # twice the slope: the function's own derivative is wrong

    return f


@pytest.mark.parametrize("batch", [4, 2])
@pytest.mark.parametrize("primal", ["values", "zeros"])
@pytest.mark.parametrize("wrap", ["vmap", "jit_vmap"])
def test_extra_rule_layout_differs_under_vmap(batch, primal, wrap):
    """Not from JAX's tests. ``primal="zeros"``: the function's (and rule's) primal output is
    all zeros (as in JAX's test_hard_stuff2, whose f returns zeros and whose rule passes the
    tangent through), so evaluating them cannot tell the layouts apart."""
    f = _scan_then_cumprod_custom(1.0 if primal == "values" else 0.0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 2, 1)))
    w = jnp.asarray(rng.normal(size=(batch, 4, 1)))
    ref = lambda x: jnp.sum(jax.vmap(f)(x) * w)  # noqa: E731
    loss = (lambda x: jnp.sum(jax.jit(jax.vmap(f))(x) * w)) if wrap == "jit_vmap" else ref
    # reference: the unstaged jax.grad (jax.grad(jax.jit(jax.vmap(f))) is JAX's own bug here)
    check(loss, x, ref=ref)
