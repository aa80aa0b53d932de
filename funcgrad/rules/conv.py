"""VJP of conv_general_dilated, derived from the definition of the convolution.

Along one spatial dimension, with input size ``n``, kernel size ``k``, output size ``m``,
stride ``s``, input (lhs) dilation ``dl``, kernel (rhs) dilation ``dr`` and padding
``(lo, hi)``, the forward pass is

    y[o] = sum_j w[j] * xd[o*s + j*dr - lo],        xd[i*dl] = x[i], zero elsewhere,

and ``m = floor(((n-1)*dl + 1 + lo + hi - K) / s) + 1`` with ``K = (k-1)*dr + 1`` the
dilated kernel size.  Both cotangents are again convolutions; the helpers below compute
their padding so that the output has exactly the input's (or the kernel's) size.  Feature
and batch groups only change which channels meet, handled by regrouping the kernel (input
cotangent) or by swapping the two group counts (kernel cotangent).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

from .._registry import register_vjp
from ._util import cast_like, is_float

# ----- padding arithmetic, one spatial dimension at a time -------------------------------------


def _lhs_ct_padding(n, k, m, s, dl, dr, lo):
    """Padding of ``conv(g, flip(w), stride=dl, lhs_dilation=s, rhs_dilation=dr)``.

    Substituting ``j -> k-1-j`` in ``ct_xd[q] = sum_j gd[q + lo - j*dr] w[j]`` (``gd`` is ``g``
    dilated by ``s``) gives ``ct_xd[q] = sum_j gd[q - (K-1-lo) + j*dr] w_flipped[j]``: a
    correlation of ``gd`` padded low by ``K-1-lo``.  ``ct_x[i] = ct_xd[i*dl]`` is a stride of
    ``dl``.  The high padding makes the padded length ``(n-1)*dl + K``, so exactly ``n``
    windows fit; it is negative when the forward pass dropped trailing input.
    """
    big_k = (k - 1) * dr + 1
    pad_lo = big_k - 1 - lo
    pad_hi = (n - 1) * dl + big_k - pad_lo - ((m - 1) * s + 1)
    return pad_lo, pad_hi


def _rhs_ct_padding(n, k, m, s, dl, dr, lo):
    """Padding of ``conv(x, g, stride=dr, lhs_dilation=dl, rhs_dilation=s)`` (g is the kernel).

    ``ct_w[j] = sum_o g[o] xd[j*dr + o*s - lo]``: a correlation of the padded ``xd`` with ``g``
    dilated by ``s``, taking window ``j`` at stride ``dr``.  Low padding is the forward ``lo``;
    the high padding makes the padded length ``(k-1)*dr + (m-1)*s + 1``, so exactly ``k``
    windows fit.
    """
    pad_hi = (k - 1) * dr + (m - 1) * s + 1 - ((n - 1) * dl + 1) - lo
    return lo, pad_hi


# ----- channel regrouping ----------------------------------------------------------------------


def _move_group(x, from_ax, to_ax, groups):
    """Split axis ``from_ax`` into ``(groups, size // groups)`` and fold ``groups`` into
    ``to_ax`` as its major part: ``out[.., r@from_ax, (gi*T + t)@to_ax] = x[.., (gi*R + r), t]``.

    Every other axis stays where it is, so only one small transpose is needed (none when the
    axes are adjacent or a size is 1, e.g. depthwise kernels).
    """
    shape = list(np.shape(x))
    rest = shape[from_ax] // groups
    split = shape[:from_ax] + [groups, rest] + shape[from_ax + 1 :]
    # Axis ids of the split array: "g" the new group axis, everything else the original index.
    ids = list(range(from_ax)) + ["g"] + list(range(from_ax, len(shape)))
    ids.remove("g")
    ids.insert(ids.index(to_ax), "g")
    perm = [from_ax if a == "g" else (a if a < from_ax else a + 1) for a in ids]
    x = lax.transpose(x.reshape(split), perm) if perm != sorted(perm) else x.reshape(split)
    shape[from_ax] = rest
    shape[to_ax] *= groups
    return x.reshape(shape)


# ----- conv_general_dilated --------------------------------------------------------------------


def _swap_01(spec):
    """A dimension spec with its first two roles (batch/feature, or out/in) exchanged."""
    return (spec[1], spec[0], *spec[2:])


def _spatial(x, spec):
    return [np.shape(x)[a] for a in spec[2:]]


@register_vjp(p.conv_general_dilated_p)
def conv_general_dilated_vjp(
    g,
    ans,
    lhs,
    rhs,
    *,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
    precision,
    preferred_element_type,
    out_sharding,
):
    """Input cotangent: conv of ``g`` with the flipped, regrouped kernel (strides and lhs
    dilation trade roles).  Kernel cotangent: conv of ``lhs`` with ``g`` as the kernel, batch
    and feature dimensions swapped, feature and batch group counts swapped."""
    del ans, out_sharding
    if 0 in (np.size(lhs), np.size(rhs), np.size(g)):
        # Every output is a sum of lhs * rhs products: with an empty operand or output there
        # are none, and the padding arithmetic below (written for n, m >= 1) does not apply.
        return tuple(
            jnp.zeros(np.shape(x), jnp.result_type(x)) if is_float(x) else None for x in (lhs, rhs)
        )
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    sizes = zip(
        _spatial(lhs, lhs_spec),
        _spatial(rhs, rhs_spec),
        _spatial(g, out_spec),
        window_strides,
        lhs_dilation,
        rhs_dilation,
        padding,
        strict=True,
    )
    dims = [(n, k, m, s, dl, dr, lo) for n, k, m, s, dl, dr, (lo, _) in sizes]
    conv = dict(
        window_strides=window_strides,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    ct_lhs = _lhs_cotangent(g, lhs, rhs, dims, **conv) if is_float(lhs) else None
    ct_rhs = _rhs_cotangent(g, lhs, rhs, dims, **conv) if is_float(rhs) else None
    return ct_lhs, ct_rhs


def _lhs_cotangent(
    g,
    lhs,
    rhs,
    dims,
    *,
    window_strides,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
    **common,
):
    """``g`` convolved with the flipped kernel, its feature groups moved back to their
    inputs; strides and lhs dilation trade roles; laid out like ``lhs``."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    w = lax.rev(cast_like(rhs, g), tuple(rhs_spec[2:]))
    groups = feature_group_count * batch_group_count  # at most one of them exceeds 1
    if groups > 1:
        # out[og, gi*I + c] = w[gi*Og + og, c]: feature groups of g go back to their inputs.
        w = _move_group(w, rhs_spec[0], rhs_spec[1], groups)
    ct_lhs = lax.conv_general_dilated(
        g,
        w,
        window_strides=lhs_dilation,
        padding=[_lhs_ct_padding(*d) for d in dims],
        lhs_dilation=window_strides,
        rhs_dilation=rhs_dilation,
        # g is the input; the kernel's in/out feature axes swap; the result is laid out
        # like lhs.
        dimension_numbers=lax.ConvDimensionNumbers(out_spec, _swap_01(rhs_spec), lhs_spec),
        feature_group_count=groups,
        **common,
    )
    if batch_group_count > 1:
        # The batch groups came out as feature groups: out[gi*N + n, c] = ct[n, gi*C + c].
        ct_lhs = _move_group(ct_lhs, lhs_spec[1], lhs_spec[0], batch_group_count)
    return cast_like(ct_lhs, lhs)


def _rhs_cotangent(
    g,
    lhs,
    rhs,
    dims,
    *,
    window_strides,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
    **common,
):
    """``lhs`` convolved with ``g`` as the kernel, batch and feature roles swapped and the
    two group counts exchanged; laid out like ``rhs``."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    ct_rhs = lax.conv_general_dilated(
        cast_like(lhs, g),
        g,
        window_strides=rhs_dilation,
        padding=[_rhs_ct_padding(*d) for d in dims],
        lhs_dilation=lhs_dilation,
        rhs_dilation=window_strides,
        # lhs's channels act as its batch and its batch as the contracted features; g's
        # batch is contracted (kernel input features); the result is laid out like rhs.
        dimension_numbers=lax.ConvDimensionNumbers(
            _swap_01(lhs_spec), _swap_01(out_spec), _swap_01(rhs_spec)
        ),
        feature_group_count=batch_group_count,
        batch_group_count=feature_group_count,
        **common,
    )
    return cast_like(ct_rhs, rhs)
