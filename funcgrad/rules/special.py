"""Special functions: error functions, gamma family, Bessel, incomplete gamma, gamma sampling."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_vjp
from ._util import operand_ct as _ct

# ---- special functions ---------------------------------------------------------------------


@register_vjp(p.erf_p)
def erf_vjp(g, ans, x):
    del ans
    return (g * (2 / math.sqrt(math.pi)) * jnp.exp(-x * x),)


@register_vjp(p.erfc_p)
def erfc_vjp(g, ans, x):
    del ans
    return (g * (-2 / math.sqrt(math.pi)) * jnp.exp(-x * x),)


@register_vjp(p.erf_inv_p)
def erf_inv_vjp(g, ans, x):
    """Inverse-function rule: 1 / erf'(ans) = sqrt(pi) / 2 * exp(ans^2)."""
    del x
    return (g * (math.sqrt(math.pi) / 2) * jnp.exp(ans * ans),)


@register_vjp(p.lgamma_p)
def lgamma_vjp(g, ans, x):
    del ans
    return (g * lax.digamma(x),)


@register_vjp(p.digamma_p)
def digamma_vjp(g, ans, x):
    del ans
    return (g * lax.polygamma(jnp.ones((), x.dtype), x),)


@register_vjp(p.polygamma_p)
def polygamma_vjp(g, ans, m, x):
    """d/dx psi^(m)(x) = psi^(m+1)(x); the integer order m has no derivative."""
    del ans
    return None, _ct(g * lax.polygamma(lax.convert_element_type(m + 1, x.dtype), x), x)


@register_vjp(p.bessel_i0e_p)
def bessel_i0e_vjp(g, ans, x):
    """i0e = exp(-|x|) I0(x): i0e' = i1e - sign(x) i0e."""
    return (g * (lax.bessel_i1e(x) - jnp.sign(x) * ans),)


@register_vjp(p.bessel_i1e_p)
def bessel_i1e_vjp(g, ans, x):
    """i1e = exp(-|x|) I1(x): i1e' = i0e - (sign(x) + 1/x) i1e, which is 1/2 at x = 0."""
    safe = jnp.where(x == 0, jnp.ones_like(x), x)
    d = lax.bessel_i0e(x) - (jnp.sign(x) + 1 / safe) * ans
    return (g * jnp.where(x == 0, jnp.full_like(x, 0.5), d),)


def _igamma_dx(a, x):
    """d/dx P(a, x) = x^(a-1) exp(-x) / Gamma(a)."""
    return jnp.exp((a - 1) * jnp.log(x) - x - lax.lgamma(a))


@register_vjp(p.igamma_p)
def igamma_vjp(g, ans, a, x):
    del ans
    return _ct(g * lax.igamma_grad_a(a, x), a), _ct(g * _igamma_dx(a, x), x)


@register_vjp(p.igammac_p)
def igammac_vjp(g, ans, a, x):
    """Q = 1 - P."""
    del ans
    return _ct(-g * lax.igamma_grad_a(a, x), a), _ct(-g * _igamma_dx(a, x), x)


@register_vjp(p.random_gamma_p)
def random_gamma_vjp(g, ans, key, a, *, log_space):
    """Implicit reparameterisation: ds/da = random_gamma_grad(a, s); log s: divide by s."""
    del key
    if log_space:
        sample = jnp.exp(ans)
        return None, _ct(g * lax.random_gamma_grad(a, sample) / sample, a)
    return None, _ct(g * lax.random_gamma_grad(a, ans), a)


# ---- selection -----------------------------------------------------------------------------


@register_vjp(p.select_n_p)
def select_n_vjp(g, ans, which, *cases):
    """Case i takes ``g`` where ``which == i``; the predicate has no cotangent."""
    del ans
    zero = jnp.zeros((), g.dtype)
    if len(cases) == 2:  # boolean or 0/1 predicate: one mask serves both cases
        picked = lax.convert_element_type(which, bool)
        return (
            None,
            _ct(jnp.where(picked, zero, g), cases[0]),
            _ct(jnp.where(picked, g, zero), cases[1]),
        )
    return (None,) + tuple(_ct(jnp.where(which == i, g, zero), c) for i, c in enumerate(cases))


@register_vjp(p.clamp_p)
def clamp_vjp(g, ans, lo, x, hi):
    """clamp(lo, x, hi): x takes ``g`` strictly inside (lo, hi), hi where x > hi, lo where
    x < lo < hi.  At a tie nobody does.  With crossed bounds (hi <= lo) and x <= hi < lo the
    output is hi, yet JAX (our specification) gives nobody the cotangent: it assumes
    lo <= hi, and so does this rule."""
    del ans
    zero = jnp.zeros((), g.dtype)
    return (
        _ct(jnp.where((x < lo) & (lo < hi), g, zero), lo),
        _ct(jnp.where((lo < x) & (x < hi), g, zero), x),
        _ct(jnp.where(x > hi, g, zero), hi),
    )
