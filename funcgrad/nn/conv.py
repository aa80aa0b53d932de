"""1-D and 2-D convolutions, channels last (``NWC`` / ``NHWC``), on lax.conv_general_dilated."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import initializers
from ._checks import add_bias, expect_keys, expect_positive_int, expect_shape, tuple_of

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}
_AXES = {1: "(N, L, C_in)", 2: "(N, H, W, C_in)"}


def _init_conv(layer, key, in_channels, out_channels, kernel_size, n, bias, w_init, dtype):
    expect_positive_int(layer, "in_channels", in_channels)
    expect_positive_int(layer, "out_channels", out_channels)
    kernel = tuple_of(layer, "kernel_size", kernel_size, n)
    w_init = initializers.he_normal() if w_init is None else w_init
    params = {"w": w_init(key, (*kernel, in_channels, out_channels), dtype)}
    if bias:
        params["b"] = jnp.zeros((out_channels,), dtype)
    return params


def resolve_padding(layer, padding: Padding, n: int):
    """'SAME' / 'VALID', an int (both sides of every axis), or ``n`` ints or (lo, hi) pairs."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(
                f"{layer} expected padding 'SAME', 'VALID', an int or {n} (lo, hi) pairs, "
                f"got {padding!r}."
            )
        return padding.upper()
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * n
    pads = list(padding)
    if len(pads) == n and all(isinstance(p, (int, np.integer)) for p in pads):
        return [(int(p), int(p)) for p in pads]
    if len(pads) == n and all(len(p) == 2 for p in pads):
        return [(int(lo), int(hi)) for lo, hi in pads]
    raise ValueError(
        f"{layer} expected padding 'SAME', 'VALID', an int or {n} (lo, hi) pairs, got {padding!r}."
    )


def _conv(layer, init_name, params, x, n, stride, padding, dilation):
    expect_keys(layer, params, ["w"], init_name)
    w = params["w"]
    c_in = np.shape(w)[-2]
    expect_shape(
        layer,
        "x",
        x,
        (None,) * (n + 1) + (c_in,),
        hint=f"Inputs are channels-last {_AXES[n].replace('C_in', str(c_in))}; "
        f"add a channel axis with x[..., None] or a batch axis with x[None]",
    )
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=tuple_of(layer, "stride", stride, n),
        padding=resolve_padding(layer, padding, n),
        rhs_dilation=tuple_of(layer, "dilation", dilation, n),
        dimension_numbers=_DIMENSION_NUMBERS[n],
    )
    return add_bias(y, params["b"]) if "b" in params else y


def init_conv1d(
    key,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    bias: bool = True,
    w_init=None,
    dtype=jnp.float32,
) -> dict:
    """Parameters of a 1-D convolution.

    Args:
        key: a PRNG key.
        in_channels, out_channels: ``C_in``, ``C_out``.
        kernel_size: ``K``.
        bias: include ``b``.
        w_init: kernel initialiser (default He normal, fan-in ``K * C_in``).

    Returns:
        ``{"w": (K, C_in, C_out), "b": (C_out,)}``.

    Example:
        >>> import jax
        >>> init_conv1d(jax.random.key(0), 1, 25, 5)["w"].shape
        (5, 1, 25)
    """
    return _init_conv(
        "init_conv1d", key, in_channels, out_channels, kernel_size, 1, bias, w_init, dtype
    )


def conv1d(
    params: dict, x: jax.Array, *, stride=1, padding: Padding = "VALID", dilation=1
) -> jax.Array:
    """Cross-correlation over the length axis of a channels-last batch.

    Args:
        params: from :func:`init_conv1d`, ``w`` ``(K, C_in, C_out)``.
        x: ``(N, L, C_in)``.
        stride: step between windows.
        padding: ``'VALID'`` (none), ``'SAME'`` (output length ``ceil(L / stride)``), an int
            ``p`` (``p`` zeros on both ends, as PyTorch's ``padding=p``) or one ``(lo, hi)`` pair.
        dilation: spacing between kernel taps.

    Returns:
        ``(N, L_out, C_out)`` with ``L_out = (L + lo + hi - dilation * (K - 1) - 1) // stride + 1``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_conv1d(jax.random.key(0), 1, 25, 5)
        >>> conv1d(p, jnp.ones((8, 40, 1)), stride=2, padding=1).shape
        (8, 19, 25)
    """
    return _conv("conv1d", "init_conv1d", params, x, 1, stride, padding, dilation)


def init_conv2d(
    key,
    in_channels: int,
    out_channels: int,
    kernel_size,
    *,
    bias: bool = True,
    w_init=None,
    dtype=jnp.float32,
) -> dict:
    """Parameters of a 2-D convolution.

    Args:
        key: a PRNG key.
        in_channels, out_channels: ``C_in``, ``C_out``.
        kernel_size: ``KH`` (square) or ``(KH, KW)``.
        bias: include ``b``.
        w_init: kernel initialiser (default He normal, fan-in ``KH * KW * C_in``).

    Returns:
        ``{"w": (KH, KW, C_in, C_out), "b": (C_out,)}``.

    Example:
        >>> import jax
        >>> init_conv2d(jax.random.key(0), 3, 16, 3)["w"].shape
        (3, 3, 3, 16)
    """
    return _init_conv(
        "init_conv2d", key, in_channels, out_channels, kernel_size, 2, bias, w_init, dtype
    )


def conv2d(
    params: dict, x: jax.Array, *, stride=1, padding: Padding = "VALID", dilation=1
) -> jax.Array:
    """Cross-correlation over the two spatial axes of a channels-last batch.

    Args:
        params: from :func:`init_conv2d`, ``w`` ``(KH, KW, C_in, C_out)``.
        x: ``(N, H, W, C_in)``.
        stride: an int or ``(SH, SW)``.
        padding: ``'VALID'``, ``'SAME'``, an int, two ints, or two ``(lo, hi)`` pairs.
        dilation: an int or ``(DH, DW)``.

    Returns:
        ``(N, H_out, W_out, C_out)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_conv2d(jax.random.key(0), 1, 4, 3)
        >>> conv2d(p, jnp.ones((2, 28, 28, 1)), padding="SAME", stride=2).shape
        (2, 14, 14, 4)
    """
    return _conv("conv2d", "init_conv2d", params, x, 2, stride, padding, dilation)
