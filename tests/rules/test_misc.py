"""Rows for identity-like primitives and top-k selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.ad_checkpoint import checkpoint_name

import funcgrad

from .table import Row, check_row, expand, f


def printed(x):
    jax.debug.print("x = {x}", x=x)
    return x * x


def called_back(x):
    jax.debug.callback(lambda v: None, jnp.sin(x))
    return 3 * x


ROWS = [
    # Effects: they run, no cotangent flows through them, their operands' come from elsewhere.
    Row("debug_print", printed, [(f(3),)]),
    Row("debug_callback", called_back, [(f(3),)]),
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


@pytest.mark.parametrize("compiled", [False, True])
def test_debug_print_and_callback_run_at_each_call_with_that_calls_values(compiled, capsys):
    seen = []

    def loss(x):
        jax.debug.print("loss sees {x}", x=x)
        jax.debug.callback(lambda v: seen.append(float(v[0])), x)
        return jnp.sum(x**3)

    grad = funcgrad.grad(loss)
    grad = jax.jit(grad) if compiled else grad
    grads = [grad(jnp.array([v, 1.0])) for v in (2.0, 5.0)]
    jax.effects_barrier()
    printed_lines = [ln for ln in capsys.readouterr().out.splitlines() if "loss sees" in ln]
    assert printed_lines == ["loss sees [2. 1.]", "loss sees [5. 1.]"]
    assert seen == [2.0, 5.0]
    np.testing.assert_allclose(grads[0], [12.0, 3.0])
    np.testing.assert_allclose(grads[1], [75.0, 3.0])
