"""Fourier transforms. Each is linear; its VJP is its transpose (no conjugation, as in JAX's
convention for complex cotangents), over the trailing ``len(fft_lengths)`` axes."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_vjp
from ._util import cast_like


def _fft(x, fft_type, fft_lengths):
    return lax.fft(x, fft_type, tuple(fft_lengths))


@register_vjp(p.fft_p)
def fft_vjp(g, ans, x, *, fft_type, fft_lengths):
    """FFT and IFFT matrices are symmetric: the transpose is the same transform. RFFT keeps the
    first n//2+1 frequencies of a full FFT of a real signal: its transpose zero-pads g back to
    n and takes the real part of a full FFT. IRFFT (the inverse, real output) transposes to
    conj(w * rfft(g)) / n, where w counts each kept frequency's Hermitian twins (2 inside,
    1 for DC and Nyquist)."""
    del ans
    kind = lax.FftType(fft_type)
    if 0 in fft_lengths:  # an empty transform (JAX's rfft of 0 samples has one, zero, bin)
        return (jnp.zeros(np.shape(x), x.dtype),)
    if kind in (lax.FftType.FFT, lax.FftType.IFFT):
        return (_fft(g, kind, fft_lengths),)
    if kind == lax.FftType.RFFT:
        n = fft_lengths[-1]
        pad = [(0, 0)] * (g.ndim - 1) + [(0, n - g.shape[-1])]
        full = _fft(jnp.pad(g, pad), lax.FftType.FFT, fft_lengths)
        return (cast_like(jnp.real(full), x),)
    n = fft_lengths[-1]
    m = np.shape(x)[-1]
    weights = np.full((m,), 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    spectrum = _fft(g, lax.FftType.RFFT, fft_lengths)
    scale = (weights / float(np.prod(fft_lengths))).reshape((1,) * (spectrum.ndim - 1) + (m,))
    return (cast_like(jnp.conj(spectrum * scale.astype(spectrum.dtype)), x),)
