"""VJPs of the dense linear-algebra primitives: factorisations and the solves built on them.

Every rule works on stacks of matrices (leading batch dimensions) and follows JAX's conventions
for the primitives: ``cholesky`` and ``eigh`` differentiate the perturbation as given, without
symmetrising it (``jnp.linalg`` symmetrises the input *before* the primitive, and that
``(a + a.T) / 2`` makes the final gradient symmetric).  ``triangular_solve``,
``tridiagonal_solve``, ``custom_linear_solve``, ``cholesky``, ``lu`` and (in
``decompositions.py``) ``qr``, ``eigh``, ``eig`` and ``svd`` also take complex inputs.  JAX's
convention: a cotangent is the transpose of the tangent map under the pairing
<X, Y> = Re sum(X * Y), with no conjugation; a complex-linear tangent map (lu, the solves)
transposes with plain transposes, and a map with conj or Re/Im in it (cholesky's L^H, the
gauge conditions of eigenvectors) picks up conjugates where those sit.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.extend.core import primitives as p
from jax.lax import linalg as lla

from .. import _jax_compat as compat
from .._registry import register_vjp
from ._util import cast_like
from ._util import eye_mask as _eye
from ._util import mm as _mm
from ._util import mT as _mT
from ._util import right_solve as _right_solve
from ._util import ungather as _unpermute

# ----- helpers -------------------------------------------------------------------------------


def _solve_lower(l, b, **kw):
    """``op(l)^-1 b`` for lower-triangular ``l``."""
    return lla.triangular_solve(l, b, left_side=True, lower=True, **kw)


# ----- solves --------------------------------------------------------------------------------


@register_vjp(p.triangular_solve_p)
def triangular_solve_vjp(
    g, ans, a, b, *, left_side, lower, transpose_a, conjugate_a, unit_diagonal
):
    """x = op(T)^-1 b (or b op(T)^-1): b_bar = op(T)^-T g; op(T)_bar = -b_bar x^T (or
    -x^T b_bar), taken back through op and masked to the triangle the solve reads."""
    b_bar = lla.triangular_solve(
        a,
        g,
        left_side=left_side,
        lower=lower,
        transpose_a=not transpose_a,
        conjugate_a=conjugate_a,
        unit_diagonal=unit_diagonal,
    )
    op_bar = -_mm(b_bar, _mT(ans)) if left_side else -_mm(_mT(ans), b_bar)
    a_bar = _mT(op_bar) if transpose_a else op_bar
    a_bar = jnp.conj(a_bar) if conjugate_a else a_bar
    k = 1 if unit_diagonal else 0  # a unit diagonal is never read
    a_bar = jnp.tril(a_bar, -k) if lower else jnp.triu(a_bar, k)
    return cast_like(a_bar, a), cast_like(b_bar, b)


def _pad_last(x, before):
    """Prepend (``before``) or append one zero along the last axis."""
    zero = jnp.zeros((*x.shape[:-1], 1), x.dtype)
    return jnp.concatenate([zero, x] if before else [x, zero], axis=-1)


@register_vjp(p.tridiagonal_solve_p)
def tridiagonal_solve_vjp(g, ans, dl, d, du, b, *, perturb_singular):
    """x = T^-1 b: b_bar = T^-T g, and each diagonal of T gets its band of -b_bar x^T."""
    # T^T has sub-diagonal du[i-1] and super-diagonal dl[i+1] (dl[0], du[-1] are unused).
    dl_t, du_t = _pad_last(du[..., :-1], True), _pad_last(dl[..., 1:], False)
    b_bar = lla.tridiagonal_solve(dl_t, d, du_t, g, perturb_singular=perturb_singular)
    d_bar = -jnp.sum(b_bar * ans, axis=-1)
    dl_bar = _pad_last(-jnp.sum(b_bar[..., 1:, :] * ans[..., :-1, :], axis=-1), True)
    du_bar = _pad_last(-jnp.sum(b_bar[..., :-1, :] * ans[..., 1:, :], axis=-1), False)
    return (cast_like(dl_bar, dl), cast_like(d_bar, d), cast_like(du_bar, du), cast_like(b_bar, b))


@register_vjp(p.linear_solve_p)
def linear_solve_vjp(g, ans, *args, const_lengths, jaxprs):
    """x = A^-1 b with A the ``matvec`` map: b_bar = A^-T g, itself a linear solve with matvec
    and vecmat swapped (so a second derivative reaches A through vecmat's consts, not through
    the frozen factors of ``solve``); the matvec consts c get -(d matvec(c, x) / dc)^T b_bar,
    a VJP of the matvec jaxpr.  As in JAX, the other consts get none."""
    from .._backward import backward, forward  # the engine sits above the rule table

    n_mv, n_vm, n_s, n_ts = const_lengths
    n_consts = n_mv + n_vm + n_s + n_ts
    if jaxprs.transpose_solve is None:
        raise NotImplementedError(
            "funcgrad cannot differentiate lax.custom_linear_solve without a transpose_solve; "
            "pass transpose_solve= (or symmetric=True) to lax.custom_linear_solve."
        )
    mv_c, vm_c = args[:n_mv], args[n_mv : n_mv + n_vm]
    s_c, ts_c, b = (
        args[n_mv + n_vm : n_consts - n_ts],
        args[n_consts - n_ts : n_consts],
        args[n_consts:],
    )
    g = [jnp.zeros_like(x) if c is None else c for c, x in zip(g, ans, strict=True)]
    t_lengths, t_jaxprs = compat.transposed_linear_solve_params(const_lengths, jaxprs)
    b_bar = p.linear_solve_p.bind(
        *vm_c,
        *mv_c,
        *ts_c,
        *s_c,
        *g,
        const_lengths=t_lengths,
        jaxprs=t_jaxprs,
    )
    mv_bar = [None] * n_mv
    if n_mv:
        mv = jaxprs.matvec
        active = [True] * n_mv + [False] * len(ans)
        _, tape = forward(mv.jaxpr, mv.consts, [*mv_c, *ans], active)
        mv_bar = backward(mv.jaxpr, tape, [-c for c in b_bar])[:n_mv]
    b_bar = [cast_like(c, x) for c, x in zip(b_bar, b, strict=True)]
    return (*mv_bar, *[None] * (n_vm + n_s + n_ts), *b_bar)


# ----- factorisations ------------------------------------------------------------------------


@register_vjp(p.cholesky_p)
def cholesky_vjp(g, ans, x):
    """A = L L^H: A_bar = L^-T Phi(L^T L_bar) conj(L)^-1, Phi = lower triangle, halved diagonal."""
    l = jnp.tril(ans)  # the primitive leaves A's upper triangle in its output
    phi = jnp.tril(_mm(_mT(l), g))
    phi = jnp.where(_eye(x.shape[-1], x.ndim), phi / 2, phi)
    y = _solve_lower(l, phi, transpose_a=True)
    a_bar = lla.triangular_solve(l, y, left_side=False, lower=True, conjugate_a=True)
    if compat.CHOLESKY_FOLDS_COTANGENT:  # JAX 0.12: onto the (Hermitian) lower triangle
        # A_eff = tril(A, -1) + Re diag(A) + tril(A, -1)^H: fold the upper part onto the lower,
        # and keep the real part of the diagonal (the imaginary part is never read)
        diag = jnp.where(_eye(x.shape[-1], x.ndim), a_bar.real.astype(a_bar.dtype), 0)
        a_bar = jnp.tril(a_bar, -1) + jnp.tril(jnp.conj(_mT(a_bar)), -1) + diag
    return (cast_like(a_bar, x),)


@register_vjp(p.lu_p)
def lu_vjp(g, ans, x):
    """A[perm] = L U.  Square: A_bar[perm] = L^-T (tril(L^T G, -1) + triu(G U^T)) U^-T with
    G = lu_bar; the extra rows of a tall L (columns of a wide U) add their own blocks.
    dA = dL U + L dU is complex-linear in (dL, dU), so under JAX's convention the same plain
    transposes (no conjugation) serve complex matrices."""
    g, lu, perm = g[0], ans[0], ans[2]  # pivots and permutation are integers
    m, n = x.shape[-2:]
    k = min(m, n)
    lu1, g1 = lu[..., :k, :k], g[..., :k, :k]
    g_l = g_u = g1  # what reaches L1's strict lower part / U1's upper part
    if m > k:  # tall: L2 = (B2 - L2 dU) U^-1 also depends on U
        extra = _right_solve(lu1, g[..., k:, :], lower=False, transpose_a=True)  # G2 U^-T
        g_u = g1 - _mm(_mT(lu[..., k:, :]), extra)
    if n > k:  # wide: U2 = L^-1 (B2 - dL U2) also depends on L
        extra = _solve_lower(lu1, g[..., :, k:], transpose_a=True, unit_diagonal=True)
        g_l = g1 - _mm(extra, _mT(lu[..., :, k:]))
    l1 = jnp.tril(lu1, -1)  # L1 = l1 + I
    mid = jnp.tril(_mm(_mT(l1), g_l) + g_l, -1) + jnp.triu(_mm(g_u, _mT(jnp.triu(lu1))))
    a_bar = _right_solve(lu1, mid, lower=False, transpose_a=True)
    a_bar = _solve_lower(lu1, a_bar, transpose_a=True, unit_diagonal=True)
    if k < m or k < n:
        a_bar = jnp.concatenate([a_bar, extra], axis=-2 if m > k else -1)
    return (cast_like(_unpermute(a_bar, perm, axis=-2), x),)
