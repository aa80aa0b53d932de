"""Rows for identity-like primitives and top-k selection."""

import jax
import jax.numpy as jnp
import pytest
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from .table import Row, check_row, expand, f

ROWS = [
    Row("device_put", lambda x: jax.device_put(x) * x, [(f(3, 4),), (f(),)]),
    Row("name", lambda x: jnp.sin(checkpoint_name(x, "h")) * x, [(f(3, 4),), (f(),)]),
    Row("top_k", lambda x: lax.top_k(x, 2)[0], [(f(3, 5),), (f(6),), (f(2, 1, 4),)]),
    Row(
        "top_k",
        lambda x: jnp.sum(lax.top_k(jnp.sin(x), 3)[0] ** 2) + x[0],
        [(f(4, 3),)],
        id="top_k_fanout",
    ),
    Row("approx_top_k", lambda x: lax.approx_max_k(x, 2)[0], [(f(3, 5),), (f(6),)]),
]


@pytest.mark.parametrize("row,group", expand(ROWS))
def test_rule(row, group):
    check_row(row, group)
