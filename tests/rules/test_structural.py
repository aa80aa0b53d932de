"""Rule table for the structural family: broadcasting, reshaping, slicing, padding, sorting."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from jax import lax

from .table import C, I, Row, check_row, expand, f


def _perm(n):
    return C(lambda rng: rng.permutation(n))


ROWS = [
    Row(
        "iota",
        lambda x: x + lax.broadcasted_iota(x.dtype, x.shape, x.ndim - 1),
        [(f(4),), (f(3, 4),)],
    ),
    # ----- shape changes
    Row(
        "broadcast_in_dim",
        lambda x: lax.broadcast_in_dim(x, (2, 3, 4), (1, 2)),
        [(f(3, 4),), (f(1, 4),), (f(3, 1),), (f(1, 1),)],
        id="broadcast_in_dim-lead",
    ),
    Row(
        "broadcast_in_dim",
        lambda x: lax.broadcast_in_dim(x, (3, 5, 4), (0, 2)),
        [(f(3, 4),), (f(1, 4),), (f(1, 1),)],
        id="broadcast_in_dim-middle",
    ),
    Row(
        "broadcast_in_dim",
        lambda x: jnp.broadcast_to(x, (2, 0)),
        [(f(),), (f(0),)],
        id="bcast-empty",
    ),
    Row("broadcast_in_dim", lambda x: jnp.expand_dims(x, (0, 2)), [(f(3, 4),)], id="expand"),
    # Square: summing the size-1 axis the wrong way (over axis 0) gives a value error only.
    Row(
        "broadcast_in_dim",
        lambda x: lax.broadcast_in_dim(x, (3, 3), (0, 1)),
        [(f(3, 1),), (f(1, 3),)],
        id="bcast-square",
    ),
    Row("tile", lambda x: jnp.tile(x, (2, 3)), [(f(3, 4),), (f(1, 1),), (f(0, 2),)]),
    Row(
        "tile",
        lambda x: jnp.tile(x, (2, 1, 3)).sum(0) * jnp.tile(x, (1, 3)),
        [(f(3, 4),), (f(1, 4),)],
        id="tile-lead",
    ),
    Row("reshape", lambda x: x.reshape(-1), [(f(3, 4),), (f(2, 1, 3),), (f(0, 3),), (f(),)]),
    Row("reshape", lambda x: x.reshape(2, 6), [(f(3, 4),)], id="reshape-2d"),
    Row(
        "reshape",
        lambda x: lax.reshape(x, (2, 3, 4), dimensions=(2, 0, 1)),
        [(f(3, 4, 2),)],
        id="reshape-dimensions",
    ),
    Row("squeeze", lambda x: lax.squeeze(x, (0, 2)), [(f(1, 3, 1, 4),), (f(1, 0, 1),)]),
    Row("transpose", lambda x: x.T, [(f(3, 4),), (f(0, 3),)]),
    Row("transpose", lambda x: x.transpose(2, 0, 1), [(f(2, 3, 4),)], id="transpose-3d"),
    Row("rev", lambda x: lax.rev(x, (0,)), [(f(5),), (f(3, 4),)]),
    Row("rev", lambda x: x[::-1, ::-1], [(f(3, 4),)], id="rev-both"),
    # ----- joining and cutting
    Row(
        "concatenate",
        lambda x, y: jnp.concatenate([x, y, x], axis=1),
        [(f(3, 4), f(3, 2)), (f(3, 0), f(3, 2))],
    ),
    Row("concatenate", lambda x, y: jnp.concatenate([x, y]), [(f(4), f(1))], id="concat-1d"),
    Row(
        "stack",
        lambda x, y: jnp.stack([x, y, x], axis=1),
        [(f(3, 4), f(3, 4)), (f(0, 2), f(0, 2))],
    ),
    Row("stack", lambda x: jnp.stack([x, 2 * x], axis=-1), [(f(2, 3),), (f(),)], id="stack-last"),
    Row(
        "unstack", lambda x: jnp.unstack(x, axis=1)[0] * 2 + jnp.unstack(x, axis=1)[2], [(f(2, 3),)]
    ),
    Row(
        "unstack",
        lambda x: sum(u * (k + 1) for k, u in enumerate(jnp.unstack(x))),
        [(f(3, 2),), (f(1),)],
        id="unstack-all",
    ),
    Row("split", lambda x: jnp.split(x, [1, 3], axis=1)[1], [(f(3, 5),)], id="split-one"),
    Row("split", lambda x: lax.split(x, (1, 3, 1), axis=0), [(f(5, 2),)], id="split-all"),
    Row("slice", lambda x: x[1:3, ::2], [(f(3, 4),), (f(4, 5),)]),
    Row("slice", lambda x: x[1:6:3], [(f(7),), (f(8),), (f(6),)], id="slice-strided"),
    Row("slice", lambda x: x[2:2], [(f(5),)], id="slice-empty"),
    Row("slice", lambda x: x[0], [(f(3, 4),)], id="slice-row"),
    Row(
        "pad",
        lambda x, v: lax.pad(x, v, [(1, 2, 0), (0, 1, 2)]),
        [(f(3, 4), f()), (f(1, 1), f()), (f(0, 2), f())],
    ),
    Row(
        "pad",
        lambda x, v: lax.pad(x, v, [(-1, 2, 1), (2, -3, 2)]),
        [(f(3, 4), f()), (f(4, 3), f())],
        id="pad-negative",
    ),
    Row("pad", lambda x: lax.pad(x, x.dtype.type(0), [(-2, -1, 3)]), [(f(4),)], id="pad-literal"),
    Row("pad", lambda x: jnp.pad(x, ((1, 1), (2, 0))), [(f(2, 3),)], id="jnp-pad"),
    Row(
        "dynamic_slice",
        lambda x, i, j: lax.dynamic_slice(x, (i, j), (2, 3)),
        [(f(4, 5), I((), 3), I((), 3)), (f(4, 5), I((), 9, 5), I((), 1))],
    ),
    Row(
        "dynamic_slice",
        lambda x, i: lax.dynamic_slice_in_dim(x, i, 2),
        [(f(5), I((), 4)), (f(5, 2), I((), 4))],
        id="dynamic_slice-in-dim",
    ),
    Row(
        "dynamic_update_slice",
        lambda x, u, i: lax.dynamic_update_slice(x, u, (i, jnp.int32(1))),
        [(f(4, 5), f(2, 3), I((), 3)), (f(4, 5), f(2, 3), I((), 9, 4)), (f(3, 2), f(0, 1), I())],
    ),
    Row(
        "dynamic_update_slice",
        lambda x, u: lax.dynamic_update_slice(x, u, (2, 1)),
        [(f(4, 5), f(2, 3))],
        id="dynamic_update_slice-const",
    ),
    # ----- sorting
    Row("sort", lambda x: lax.sort(x), [(f(5),), (f(3, 4),), (f(0, 3),)]),
    Row("sort", lambda x: lax.sort(x, dimension=0), [(f(3, 4),)], id="sort-dim0"),
    Row(
        "sort",
        lambda k, v: lax.sort((k, v), num_keys=1),
        [(f(3, 4), f(3, 4)), (f(6), f(6))],
        id="sort-keyval",
    ),
    Row(
        "sort",
        lambda k, x, y: lax.sort((k, x, y), num_keys=2, dimension=0),
        [(I((6, 2), 2), f(6, 2), f(6, 2))],
        id="sort-two-keys",
    ),
    Row(
        "sort",
        lambda x, perm: lax.sort((perm, x), num_keys=1)[1],
        [(f(6), _perm(6))],
        id="sort-by-int-key",
    ),
    Row("sort", lambda x: jnp.sort(x, axis=0), [(f(4, 3),)], id="jnp-sort"),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
