"""check_grads' float64 tolerance is tight: a planted 1e-6 relative fault must fail.

The float32 fault in test_check.py guards the float32 tolerance; this guards float64, so
loosening its tolerance (1e-9) by three orders of magnitude or more fails here.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import primitives as p

import funcgrad

from ._util import planted_rule


@pytest.mark.parametrize("fault", [1e-6, 1e-7])
def test_float64_fault_of_one_part_in_a_million_fails(fault):
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (7, 5)), jnp.float64)

    def slightly_wrong_sin(g, ans, x, *, accuracy):  # planted fault: `fault` relative error
        del ans, accuracy
        return (g * jnp.cos(x) * (1 + fault),)

    with planted_rule(p.sin_p, slightly_wrong_sin):
        report = funcgrad.check_grads(lambda x: jnp.sum(jnp.sin(x)), x, raise_on_mismatch=False)
    row = report.leaves[0]
    assert not report.ok and row.verdict == "funcgrad-wrong", str(report)
    assert 0.5 * fault < row.rel_err < 2 * fault


def test_float64_without_a_fault_passes():
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (7, 5)), jnp.float64)
    report = funcgrad.check_grads(lambda x: jnp.sum(jnp.sin(x)), x, raise_on_mismatch=False)
    assert report.ok and report.leaves[0].verdict == "ok", str(report)
