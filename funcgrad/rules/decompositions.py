"""Decompositions: QR, symmetric/Hermitian and general eigenproblems, SVD."""

from __future__ import annotations

import jax.numpy as jnp
from jax.extend.core import primitives as p
from jax.lax import linalg as lla

from .._registry import register_vjp
from ._util import add_cts as _add
from ._util import cast_like
from ._util import eye_mask as _eye
from ._util import mm as _mm
from ._util import mT as _mT
from ._util import off_diag_reciprocal as _off_diag_reciprocal
from ._util import real_only as _real_only
from ._util import right_solve as _right_solve
from ._util import ungather as _unpermute


def _qr_tall(q, r, q_bar, r_bar):
    """A = QR, Q (m, n), R (n, n): A_bar = (Q_bar + Q copyltu(M)) R^-T, M = R R_bar^T - Q_bar^T Q
    (copyltu: mirror the lower triangle onto the upper)."""
    m = _add(
        None if r_bar is None else _mm(r, _mT(r_bar)),
        None if q_bar is None else -_mm(_mT(q_bar), q),
    )
    b = _add(q_bar, _mm(q, jnp.tril(m) + _mT(jnp.tril(m, -1))))
    return _right_solve(r, b, lower=False, transpose_a=True)


def _qr_fold_completion(q, q_bar, n):
    """Full tall QR: the completion Q2 = Q[:, n:] moves with Q1 = Q[:, :n] as the Householder
    factorisation makes it (arXiv:2409.13374, eq. 32): with D = dQ1, Z = Q1p (Q1n - I)^-1,
    dQ2 = D Z^T - (Q1 + Q2 Z) (Dp - Z Dn)^T.  Returns the cotangent this sends to Q1."""
    q1, q2, qb1, qb2 = q[..., :n], q[..., n:], q_bar[..., :n], q_bar[..., n:]
    q_nn, q_pn = q1[..., :n, :], q1[..., n:, :]
    z_t = jnp.linalg.solve(_mT(q_nn) - _eye(n, q.ndim), _mT(q_pn))  # Z^T, (n, m - n)
    e_bar = -_mm(_mT(qb2), q1 + _mm(q2, _mT(z_t)))  # cotangent of Dp - Z Dn
    return qb1 + _mm(qb2, _mT(z_t)) + jnp.concatenate([-_mm(z_t, e_bar), e_bar], axis=-2)


@register_vjp(p.qr_p)
def qr_vjp(g, ans, x, *, pivoting, full_matrices, use_magma):
    """A[:, perm] = QR, by cases: reduced tall or square (_qr_tall); complete tall, whose extra
    columns of Q move with the rest (_qr_fold_completion); wide A = [X Y], R = [R1 R2] with
    X = Q R1 (_qr_tall) and R2 = Q^T Y."""
    del use_magma
    _real_only("qr", x)
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
            q_bar = _add(q_bar, _mm(x[..., m:], _mT(r2_bar)))
        a_bar = _qr_tall(q, r[..., :m], q_bar, r1_bar)
        y_bar = jnp.zeros_like(x[..., m:]) if r2_bar is None else _mm(q, r2_bar)
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
        inner = jnp.conj(v) * w_bar[..., None, :]
    else:
        mid = _off_diag_reciprocal(w[..., None, :] - w[..., :, None]) * _mm(_mT(v), v_bar)
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
    """Compute both eigenvector sets in the forward pass: the VJP of w needs them."""
    del active, enable_eigvec_derivs
    w, vl, vr = lla.eig(x, implementation=implementation)
    outs = [w, *[vl] * compute_left_eigenvectors, *[vr] * compute_right_eigenvectors]
    return outs, (w, vl, vr)


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
    """Eigenvalues only: dw_k = (VL^H dA VR)_kk / c_k with c = diag(VL^H VR), so
    A_bar = conj(VL) diag(w_bar / c) VR^T (its real part for a real A)."""
    del compute_left_eigenvectors, compute_right_eigenvectors, implementation
    if any(c is not None for c in g[1:]):
        raise NotImplementedError(
            "funcgrad differentiates 'eig' through its eigenvalues only; the eigenvectors of a "
            f"non-symmetric matrix have no gauge-free derivative (enable_eigvec_derivs="
            f"{enable_eigvec_derivs}). Use eigh for symmetric matrices."
        )
    _, vl, vr = res
    c = jnp.sum(jnp.conj(vl) * vr, axis=-2)
    a_bar = _mm(jnp.conj(vl) * (g[0] / c)[..., None, :], _mT(vr))
    return (cast_like(a_bar if jnp.iscomplexobj(x) else a_bar.real, x),)


@register_vjp(p.svd_p)
def svd_vjp(g, ans, x, *, full_matrices, compute_uv, subset_by_index, algorithm):
    """A = U S V^T, F_ij = 1/(s_j^2 - s_i^2), J = U^T U_bar, K = V^T V_bar:
    A_bar = U [diag(s_bar) + (F o (J - J^T)) S + S (F o (K - K^T))] V^T
            + (I - U U^T) U_bar S^-1 V^T + U S^-1 V_bar^T (I - V V^T)."""
    del algorithm
    _real_only("svd", x)
    m, n = x.shape[-2:]
    k = min(m, n)
    if subset_by_index is not None and tuple(subset_by_index) != (0, k):
        raise NotImplementedError(
            f"funcgrad's VJP of 'svd' needs every singular triple; got subset_by_index="
            f"{subset_by_index} for a {m}x{n} matrix."
        )
    if not compute_uv:  # s alone: recompute the vectors (JAX's own derivative does too)
        u, _, vt = lla.svd(x, full_matrices=False, compute_uv=True)
        return (cast_like(_mm(u * g[0][..., None, :], vt), x),)
    if full_matrices and m != n:
        raise NotImplementedError(
            f"funcgrad's VJP of 'svd' with full_matrices=True needs a square matrix (the extra "
            f"singular vectors are not unique); got {m}x{n}. Use full_matrices=False."
        )
    s, u, vt = ans
    s_bar, u_bar, vt_bar = g
    f = _off_diag_reciprocal(s[..., None, :] ** 2 - s[..., :, None] ** 2)
    s_inv = 1 / s
    core = left = right = None  # core: the k x k middle factor; left/right: projections
    if u_bar is not None:
        j = _mm(_mT(u), u_bar)
        core = f * (j - _mT(j)) * s[..., None, :]
        if m > k:
            left = (u_bar - _mm(u, j)) * s_inv[..., None, :]
    if vt_bar is not None:
        kk = _mm(vt, _mT(vt_bar))  # V^T V_bar
        core = _add(core, s[..., :, None] * (f * (kk - _mT(kk))))
        if n > k:
            right = _mm(u * s_inv[..., None, :], vt_bar - _mm(_mT(kk), vt))
    if s_bar is not None:  # core's diagonal is zero: put s_bar there
        eye = _eye(k, s_bar.ndim + 1)
        diag = s_bar[..., None, :].astype(x.dtype)
        core = jnp.where(eye, diag, 0 if core is None else core)
    a_bar = _add(_mm(_add(_mm(u, core), left), vt), right)
    return (cast_like(a_bar, x),)
