"""Decompositions: QR, symmetric/Hermitian and general eigenproblems, SVD."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.extend.core import primitives as p
from jax.lax import linalg as lla

from .._registry import register_vjp
from ._util import add_cts as _add
from ._util import cast_like
from ._util import eye_mask as _eye
from ._util import mm as _mm
from ._util import mT as _mT
from ._util import off_diag_reciprocal as _off_diag_reciprocal
from ._util import right_solve as _right_solve
from ._util import ungather as _unpermute


def _mH(x):
    return jnp.conj(_mT(x))


def _qr_tall(q, r, q_bar, r_bar):
    """A = QR, Q (m, n), R (n, n) upper with a real diagonal (LAPACK's, also for complex A).
    With C = Q^H dA R^-1: dQ = Q (Om - C) + dA R^-1 and dR = (C - Om) R, where
    Om = tril(C, -1) - tril(C, -1)^H + 1j Im(diag C) keeps Q^H dQ skew-Hermitian and diag(dR)
    real.  Transposed under JAX's pairing Re sum(X * Y), with M = Q^T Q_bar - R_bar R^T:
    A_bar = (Q_bar - conj(Q) [triu(M, 1) + tril(M^H, -1) + Re diag(M)]) R^-T.
    (Real A: Q copyltu(-M^T), the usual formula.)"""
    m = _add(
        None if q_bar is None else _mm(_mT(q), q_bar),
        None if r_bar is None else -_mm(r_bar, _mT(r)),
    )
    eye = _eye(m.shape[-1], m.ndim)
    diag = jnp.where(eye, m.real.astype(m.dtype), jnp.zeros((), m.dtype))
    n_mat = jnp.triu(m, 1) + jnp.tril(jnp.conj(_mT(m)), -1) + diag
    b = _add(q_bar, -_mm(jnp.conj(q), n_mat))
    return _right_solve(r, b, lower=False, transpose_a=True)


def _qr_fold_completion(q, q_bar, n):
    """Full tall QR: the completion Q2 = Q[:, n:] is a function of Q1 = Q[:, :n] through the
    Householder reflectors (arXiv:2409.13374 for the real case).  In compact WY form
    Q = I - V T V^H with V = [Vn; Vp] unit lower trapezoidal, so with K = Q1n - I and
    Z = Q1p K^-1 = Vp Vn^-1: Q2 = [0; I] + [I; Z] K Z^H.  Differentiating, with D = dQ1 and
    E = Dp - Z Dn: dQ2 = D Z^H + W E^H, W = [I; Z] K K^-H.  Transposed (JAX's pairing):
    Q1_bar += Q2_bar conj(Z) + [-Z^T E_bar; E_bar], E_bar = Q2_bar^H conj(W)."""
    q1, qb1, qb2 = q[..., :n], q_bar[..., :n], q_bar[..., n:]
    k = q1[..., :n, :] - _eye(n, q.ndim).astype(q.dtype)
    z = _mT(jnp.linalg.solve(_mT(k), _mT(q1[..., n:, :])))  # Z = Q1p K^-1
    w_top = _mH(jnp.linalg.solve(k, _mH(k)))  # K K^-H
    w = jnp.concatenate([w_top, _mm(z, w_top)], axis=-2)
    e_bar = _mm(_mH(qb2), jnp.conj(w))
    return qb1 + _mm(qb2, jnp.conj(z)) + jnp.concatenate([-_mm(_mT(z), e_bar), e_bar], axis=-2)


@register_vjp(p.qr_p)
def qr_vjp(g, ans, x, *, pivoting, full_matrices, use_magma):
    """A[:, perm] = QR, by cases: reduced tall or square (_qr_tall); complete tall, whose extra
    columns of Q move with the rest (_qr_fold_completion); wide A = [X Y], R = [R1 R2] with
    X = Q R1 (_qr_tall) and R2 = Q^H Y, whose transpose sends conj(Y R2_bar^T) to Q and
    conj(Q) R2_bar to Y."""
    del use_magma
    q, r = ans[0], ans[1]
    q_bar, r_bar = g[0], g[1]
    m, n = x.shape[-2:]
    if m >= n:
        if full_matrices and m > n:
            q_bar = None if q_bar is None else _qr_fold_completion(q, q_bar, n)
            q, r = q[..., :n], r[..., :n, :]
            r_bar = None if r_bar is None else r_bar[..., :n, :]
        a_bar = _qr_tall(q, r, q_bar, r_bar)
    else:
        if pivoting:
            x = jnp.take_along_axis(x, ans[2][..., None, :], axis=-1)
        r1_bar, r2_bar = (None, None) if r_bar is None else (r_bar[..., :m], r_bar[..., m:])
        if r2_bar is not None:
            q_bar = _add(q_bar, jnp.conj(_mm(x[..., m:], _mT(r2_bar))))
        a_bar = _qr_tall(q, r[..., :m], q_bar, r1_bar)
        y_bar = jnp.zeros_like(x[..., m:]) if r2_bar is None else _mm(jnp.conj(q), r2_bar)
        a_bar = jnp.concatenate([a_bar, y_bar], axis=-1)
    if pivoting:
        a_bar = _unpermute(a_bar, ans[2], axis=-1)
    return (cast_like(a_bar, x),)


# ----- eigen- and singular-value decompositions ----------------------------------------------


@register_vjp(p.eigh_p)
def eigh_vjp(g, ans, x, *, lower, sort_eigenvalues, subset_by_index, algorithm):
    """A = V diag(w) V^H: A_bar = conj(V) (diag(w_bar) + F o (V^T V_bar)) V^T, where
    F_ij = 1 / (w_j - w_i) off the diagonal (distinct eigenvalues)."""
    del lower, sort_eigenvalues, algorithm
    n = x.shape[-1]
    if subset_by_index is not None and tuple(subset_by_index) != (0, n):
        raise NotImplementedError(
            f"funcgrad's VJP of 'eigh' needs every eigenpair; got subset_by_index="
            f"{subset_by_index} for a {n}x{n} matrix."
        )
    v, w = ans
    v_bar, w_bar = g
    if v_bar is None:
        inner = jnp.conj(v) * w_bar[..., None, :].astype(v.dtype)
    else:
        f_mat = _off_diag_reciprocal(w[..., None, :] - w[..., :, None])
        mid = f_mat.astype(v.dtype) * _mm(_mT(v), v_bar)
        if w_bar is not None:  # the diagonal of mid is zero: put w_bar there
            mid = jnp.where(_eye(n, mid.ndim), w_bar[..., None, :].astype(mid.dtype), mid)
        inner = _mm(jnp.conj(v), mid)
    return (cast_like(_mm(inner, _mT(v)), x),)


def _eig_forward(
    active,
    x,
    *,
    compute_left_eigenvectors,
    compute_right_eigenvectors,
    enable_eigvec_derivs,
    implementation,
):
    """Compute both eigenvector sets in the forward pass: the VJP of w needs them.  They are
    computed differentiably (enable_eigvec_derivs=True) so that a second derivative can go
    through the backward pass, whose use of them, conj(VL) diag(w_bar / c) VR^T, is blind to
    their phases; a first derivative through user-visible eigenvectors still needs the
    user's enable_eigvec_derivs=True (eig_vjp checks it)."""
    del active, enable_eigvec_derivs
    w, vl, vr = lla.eig(x, enable_eigvec_derivs=True, implementation=implementation)
    outs = [w, *[vl] * compute_left_eigenvectors, *[vr] * compute_right_eigenvectors]
    return outs, (w, vl, vr)


def _eigvec_core(v, lam, v_bar):
    """Cotangent of P = V^-1 dA V from that of the right eigenvectors V (lam their eigenvalues).

    dV = V C: off the diagonal C_ik = P_ik / (lam_k - lam_i); the diagonal c_k is fixed by
    LAPACK's normalisation (unit 2-norm: Re(v_k^H dv_k) = 0; largest entry v_pk real:
    Im(dv_pk) = 0), so c_k = -Re(v_k^H w_k) - 1j Im(w_pk) / v_pk with W = V offdiag(C).
    Transposing under Re sum(X * Y), with s_k = sum_i V_bar_ik V_ik:
    W_bar = V_bar - conj(V) Re(s) - 1j [i = p_k] Im(s_k) / v_pk, and P_bar = E o (V^T W_bar)."""
    n = v.shape[-1]
    s = jnp.sum(v_bar * v, axis=-2)
    p_k = jnp.argmax(jnp.abs(v), axis=-2)
    v_p = jnp.take_along_axis(v, p_k[..., None, :], axis=-2)[..., 0, :]
    at_p = (
        lax.broadcasted_iota(p_k.dtype, (*p_k.shape[:-1], n, n), p_k.ndim - 1) == p_k[..., None, :]
    )
    fix = lax.complex(jnp.zeros_like(s.real), s.imag) / v_p  # 1j Im(s) / v_p
    w_bar = v_bar - jnp.conj(v) * s.real.astype(v.dtype)[..., None, :]
    w_bar = w_bar - jnp.where(at_p, fix[..., None, :], jnp.zeros((), v.dtype))
    e = _off_diag_reciprocal(lam[..., None, :] - lam[..., :, None])  # E_ik = 1/(lam_k - lam_i)
    return e * _mm(_mT(v), w_bar)


@register_vjp(p.eig_p, forward=_eig_forward)
def eig_vjp(
    g,
    res,
    x,
    *,
    compute_left_eigenvectors,
    compute_right_eigenvectors,
    enable_eigvec_derivs,
    implementation,
):
    """A V = V diag(w), U^H A = diag(w) U^H, c = diag(U^H V), so V^-1 = diag(1/c) U^H.
    Eigenvalues: dw = diag(P), P = V^-1 dA V.  Right eigenvectors (LAPACK gauge): see
    _eigvec_core.  Left eigenvectors are the right eigenvectors of A^H (eigenvalues conj(w)),
    whose P is U^-1 dA^H U.  Together: A_bar = conj(U) [diag(1/c) P_bar + P_left_bar^H
    diag(1/c)] V^T, its real part for a real A."""
    del implementation
    w_bar = g[0]
    vl_bar = g[1] if compute_left_eigenvectors else None
    vr_bar = g[1 + compute_left_eigenvectors] if compute_right_eigenvectors else None
    if not enable_eigvec_derivs and (vl_bar is not None or vr_bar is not None):
        raise NotImplementedError(
            "funcgrad differentiates the eigenvectors of 'eig' only when enable_eigvec_derivs="
            "True (as JAX does): their derivative assumes distinct eigenvalues and LAPACK's "
            "normalisation, which cannot be checked statically. Call jax.lax.linalg.eig(x, "
            "enable_eigvec_derivs=True), or use eigh for a symmetric or Hermitian matrix."
        )
    w, vl, vr = res
    c = jnp.sum(jnp.conj(vl) * vr, axis=-2)
    core = None
    if w_bar is not None:
        core = jnp.where(_eye(x.shape[-1], vr.ndim), w_bar[..., None, :], jnp.zeros((), vr.dtype))
    if vr_bar is not None:
        core = _add(core, _eigvec_core(vr, w, vr_bar))
    core = None if core is None else core / c[..., :, None]
    if vl_bar is not None:
        core = _add(core, _mT(jnp.conj(_eigvec_core(vl, jnp.conj(w), vl_bar))) / c[..., None, :])
    if core is None:
        return (None,)
    a_bar = _mm(_mm(jnp.conj(vl), core), _mT(vr))
    return (cast_like(a_bar if jnp.iscomplexobj(x) else a_bar.real, x),)


@register_vjp(p.svd_p)
def svd_vjp(g, ans, x, *, full_matrices, compute_uv, subset_by_index, algorithm):
    """A = U S V^H.  Derived against the Hermitian pairing Re tr(X^H Y), with cotangents
    U_b = conj(U_bar), V_b = Vt_bar^T; JAX's cotangent (pairing Re sum(X * Y)) is the conjugate
    of the result.  F_ij = 1/(s_j^2 - s_i^2), J = U^H U_b, K = V^H V_b:
    G = U [diag(s_bar) + (F o (J - J^H)) S + S (F o (K - K^H)) + 1j diag(Im J_kk / s_k)] V^H
        + (I - U U^H) U_b S^-1 V^H + U S^-1 V_b^H (I - V V^H).
    The 1j Im(J_kk) term is the phase gauge (JAX's, and the usual one): dU absorbs the
    imaginary part of diag(U^H dA V), dV has diag(V^H dV) = 0.  Real matrices: J_kk is real."""
    del algorithm
    m, n = x.shape[-2:]
    k = min(m, n)
    cplx = jnp.iscomplexobj(x)
    if subset_by_index is not None and tuple(subset_by_index) != (0, k):
        raise NotImplementedError(
            f"funcgrad's VJP of 'svd' needs every singular triple; got subset_by_index="
            f"{subset_by_index} for a {m}x{n} matrix."
        )
    if not compute_uv:  # s alone: recompute the vectors (JAX's own derivative does too)
        u, _, vt = lla.svd(x, full_matrices=False, compute_uv=True)
        a_bar = _mm(jnp.conj(u) * g[0].astype(x.dtype)[..., None, :], jnp.conj(vt))
        return (cast_like(a_bar, x),)
    if full_matrices and m != n:
        raise NotImplementedError(
            f"funcgrad's VJP of 'svd' with full_matrices=True needs a square matrix (the extra "
            f"singular vectors are not unique); got {m}x{n}. Use full_matrices=False."
        )
    s, u, vt = ans
    s_bar, u_bar, vt_bar = g
    f = _off_diag_reciprocal(s[..., None, :] ** 2 - s[..., :, None] ** 2).astype(x.dtype)
    s_c, s_inv = s.astype(x.dtype), (1 / s).astype(x.dtype)
    core = left = right = diag = None  # core: the k x k middle factor; left/right: projections
    if u_bar is not None:
        u_b = jnp.conj(u_bar)
        j = _mm(_mH(u), u_b)
        core = f * (j - _mH(j)) * s_c[..., None, :]
        if cplx:
            j_kk = jnp.diagonal(j, axis1=-2, axis2=-1)
            diag = lax.complex(jnp.zeros_like(s), j_kk.imag / s)
        if m > k:
            left = (u_b - _mm(u, j)) * s_inv[..., None, :]
    if vt_bar is not None:
        v_b_h = jnp.conj(vt_bar)  # V_b^H
        k_h = _mm(v_b_h, _mH(vt))  # K^H
        core = _add(core, s_c[..., :, None] * (f * (_mH(k_h) - k_h)))
        if n > k:
            right = _mm(u * s_inv[..., None, :], v_b_h - _mm(k_h, vt))
    if s_bar is not None:
        diag = _add(diag, s_bar.astype(x.dtype))
    if diag is not None:  # core's diagonal is zero: put the diagonal terms there
        eye = _eye(k, diag.ndim + 1)
        core = jnp.where(eye, diag[..., None, :], jnp.zeros((), x.dtype) if core is None else core)
    a_bar = _add(_mm(_add(_mm(u, core), left), vt), right)
    return (cast_like(jnp.conj(a_bar), x),)
