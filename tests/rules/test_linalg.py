"""Rule table for linear algebra: triangular/tridiagonal solves, custom_linear_solve (every
jnp.linalg.solve), and the cholesky, lu, qr, eigh, eig and svd factorisations.

Inputs are well conditioned by construction: symmetric matrices have well-separated
eigenvalues, general matrices are diagonally dominant, so every function is smooth there.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from jax import lax

import funcgrad

from .table import C, Row, check_row, expand, f

# ----- argument specs ----------------------------------------------------------------------


def general(*shape):
    """A well-conditioned (diagonally dominant where square) matrix stack."""

    def make(rng):
        a = rng.uniform(-1.0, 1.0, size=shape)
        k = min(shape[-2:])
        a[..., range(k), range(k)] += 3.0
        return a

    return C(make)


def spd(*shape, eigs=None):
    """A symmetric positive-definite stack with eigenvalues 1, 2, ..., n (well separated)."""
    n = shape[-1]

    def make(rng):
        q, _ = np.linalg.qr(rng.standard_normal(shape))
        w = np.arange(1.0, n + 1.0) if eigs is None else np.asarray(eigs)
        return (q * w) @ np.swapaxes(q, -1, -2)

    return C(make)


def hermitian(n):
    """A complex Hermitian positive-definite matrix with eigenvalues 1, ..., n."""

    def make(rng):
        z = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
        q, _ = np.linalg.qr(z)
        return (q * np.arange(1.0, n + 1.0)) @ q.conj().T

    return C(make)


def complex_general(*shape):
    def make(rng):
        a = rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape)
        a[..., range(shape[-1]), range(shape[-1])] += 3.0
        return a

    return C(make)


def cgeneral(*shape):
    """A complex well-conditioned stack (diagonally dominant in its leading square block)."""

    def make(rng):
        a = rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape)
        k = min(shape[-2:])
        a[..., range(k), range(k)] += 3.0
        return a

    return C(make)


def cvec(*shape):
    return C(lambda rng: rng.normal(size=shape) + 1j * rng.normal(size=shape))


def nonsymmetric(*shape, dtype=float):
    """P diag(1, ..., n) P^-1 with P diagonally dominant: distinct real eigenvalues."""
    n = shape[-1]

    def make(rng):
        p = rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
        if dtype is complex:
            p = p + 1j * rng.uniform(-0.5, 0.5, size=shape)
        p = p + 2 * np.eye(n)
        return (p * np.arange(1.0, n + 1.0)) @ np.linalg.inv(p)

    return C(make)


def diag_dominant(*shape):
    """The main diagonal of a tridiagonal system: entries in (4, 5)."""
    return f(*shape, domain=(4.0, 5.0))


# ----- functions ---------------------------------------------------------------------------


def triangular(a, b, **params):
    return lax.linalg.triangular_solve(a, b, **params)


def cholesky_unsymmetrised(a):
    """The primitive alone: no (a + a^T) / 2 before it, so its own convention shows."""
    return lax.linalg.cholesky(a, symmetrize_input=False)


def cho_solve(s, b):
    return jsl.cho_solve(jsl.cho_factor(s, lower=True), b)


def lu_solve(a, b):
    return jsl.lu_solve(jsl.lu_factor(a), b)


def solve_triangular(a, b, *, trans, lower, unit_diagonal=False):
    return jsl.solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit_diagonal)


def lu_packed(a):
    return lax.linalg.lu(a)[0]


def qr_complete(a):
    return jnp.linalg.qr(a, mode="complete")


def qr_pivoted(a):
    q, r, _ = jsl.qr(a, pivoting=True)
    return q, r


def eigh_gauge_free(a):
    """V o V and V diag(w) V^T do not depend on the eigenvectors' signs."""
    w, v = jnp.linalg.eigh(a)
    return v * v, (v * w[None, :]) @ v.T


def eigh_primitive(a):
    return lax.linalg.eigh(a, symmetrize_input=False)


def qr_r_only(a):
    return jnp.linalg.qr(a, mode="r")


def qr_q_only(a):
    return jnp.linalg.qr(a)[0]


def eigenvectors(a):
    return jnp.linalg.eigh(a)[1]


def svd_u_only(a):
    return jnp.linalg.svd(a, full_matrices=False)[0]


def svd_s_only(a):
    return jnp.linalg.svd(a, full_matrices=False)[1]


def svd_vt_only(a):
    return jnp.linalg.svd(a, full_matrices=False)[2]


def svd_reduced(a):
    return jnp.linalg.svd(a, full_matrices=False)


def singular_values(a):
    return jnp.linalg.svd(a, compute_uv=False)


def spectral_norm(a):
    return jnp.linalg.norm(a, ord=2)


def nuclear_norm(a):
    return jnp.linalg.norm(a, ord="nuc")


def lstsq(a, b):
    return jnp.linalg.lstsq(a, b)[0]


def symmetric_linear_solve(s, b):
    def matvec(x):
        return s @ x

    def solve(matvec, r):
        del matvec
        return jnp.linalg.solve(s, r)

    return lax.custom_linear_solve(matvec, b, solve, symmetric=True)


# Eigenvectors and singular vectors are defined up to a phase (a sign when real).  eigh and
# svd fix it the way JAX does (diag(V^H dV) = 0; svd's dU takes the imaginary part of
# diag(U^H dA V)), and eig with enable_eigvec_derivs=True follows LAPACK's normalisation
# (unit norm, largest entry real); funcgrad's rules use the same conventions, so the raw
# vectors are compared too.  But those are conventions: what is convention-free is a function
# that does not see the phase, as in JAX's own tests.  The *_gauge_free rows check such
# functions, |v|^2 and the rank-one projectors v_k v_k^H (or v_k u_k^H / u_k^H v_k), which
# every correct rule must get right whatever phase it assumes.


def eigh_gauge_free_complex(a):
    """|V|^2 and V diag(w) V^H: invariant to each eigenvector's phase."""
    w, v = jnp.linalg.eigh(a)
    return jnp.abs(v) ** 2, (v * w[..., None, :]) @ jnp.conj(jnp.swapaxes(v, -1, -2))


def eig_vectors(a):
    return lax.linalg.eig(a, compute_left_eigenvectors=False, enable_eigvec_derivs=True)


def eig_left_vectors(a):
    return lax.linalg.eig(a, compute_right_eigenvectors=False, enable_eigvec_derivs=True)


def eig_both_vectors(a):
    return lax.linalg.eig(a, enable_eigvec_derivs=True)


def eig_gauge_free(a):
    """Spectral projectors v_k u_k^H / (u_k^H v_k) and |v_k|^2: blind to every phase and scale."""
    w, vl, vr = lax.linalg.eig(a, enable_eigvec_derivs=True)
    c = jnp.sum(jnp.conj(vl) * vr, axis=-2)
    proj = jnp.einsum("...ik,...jk->...kij", vr, jnp.conj(vl)) / c[..., :, None, None]
    return w, proj, jnp.abs(vr) ** 2


def svd_gauge_free(a):
    """U S V^H, |U|^2 and |V|^2: invariant to the phase shared by each pair (u_k, v_k)."""
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    return (u * s[..., None, :]) @ vt, jnp.abs(u) ** 2, jnp.abs(vt) ** 2


def _triangular_rows():
    rows = []
    for left, lower, trans, conj, unit in itertools.product((True, False), repeat=5):
        b = (f(3, 2), f(2, 3, 2)) if left else (f(2, 3), f(2, 2, 3))
        fun = functools.partial(
            triangular,
            left_side=left,
            lower=lower,
            transpose_a=trans,
            conjugate_a=conj,
            unit_diagonal=unit,
        )
        name = f"tri-{'L' if left else 'R'}{'lo' if lower else 'up'}{'T' * trans}"
        name += f"{'C' * conj}{'U' * unit}"
        groups = [(general(3, 3), b[0])]
        if not (trans or conj or unit):  # batches and 1x1 once per side and triangle
            groups += [(general(2, 3, 3), b[1]), (general(1, 1), f(1, 1))]
        rows.append(Row("triangular_solve", fun, groups, id=name))
    return rows


def _complex_triangular_rows():
    """Every triangular_solve variant on complex operands (conjugate_a matters only here)."""
    rows = []
    for left, lower, trans, conj, unit in itertools.product((True, False), repeat=5):
        fun = functools.partial(
            triangular,
            left_side=left,
            lower=lower,
            transpose_a=trans,
            conjugate_a=conj,
            unit_diagonal=unit,
        )
        name = f"ctri-{'L' if left else 'R'}{'lo' if lower else 'up'}{'T' * trans}"
        name += f"{'C' * conj}{'U' * unit}"
        b = cvec(3, 2) if left else cvec(2, 3)
        rows.append(Row("triangular_solve", fun, [(cgeneral(3, 3), b)], id=name))
    return rows


COMPLEX_ROWS = [
    *_complex_triangular_rows(),
    Row("triangular_solve", cho_solve, [(hermitian(3), cvec(3, 2))], id="c-cho_solve"),
    Row("triangular_solve", lu_solve, [(cgeneral(3, 3), cvec(3, 2))], id="c-lu_solve"),
    Row(
        "custom_linear_solve",
        jnp.linalg.solve,
        [(cgeneral(3, 3), cvec(3)), (cgeneral(2, 3, 3), cvec(2, 3, 2))],
        id="c-solve",
    ),
    Row("custom_linear_solve", jnp.linalg.inv, [(cgeneral(3, 3),)], id="c-inv"),
    Row(
        "tridiagonal_solve",
        lambda dl, d, du, b: lax.linalg.tridiagonal_solve(dl, d + 4, du, b),
        [(cvec(4), cvec(4), cvec(4), cvec(4, 2))],
        id="c-tridiagonal_solve",
    ),
    Row("cholesky", cholesky_unsymmetrised, [(hermitian(3),)], id="c-cholesky-primitive"),
    Row("lu", lu_packed, [(cgeneral(3, 3),), (cgeneral(2, 3, 3),), (cgeneral(1, 1),)], id="c-lu"),
    Row("lu", lu_packed, [(cgeneral(4, 3),), (cgeneral(3, 4),)], id="c-lu-rectangular"),
    Row("lu", jnp.linalg.det, [(cgeneral(4, 4),)], id="c-det"),
    Row("lu", jnp.linalg.slogdet, [(cgeneral(2, 4, 4),)], id="c-slogdet"),
    Row(
        "qr",
        jnp.linalg.qr,
        [(cgeneral(3, 3),), (cgeneral(4, 3),), (cgeneral(3, 4),), (cgeneral(2, 4, 3),)],
        id="c-qr",
    ),
    Row("qr", qr_r_only, [(cgeneral(4, 3),), (cgeneral(3, 4),)], id="c-qr-r-only"),
    Row("qr", qr_q_only, [(cgeneral(3, 4),), (cgeneral(4, 3),)], id="c-qr-q-only"),
    Row(
        "qr",
        qr_complete,
        [(cgeneral(4, 3),), (cgeneral(2, 5, 3),), (cgeneral(3, 4),), (cgeneral(3, 3),)],
        id="c-qr-complete",
    ),
    Row("qr", qr_pivoted, [(cgeneral(3, 3),), (cgeneral(4, 3),)], id="c-qr-pivoted"),
    Row("eigh", eigh_primitive, [(hermitian(3),)], id="c-eigh-primitive"),
    Row("eigh", jnp.linalg.eigvalsh, [(hermitian(4),)], id="c-eigvalsh"),
    Row("eigh", eigh_gauge_free_complex, [(hermitian(4),)], id="c-eigh-gauge-free"),
    Row("eig", eig_vectors, [(nonsymmetric(3, 3),), (nonsymmetric(2, 4, 4),)], id="eig-vectors"),
    Row(
        "eig",
        eig_vectors,
        [(nonsymmetric(3, 3, dtype=complex),), (nonsymmetric(2, 4, 4, dtype=complex),)],
        id="c-eig-vectors",
    ),
    Row("eig", eig_left_vectors, [(nonsymmetric(3, 3),)], id="eig-left-vectors"),
    Row("eig", eig_left_vectors, [(nonsymmetric(3, 3, dtype=complex),)], id="c-eig-left"),
    Row("eig", eig_both_vectors, [(nonsymmetric(3, 3, dtype=complex),)], id="c-eig-both"),
    Row("eig", eig_gauge_free, [(nonsymmetric(4, 4),)], id="eig-gauge-free"),
    Row("eig", eig_gauge_free, [(nonsymmetric(4, 4, dtype=complex),)], id="c-eig-gauge-free"),
    Row(
        "svd",
        svd_reduced,
        [(cgeneral(3, 3),), (cgeneral(4, 3),), (cgeneral(3, 4),), (cgeneral(2, 4, 3),)],
        id="c-svd",
    ),
    Row("svd", jnp.linalg.svd, [(cgeneral(3, 3),)], id="c-svd-full-square"),
    Row("svd", svd_u_only, [(cgeneral(4, 3),)], id="c-svd-u-only"),
    Row("svd", svd_vt_only, [(cgeneral(3, 4),)], id="c-svd-vt-only"),
    Row("svd", singular_values, [(cgeneral(4, 3),), (cgeneral(3, 4),)], id="c-svd-values"),
    Row("svd", svd_gauge_free, [(cgeneral(4, 3),), (cgeneral(3, 4),)], id="c-svd-gauge-free"),
    Row("svd", svd_gauge_free, [(general(4, 3),)], id="svd-gauge-free"),
    Row("svd", nuclear_norm, [(cgeneral(3, 4),)], id="c-norm-nuc"),
    Row("svd", jnp.linalg.pinv, [(cgeneral(4, 3),)], id="c-pinv"),
]


ROWS = [
    *_triangular_rows(),
    Row(
        "triangular_solve",
        functools.partial(
            triangular, left_side=True, lower=False, transpose_a=True, conjugate_a=True
        ),
        [(complex_general(3, 3), complex_general(3, 2))],
        id="tri-complex",
    ),
    Row(
        "triangular_solve",
        functools.partial(solve_triangular, trans=0, lower=True),
        [(general(3, 3), f(3))],
        id="solve_triangular",
    ),
    Row(
        "triangular_solve",
        functools.partial(solve_triangular, trans=1, lower=False, unit_diagonal=True),
        [(general(3, 3), f(3, 2))],
        id="solve_triangular-T-unit",
    ),
    Row("triangular_solve", cho_solve, [(spd(3, 3), f(3, 2))], id="cho_solve"),
    Row("triangular_solve", lu_solve, [(general(3, 3), f(3, 2))], id="lu_solve"),
    Row(
        "tridiagonal_solve",
        lax.linalg.tridiagonal_solve,
        [(f(4), diag_dominant(4), f(4), f(4, 2)), (f(1), diag_dominant(1), f(1), f(1, 2))],
    ),
    Row(
        "tridiagonal_solve",
        lax.linalg.tridiagonal_solve,
        [(f(2, 3), diag_dominant(2, 3), f(2, 3), f(2, 3, 1))],
        id="tridiagonal_solve-batched",
    ),
    # custom_linear_solve: jnp.linalg.solve, inv and everything built on them.
    Row(
        "custom_linear_solve",
        jnp.linalg.solve,
        [(general(3, 3), f(3)), (general(2, 3, 3), f(2, 3, 2)), (general(1, 1), f(1))],
        id="solve",
    ),
    Row("custom_linear_solve", jnp.linalg.inv, [(general(3, 3),)], id="inv"),
    Row("custom_linear_solve", symmetric_linear_solve, [(spd(3, 3), f(3))], id="symmetric"),
    # cholesky
    Row("cholesky", jnp.linalg.cholesky, [(spd(3, 3),), (spd(2, 3, 3),), (spd(1, 1),)]),
    Row("cholesky", cholesky_unsymmetrised, [(spd(3, 3),)], id="cholesky-primitive"),
    Row("cholesky", jnp.linalg.cholesky, [(hermitian(3),)], id="cholesky-complex"),
    # lu: det and slogdet (n > 3) run their custom_jvp, which solves with the LU factors.
    Row("lu", lu_packed, [(general(3, 3),), (general(2, 3, 3),), (general(1, 1),)]),
    Row("lu", lu_packed, [(general(4, 3),), (general(3, 4),)], id="lu-rectangular"),
    Row("lu", jnp.linalg.det, [(general(4, 4),)], id="det"),
    Row("lu", jnp.linalg.slogdet, [(general(2, 4, 4),)], id="slogdet"),
    # qr: reduced square/tall/wide, complete, and column pivoting.
    Row(
        "qr",
        jnp.linalg.qr,
        [(general(3, 3),), (general(4, 3),), (general(3, 4),), (general(2, 4, 3),)],
    ),
    # Unused outputs reach the rules as None (symbolic zeros).
    Row("qr", qr_r_only, [(general(4, 3),), (general(3, 4),)], id="qr-r-only"),
    Row("qr", qr_q_only, [(general(3, 4),)], id="qr-q-only"),
    Row("qr", qr_complete, [(general(4, 3),)], id="qr-complete"),
    Row("qr", qr_pivoted, [(general(4, 3),)], id="qr-pivoted"),
    # eigh: eigenvalues 1, 2, ..., n, so distinct and well separated.
    Row("eigh", jnp.linalg.eigh, [(spd(3, 3),), (spd(2, 3, 3),), (spd(1, 1),)]),
    Row("eigh", eigenvectors, [(spd(3, 3),)], id="eigh-vectors-only"),
    Row("eigh", eigh_gauge_free, [(spd(3, 3),)], id="eigh-gauge-free"),
    Row("eigh", eigh_primitive, [(spd(3, 3),)], id="eigh-primitive"),
    Row("eigh", jnp.linalg.eigvalsh, [(spd(3, 3),)], id="eigvalsh"),
    Row("eigh", jnp.linalg.eigh, [(hermitian(3),)], id="eigh-complex"),
    # eig: eigenvalues only (eigenvectors of non-symmetric matrices raise).
    Row("eig", jnp.linalg.eigvals, [(nonsymmetric(3, 3),), (nonsymmetric(2, 3, 3),)]),
    Row("eig", jnp.linalg.eigvals, [(nonsymmetric(3, 3, dtype=complex),)], id="eig-complex"),
    # svd: distinct singular values by diagonal dominance.
    Row(
        "svd",
        svd_reduced,
        [(general(3, 3),), (general(4, 3),), (general(3, 4),), (general(2, 4, 3),)],
    ),
    Row("svd", jnp.linalg.svd, [(general(3, 3),)], id="svd-full-square"),
    Row("svd", svd_u_only, [(general(4, 3),)], id="svd-u-only"),
    Row("svd", svd_s_only, [(general(3, 4),)], id="svd-s-only"),
    Row("svd", svd_vt_only, [(general(3, 4),)], id="svd-vt-only"),
    Row("svd", singular_values, [(general(4, 3),)], id="svd-values"),
    Row("svd", spectral_norm, [(general(3, 3),)], id="norm-2"),
    Row("svd", nuclear_norm, [(general(3, 4),)], id="norm-nuc"),
    Row("svd", jnp.linalg.pinv, [(general(4, 3),)], id="pinv"),
    Row("svd", lstsq, [(general(4, 3), f(4, 2))], id="lstsq"),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)


@pytest.mark.parametrize("row,group", expand(COMPLEX_ROWS))
def test_complex_rule(row, group):
    """Complex operands, random complex cotangents, against jax.vjp (JAX's convention)."""
    check_row(row, group)


def test_eig_vectors_against_finite_differences():
    """The eigenvector VJP is the derivative of LAPACK's normalised vectors themselves: central
    differences of <ct, V(A)> (real part: JAX's pairing) match <A_bar, dA>."""
    rng = np.random.default_rng(7)
    for dtype in (float, complex):
        a = nonsymmetric(4, 4, dtype=dtype).make(rng, None)
        d = jnp.asarray(
            rng.normal(size=(4, 4)) + (1j * rng.normal(size=(4, 4)) if dtype is complex else 0)
        )
        ct = jnp.asarray(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))

        def loss(a, ct=ct):
            return jnp.real(jnp.sum(ct * eig_vectors(a)[1]))

        eps = 1e-6
        fd = (loss(a + eps * d) - loss(a - eps * d)) / (2 * eps)
        (a_bar,) = funcgrad.vjp(lambda a: eig_vectors(a)[1], a)[1](ct)
        np.testing.assert_allclose(jnp.real(jnp.sum(a_bar * d)), fd, rtol=1e-6, err_msg=str(dtype))


def test_qr_pivoted_against_finite_differences():
    """Wide or batched pivoted QR: jax.vjp is no reference there (JAX 0.10.2 uses the
    unpermuted X2 for R2 = Q^T X2 and fails on batches), so compare central differences."""
    rng = np.random.default_rng(0)
    for shape in [(3, 4), (2, 3, 4)]:
        x = jnp.asarray(rng.standard_normal(shape))
        cq, cr = (jnp.asarray(rng.standard_normal(o.shape)) for o in qr_pivoted(x))

        def loss(x, cq=cq, cr=cr):
            q, r = qr_pivoted(x)
            return jnp.sum(cq * q) + jnp.sum(cr * r)

        d = jnp.asarray(rng.standard_normal(shape))
        eps = 1e-6
        fd = (loss(x + eps * d) - loss(x - eps * d)) / (2 * eps)
        (x_bar,) = funcgrad.vjp(qr_pivoted, x)[1]((cq, cr))
        np.testing.assert_allclose(jnp.sum(x_bar * d), fd, rtol=1e-6, err_msg=str(shape))


def svd_full_tall(a):
    return lax.linalg.svd(a, full_matrices=True)


def eig_vectors_without_derivs(a):
    return jnp.linalg.eig(a)[1]


@pytest.mark.parametrize(
    "fun, arg, match",
    [
        (svd_full_tall, np.arange(6.0).reshape(3, 2), "full_matrices"),
        (eig_vectors_without_derivs, np.diag([1.0, 2.0]), "enable_eigvec_derivs"),
    ],
)
def test_unsupported_cases_raise(fun, arg, match):
    """Cases without a derivative in funcgrad raise a NotImplementedError that says why."""
    arg = jnp.asarray(arg)
    _, pullback = funcgrad.vjp(fun, arg)
    with pytest.raises(NotImplementedError, match=match):
        pullback(jax.tree.map(jnp.ones_like, fun(arg)))
