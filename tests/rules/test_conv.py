"""Rule table for conv_general_dilated: layouts, strides, padding, dilations, groups."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from .table import C, Row, check_row, expand, f

NHWC = ("NHWC", "HWIO", "NHWC")


def conv(strides=(1, 1), padding="SAME", dn=None, **kw):
    """A conv_general_dilated with fixed parameters, as a named two-argument function."""

    def conv_fn(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn, **kw)

    return conv_fn


def conv_transpose(x, w):
    return lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=NHWC)


def convolve(x, w):
    return jnp.convolve(x, w)


def correlate_same(x, w):
    return jnp.correlate(x, w, "same")


def conv_to_float64(x, w):
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=NHWC, preferred_element_type=jnp.float64
    )


def f32(*shape):
    """A float32 argument (for the preferred_element_type row)."""
    return C(lambda rng: rng.uniform(-2.0, 2.0, size=shape).astype(np.float32))


CONV = "conv_general_dilated"
ROWS = [
    Row(CONV, conv((1,)), [(f(2, 3, 7), f(4, 3, 3))], id="1d"),
    Row(
        CONV,
        conv(dn=NHWC),
        [(f(2, 5, 6, 3), f(3, 3, 3, 4)), (f(1, 1, 1, 1), f(1, 1, 1, 1))],
        id="nhwc_same",
    ),
    Row(CONV, conv((2, 2)), [(f(2, 3, 7, 6), f(4, 3, 3, 2))], id="nchw_stride2"),
    Row(CONV, conv((1, 2), "VALID"), [(f(2, 3, 7, 6), f(4, 3, 3, 2))], id="valid"),
    Row(CONV, conv((2, 1), ((1, 2), (0, 1))), [(f(2, 3, 7, 6), f(4, 3, 3, 2))], id="asymmetric"),
    Row(
        CONV,
        conv((1, 1), ((-1, 2), (0, -1))),
        [(f(2, 3, 7, 6), f(4, 3, 3, 2))],
        id="negative_padding",
    ),
    Row(
        CONV,
        conv(padding=((2, 2), (1, 1)), lhs_dilation=(2, 3)),
        [(f(2, 3, 5, 4), f(4, 3, 3, 2))],
        id="lhs_dilation",
    ),
    Row(CONV, conv_transpose, [(f(2, 5, 4, 3), f(3, 3, 3, 4))], id="conv_transpose"),
    Row(CONV, conv(rhs_dilation=(2, 2)), [(f(2, 3, 7, 6), f(4, 3, 3, 2))], id="rhs_dilation"),
    Row(
        CONV,
        conv((2, 3), ((1, 0), (2, 1)), lhs_dilation=(2, 1), rhs_dilation=(1, 2)),
        [(f(2, 3, 7, 8), f(4, 3, 3, 2))],
        id="all_dilations",
    ),
    Row(CONV, conv(feature_group_count=2), [(f(2, 4, 5, 5), f(6, 2, 3, 3))], id="groups2"),
    Row(
        CONV,
        conv((2, 1), dn=NHWC, feature_group_count=3),
        [(f(2, 5, 5, 3), f(3, 3, 1, 6))],
        id="depthwise",
    ),
    Row(
        CONV,
        conv(padding="VALID", batch_group_count=2),
        [(f(4, 3, 5, 5), f(6, 3, 3, 3))],
        id="batch_groups2",
    ),
    Row(
        CONV,
        conv((2, 1), dn=NHWC, batch_group_count=2),
        [(f(4, 5, 5, 3), f(3, 3, 3, 4))],
        id="batch_groups2_nhwc",
    ),
    Row(
        CONV,
        conv((1, 2, 1), dn=("NDHWC", "DHWIO", "NDHWC")),
        [(f(2, 4, 5, 4, 2), f(2, 3, 2, 2, 3))],
        id="3d",
    ),
    Row(CONV, conv((4, 3), "VALID"), [(f(2, 3, 9, 8), f(4, 3, 2, 2))], id="stride_gt_kernel"),
    Row(CONV, conv((4, 3)), [(f(2, 3, 9, 8), f(4, 3, 2, 2))], id="stride_gt_kernel_same"),
    Row(
        CONV,
        conv((2, 1), dn=("HNCW", "WIOH", "CWNH")),
        [(f(5, 2, 3, 6), f(2, 3, 4, 3))],
        id="scrambled_layout",
    ),
    Row(CONV, convolve, [(f(7), f(3)), (f(3), f(5))], id="convolve"),
    Row(CONV, correlate_same, [(f(7), f(3))], id="correlate"),
    # Empty spatial dimensions with dilation: the padding arithmetic holds only for n, m >= 1.
    Row(
        CONV,
        conv((1, 1), ((2, 2), (0, 0)), lhs_dilation=(2, 1), rhs_dilation=(2, 2)),
        [(f(1, 2, 0, 4), f(3, 2, 2, 2)), (f(1, 2, 0, 4), f(3, 2, 3, 1))],
        id="empty_dilated",
    ),
    Row(
        CONV,
        conv((2, 1), ((1, 0), (0, 0)), lhs_dilation=(2, 1)),
        [(f(1, 2, 0, 3), f(2, 2, 3, 1)), (f(2, 2, 3, 0), f(2, 2, 2, 1))],
        id="empty_lhs_dilated",
    ),
    Row(
        CONV,
        conv_to_float64,
        [(f32(2, 5, 6, 3), f32(3, 3, 3, 4))],
        rtol=1e-5,
        atol=1e-5,
        id="preferred_float64",
    ),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
