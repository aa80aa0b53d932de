"""Complex rows for every rule that takes complex operands, checked against ``jax.vjp``.

JAX's convention (autodiff cookbook, "Complex numbers and differentiation"): the VJP of a
map is the *transpose* of its tangent map under the bilinear pairing <u, v> = Re sum(u v),
with no conjugation.  So a holomorphic f gets ct * f'(z); conj gets conj(ct); real gets ct;
imag gets -1j ct; and for a real-valued loss L, the cotangent 1.0 pulls back to
dL/dx - 1j dL/dy, the *conjugate* of the steepest-ascent direction (checked numerically in
``test_real_loss_of_complex_input_matches_finite_differences``).

Every cotangent here is random with random imaginary parts (``table._random_like``): a real
cotangent would hide a missing or extra conjugation.  Linear algebra has its own complex rows
in ``test_linalg.py``.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad

from .table import C, I, Row, check_row, expand, f


@dataclasses.dataclass(frozen=True)
class Z:
    """A complex128 argument: real part in ``re`` (else the row's domain), imaginary in ``im``."""

    shape: tuple[int, ...] = ()
    re: tuple[float, float] | None = None
    im: tuple[float, float] = (-1.0, 1.0)

    def make(self, rng, row_domain):
        lo, hi = self.re or row_domain
        re = rng.uniform(lo, hi, size=self.shape)
        return jnp.asarray(re + 1j * rng.uniform(*self.im, size=self.shape), jnp.complex128)


def z(*shape, re=None):
    return Z(tuple(shape), re)


UN = [(z(),), (z(3, 4),), (z(0, 3),)]
FEW = [(z(),), (z(3, 4),)]
BIN = [(z(3, 4), z(3, 4)), (z(), z(3, 4)), (z(3, 1), z(1, 4))]
RIGHT = (0.5, 2.0)  # real parts away from the branch cuts of log, sqrt, pow, acosh ...


def aligned(fn):
    """``fn`` with size-1 axes for rank promotion, which conftest turns off (see elementwise)."""

    def call(x, y):
        n = max(x.ndim, y.ndim)
        x = x if x.ndim in (0, n) else x.reshape((1,) * (n - x.ndim) + x.shape)
        y = y if y.ndim in (0, n) else y.reshape((1,) * (n - y.ndim) + y.shape)
        return fn(x, y)

    return call


def _to_complex64_and_back(x):
    return x.astype(jnp.complex64).astype(jnp.complex128) * x


def _real_to_complex(x, y):
    """Real inputs, complex intermediates, real output: the cotangents must come back real."""
    w = lax.complex(x, y)
    return jnp.abs(jnp.exp(w) * x.astype(jnp.complex128)) + jnp.imag(jnp.conj(w) ** 2)


ELEMENTWISE = [
    Row("add", aligned(jnp.add), BIN, id="c-add"),
    Row("sub", aligned(jnp.subtract), BIN, id="c-sub"),
    Row("mul", aligned(jnp.multiply), BIN, id="c-mul"),
    Row("div", aligned(jnp.divide), BIN, domain=RIGHT, id="c-div"),
    Row("mul", lambda x: x * (2.0 - 1.5j), UN, id="c-mul-literal"),
    Row("mul", lambda x, r: x * r.astype(x.dtype), [(z(3, 4), f(3, 4))], id="c-mul-real"),
    Row("neg", jnp.negative, UN, id="c-neg"),
    Row(
        "add_any",
        lambda x, y: jax.extend.core.primitives.add_jaxvals_p.bind(x, y),
        BIN[:1],
        id="c-add_any",
    ),
    Row("copy", lambda x: jnp.copy(x) * x, FEW, id="c-copy"),
    Row("convert_element_type", _to_complex64_and_back, FEW, rtol=1e-6, id="c-to-c64"),
    Row("convert_element_type", _real_to_complex, [(f(3, 4), f(3, 4))], id="c-from-real"),
    Row("conj", jnp.conj, UN, id="c-conj"),
    Row("real", jnp.real, UN, id="c-real"),
    Row("imag", jnp.imag, UN, id="c-imag"),
    Row("complex", aligned(lax.complex), [(f(3, 4), f(3, 4)), (f(), f(3, 4))], id="c-complex"),
    Row("abs", jnp.abs, UN, id="c-abs"),
    Row("exp", jnp.exp, FEW, id="c-exp"),
    Row("exp2", jnp.exp2, FEW, id="c-exp2"),
    Row("expm1", jnp.expm1, FEW, id="c-expm1"),
    Row("log", jnp.log, FEW, domain=RIGHT, id="c-log"),
    Row("log1p", jnp.log1p, FEW, domain=RIGHT, id="c-log1p"),
    Row("sin", jnp.sin, FEW, id="c-sin"),
    Row("cos", jnp.cos, FEW, id="c-cos"),
    Row("tan", jnp.tan, FEW, domain=(-1.0, 1.0), id="c-tan"),
    Row("tanh", jnp.tanh, FEW, id="c-tanh"),
    Row("sinh", jnp.sinh, FEW, id="c-sinh"),
    Row("cosh", jnp.cosh, FEW, id="c-cosh"),
    Row("asin", jnp.arcsin, FEW, domain=(-0.5, 0.5), id="c-asin"),
    Row("acos", jnp.arccos, FEW, domain=(-0.5, 0.5), id="c-acos"),
    Row("atan", jnp.arctan, FEW, domain=(-0.5, 0.5), id="c-atan"),
    Row("asinh", jnp.arcsinh, FEW, domain=RIGHT, id="c-asinh"),
    Row("acosh", jnp.arccosh, FEW, domain=(1.5, 3.0), id="c-acosh"),
    Row("atanh", jnp.arctanh, FEW, domain=(-0.5, 0.5), id="c-atanh"),
    Row("logistic", jax.nn.sigmoid, FEW, id="c-logistic"),
    Row("sqrt", jnp.sqrt, FEW, domain=RIGHT, id="c-sqrt"),
    Row("rsqrt", lax.rsqrt, FEW, domain=RIGHT, id="c-rsqrt"),
    Row("square", jnp.square, FEW, id="c-square"),
    Row("integer_pow", lambda x: x**3, UN, id="c-integer_pow"),
    Row("integer_pow", lambda x: x**2, FEW, id="c-integer_pow-2"),
    Row("integer_pow", lambda x: x**-2, FEW, domain=RIGHT, id="c-integer_pow-neg"),
    Row("integer_pow", lambda x: lax.integer_pow(x, 1), FEW, id="c-integer_pow-1"),
    Row("integer_pow", lambda x: lax.integer_pow(x, 0) * x, FEW, id="c-integer_pow-0"),
    Row("pow", aligned(lax.pow), BIN, domain=RIGHT, id="c-pow"),
    Row(
        "pow",
        lambda x, y: lax.pow(x, y.astype(x.dtype)),
        [(z(3, 4), f(3, 4))],
        domain=RIGHT,
        id="c-pow-real-exponent",
    ),
    Row("pow", lambda x: x**2.5, FEW, domain=RIGHT, id="c-pow-literal"),
    Row(
        "select_n",
        lambda x, y: lax.select_n(jnp.real(x) > jnp.real(y), x, y),
        BIN[:1],
        id="c-select_n",
    ),
    Row("sin", lambda x: jnp.sin(x) * jnp.exp(x) / (x * x + 3), FEW, id="c-fanout"),
    # complex max / min order lexicographically (real part, then imaginary)
    Row("max", aligned(jnp.maximum), BIN[:1], id="c-max"),
    Row("min", aligned(jnp.minimum), BIN[:1], id="c-min"),
]


def _dot(spec):
    def dot(x, y):
        return lax.dot_general(x, y, spec)

    return dot


def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 2), "SAME", rhs_dilation=(1, 2))


def _scatter_add(x, u, i):
    return x.at[i].add(u)


def _scatter_mul(x, u, i):
    return x.at[i].mul(u, unique_indices=True)


def _dynamic_update(x, u, i):
    return lax.dynamic_update_slice(x, u, (i, jnp.int32(1)))


def _pad(x, v):
    return lax.pad(x, v, [(-1, 2, 1), (2, -3, 2)])


def _sort_by_real(k, v):
    return lax.sort((k, v), num_keys=1)[1]


STRUCTURAL = [
    Row("reshape", lambda x: x.reshape(-1), UN, id="c-reshape"),
    Row("transpose", lambda x: x.T, [(z(3, 4),), (z(0, 3),)], id="c-transpose"),
    Row(
        "broadcast_in_dim",
        lambda x: lax.broadcast_in_dim(x, (2, 3, 4), (1, 2)),
        [(z(3, 4),), (z(1, 4),)],
        id="c-broadcast",
    ),
    Row("squeeze", lambda x: lax.squeeze(x, (0, 2)), [(z(1, 3, 1, 4),)], id="c-squeeze"),
    Row("tile", lambda x: jnp.tile(x, (2, 3)), [(z(3, 4),)], id="c-tile"),
    Row("rev", lambda x: lax.rev(x, (0,)), [(z(3, 4),)], id="c-rev"),
    Row(
        "concatenate",
        lambda x, y: jnp.concatenate([x, y, x], axis=1),
        [(z(3, 4), z(3, 2))],
        id="c-concatenate",
    ),
    Row("split", lambda x: lax.split(x, (1, 3, 1), axis=0), [(z(5, 2),)], id="c-split"),
    Row("slice", lambda x: x[1:3, ::2], [(z(3, 4),)], id="c-slice"),
    Row("pad", _pad, [(z(4, 6), z())], id="c-pad"),
    Row(
        "dynamic_slice",
        lambda x, i: lax.dynamic_slice(x, (i, jnp.int32(1)), (2, 3)),
        [(z(4, 5), I((), 3))],
        id="c-dynamic_slice",
    ),
    Row(
        "dynamic_update_slice",
        _dynamic_update,
        [(z(4, 5), z(2, 3), I((), 3))],
        id="c-dynamic_update_slice",
    ),
    Row("gather", lambda x, i: x[i], [(z(5), I((7,), 5)), (z(4, 3), I((2, 3), 4))], id="c-gather"),
    Row(
        "scatter-add",
        _scatter_add,
        [(z(5), z(6), C(np.array([0, 2, 0, 4, 2, 0], np.int32)))],
        id="c-scatter-add",
    ),
    Row(
        "scatter",
        lambda x, u, i: x.at[i].set(u),
        [(z(5), z(3), C(np.array([4, 0, 2], np.int32)))],
        id="c-scatter",
    ),
    Row(
        "scatter-mul",
        _scatter_mul,
        [(z(5), z(3), C(np.array([4, 0, 2], np.int32)))],
        id="c-scatter-mul",
    ),
    Row("sort", _sort_by_real, [(f(6), z(6))], id="c-sort-values"),
    Row("sort", lambda x: lax.sort(x, dimension=0), [(z(3, 4),)], id="c-sort-complex-keys"),
    Row(
        "scatter-sub",
        lambda x, u, i: x.at[i].subtract(u),
        [(z(5), z(3), C(np.array([0, 2, 0])))],
        id="c-scatter-sub",
    ),
]

REDUCTIONS = [
    Row("reduce_sum", jnp.sum, UN, id="c-sum"),
    Row("reduce_sum", lambda x: jnp.sum(x, axis=0), [(z(3, 4),)], id="c-sum-first"),
    Row("reduce_sum", lambda x: jnp.mean(x, axis=1), [(z(3, 4),)], id="c-mean"),
    Row("reduce_prod", jnp.prod, [(z(5),), (z(3, 4),)], id="c-prod"),
    Row(
        "reduce_prod",
        lambda x: jnp.prod(x, axis=-1),
        [(C(np.array([[1 + 1j, 0, 2 - 1j], [0, 0, 1j]])),)],
        id="c-prod-zeros",
    ),
    Row("reduce_max", lambda x: jnp.max(x, axis=0), [(z(3, 4),)], id="c-max-reduce"),
    Row("reduce_min", lambda x: jnp.min(x, axis=1), [(z(3, 4),)], id="c-min-reduce"),
    Row("reduce_max", lambda x: jax.nn.logsumexp(x, axis=0), [(z(3, 4),)], id="c-logsumexp"),
    Row("reduce", lambda x: lax.reduce(x, 1 + 1j, lax.add, (1,)), [(z(4, 3),)], id="c-reduce"),
    Row("cumsum", lambda x: lax.cumsum(x, axis=1), [(z(3, 4),)], id="c-cumsum"),
    Row("cummax", lambda x: lax.cummax(x, axis=0), [(z(3, 4),)], id="c-cummax"),
    Row("cummin", lambda x: lax.cummin(x, axis=1), [(z(3, 4),)], id="c-cummin"),
    Row("cumlogsumexp", lambda x: lax.cumlogsumexp(x, axis=0), [(z(3, 4),)], id="c-cumlogsumexp"),
    Row("cumsum", lambda x: lax.cumsum(x, axis=0, reverse=True), [(z(3, 4),)], id="c-cumsum-rev"),
    Row("cumprod", lambda x: lax.cumprod(x, axis=1), [(z(3, 4),)], id="c-cumprod"),
    Row(
        "cumprod", lambda x: lax.cumprod(x, axis=0, reverse=True), [(z(3, 4),)], id="c-cumprod-rev"
    ),
    Row(
        "reduce_window_sum",
        lambda x: lax.reduce_window(x, 0j, lax.add, (2, 2), (1, 1), "SAME"),
        [(z(4, 5),)],
        id="c-window-sum",
    ),
]

CONTRACTIONS = [
    Row("dot_general", jnp.matmul, [(z(2, 3), z(3, 4)), (z(3), z(3, 4))], id="c-matmul"),
    Row(
        "dot_general",
        _dot((((2, 0), (0, 3)), ((1,), (2,)))),
        [(z(2, 3, 4, 5), z(4, 6, 3, 2))],
        id="c-dot-scrambled",
    ),
    Row("dot_general", lambda x, w: x @ w.astype(x.dtype), [(z(2, 3), f(3, 4))], id="c-dot-real"),
    Row("dot_general", lambda x: jnp.vdot(x, x), [(z(4),)], id="c-vdot"),
    Row("conv_general_dilated", _conv, [(z(2, 3, 5, 6), z(4, 3, 2, 3))], id="c-conv"),
    Row("fft", jnp.fft.fft, [(z(8),), (z(3, 5),)], id="c-fft"),
    Row("fft", jnp.fft.ifft2, [(z(3, 4),)], id="c-ifft2"),
    Row("fft", lambda x: jnp.fft.irfft(x, n=8), [(z(5),)], id="c-irfft"),
    Row("fft", jnp.fft.rfft, [(f(7),)], id="c-rfft"),
]


def _scan_body(c, x):
    c = c * x + jnp.sin(c)
    return c, jnp.conj(c) * x


@jax.custom_vjp
def _scaled_conj(x):
    return jnp.conj(x) * 2.0


_scaled_conj.defvjp(lambda x: (_scaled_conj(x), None), lambda r, g: (jnp.conj(g) * 2.0,))


def _cond(p, x):
    return lax.cond(jnp.real(p) > 0, jnp.exp, lambda v: jnp.conj(v) * v, x)


CONTROL = [
    Row("scan", lambda c, xs: lax.scan(_scan_body, c, xs), [(z(3), z(4, 3))], id="c-scan"),
    Row("cond", _cond, [(z(), z(3)), (Z((), (-2.0, -1.0)), z(3))], id="c-cond"),
    Row("jit", lambda x: jax.jit(lambda v: jnp.exp(v) * jnp.conj(v))(x), FEW, id="c-jit"),
    Row("custom_vjp_call", lambda x: _scaled_conj(x) * x, FEW, id="c-custom_vjp"),
    Row("custom_jvp_call", lambda x: jax.nn.softplus(jnp.real(x)) * x, FEW, id="c-custom_jvp"),
]

ROWS = ELEMENTWISE + STRUCTURAL + REDUCTIONS + CONTRACTIONS + CONTROL


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_complex_rule(row, group):
    check_row(row, group)


def test_complex_sign_is_z_over_abs_z():
    """sign(z) = z / |z| off 0, so its VJP is that of z / |z| (JAX 0.12's; JAX 0.10.2's jax.vjp
    treats complex sign as flat, so the reference here is the quotient, not jax.vjp(sign)).
    At 0 the cotangent is 0, as in JAX 0.12.  Real sign stays flat (rows in elementwise)."""
    rng = np.random.default_rng(5)
    z0 = jnp.asarray(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4))).at[0, 0].set(0)
    ct = jnp.asarray(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)))
    (got,) = funcgrad.vjp(jnp.sign, z0)[1](ct)
    (want,) = jax.vjp(lambda z: z / jnp.abs(z), z0.at[0, 0].set(1))[1](ct)
    np.testing.assert_allclose(got, want.at[0, 0].set(0), rtol=1e-12)
    (got_real,) = funcgrad.vjp(jnp.sign, jnp.real(z0))[1](jnp.real(ct))
    np.testing.assert_array_equal(got_real, np.zeros((3, 4)))


# ----- a real-valued loss of complex inputs -------------------------------------------------


def _real_loss(z):
    w = jnp.sin(z) * jnp.conj(z) + jnp.abs(z) ** 3
    return jnp.sum(jnp.real(w) ** 2 + jnp.imag(w * z))


def test_real_loss_of_complex_input_matches_finite_differences():
    """For real L(z), JAX's gradient is dL/dx - 1j dL/dy (the conjugate of the ascent
    direction); funcgrad's pullback of 1.0 must equal it, and both must match differences."""
    rng = np.random.default_rng(3)
    z0 = jnp.asarray(rng.normal(size=4) + 1j * rng.normal(size=4))
    out, pullback = funcgrad.vjp(_real_loss, z0)
    (got,) = pullback(jnp.ones_like(out))
    want = jax.grad(_real_loss)(z0)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    eps = 1e-6
    basis = np.eye(4)
    d_re = [(_real_loss(z0 + eps * e) - _real_loss(z0 - eps * e)) / (2 * eps) for e in basis]
    d_im = [
        (_real_loss(z0 + 1j * eps * e) - _real_loss(z0 - 1j * eps * e)) / (2 * eps) for e in basis
    ]
    np.testing.assert_allclose(got, np.array(d_re) - 1j * np.array(d_im), rtol=1e-6)


def _abs_sum(z):
    return jnp.sum(jnp.abs(z) ** 2 * jnp.abs(z + 0.5j))


def test_abs_of_complex_to_second_order():
    """grad of grad through |z|: the backward pass of abs on complex values differentiated again,
    as a real loss of the complex first gradient (so both passes meet complex cotangents)."""
    z0 = jnp.asarray([0.3 + 1.2j, -0.7 - 0.4j, 1.5 + 0.1j])

    def second(grad_fn):
        def g(z):
            dz = grad_fn(_abs_sum)(z)
            return jnp.sum(jnp.real(dz) * jnp.imag(dz) + jnp.abs(dz))

        return grad_fn(g)(z0)

    def fg_grad(fun):
        @functools.wraps(fun)
        def g(z):
            out, pullback = funcgrad.vjp(fun, z)
            return pullback(jnp.ones_like(out))[0]

        return g

    np.testing.assert_allclose(second(fg_grad), second(jax.grad), rtol=1e-10)


# ----- second order: each complex rule's backward pass is differentiated again ----------------


def _svd_rebuild(a):
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    return (u * s[None, :]) @ vt @ jnp.conj(u.T)


def _eigh_weighted(a):
    w, v = jnp.linalg.eigh(a + jnp.conj(a.T))
    return jnp.abs(v) ** 2 * w[None, :]


def _eig_weighted(a):
    w, _, vr = lax.linalg.eig(a, enable_eigvec_derivs=True)
    return jnp.abs(vr) * w[None, :]


def _qr_r(a):
    return jnp.linalg.qr(a)[1]


def _chain(a):
    return jnp.sin(a) * jnp.sqrt(a + 3) / (a * jnp.conj(a) + 1)


@pytest.mark.parametrize(
    "fun", [_chain, _svd_rebuild, _eigh_weighted, _eig_weighted, _qr_r, jnp.linalg.inv]
)
def test_complex_second_order(fun):
    """grad of a real function of the complex first gradient, against jax.grad twice."""
    rng = np.random.default_rng(11)
    a0 = jnp.asarray(rng.uniform(-1, 1, (3, 3)) + 1j * rng.uniform(-1, 1, (3, 3))) + 3 * jnp.eye(3)

    def loss(a):
        y = fun(a)
        return jnp.sum(jnp.abs(y) ** 2 + jnp.real(y))

    def fg_grad(f):
        def g(a):
            out, pullback = funcgrad.vjp(f, a)
            return pullback(jnp.ones_like(out))[0]

        return g

    def second(grad_fn):
        def g(a):
            d = grad_fn(loss)(a)
            return jnp.sum(jnp.real(d) * jnp.imag(d) + jnp.abs(d) ** 2)

        return grad_fn(g)(a0)

    np.testing.assert_allclose(second(fg_grad), second(jax.grad), rtol=1e-9, atol=1e-12)
