"""Rows for the Fourier transforms (complex intermediates, real inputs and outputs)."""

import jax.numpy as jnp
import pytest

from .table import Row, check_row, expand, f


def _c(x):
    return x[..., 0, :] + 1j * x[..., 1, :]


ROWS = [
    Row("fft", lambda x: jnp.abs(jnp.fft.rfft(x)) ** 2, [(f(8),), (f(3, 7),), (f(1),)], id="rfft"),
    Row(
        "fft",
        lambda x: jnp.fft.irfft(jnp.fft.rfft(x) * 1.5j + 2.0, n=x.shape[-1]),
        [(f(8),), (f(2, 7),)],
        id="irfft",
    ),
    Row(
        "fft",
        lambda x: jnp.real(jnp.fft.fft(_c(x))) * jnp.imag(jnp.fft.ifft(_c(x))),
        [(f(2, 6),), (f(3, 2, 5),)],
        id="fft-ifft",
    ),
    Row("fft", lambda x: jnp.abs(jnp.fft.rfft2(x)) ** 2, [(f(4, 6),), (f(2, 3, 5),)], id="rfft2"),
    Row(
        "fft",
        lambda x: jnp.fft.irfft2(jnp.fft.rfft2(x) * (1.0 + 0.5j), s=x.shape[-2:]) * x,
        [(f(4, 6),), (f(3, 5),)],
        id="irfft2",
    ),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
