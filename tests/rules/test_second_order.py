"""Second order: the backward pass a rule emits is itself differentiated by funcgrad.

Regressions for rules whose first derivative was right but whose backward pass was not
differentiable (a mask that replaced a term at a special point also removed its derivative).
"""

import jax
import numpy as np
import pytest
from jax import lax

import funcgrad


def _mixed(grad, fun, argnum, point):
    """Gradient of ``d fun / d arg[argnum]`` with respect to both arguments."""

    def first(a, b):
        return grad(fun, argnums=(0, 1))(a, b)[argnum]

    return grad(first, argnums=(0, 1))(*point)


@pytest.mark.parametrize("argnum", [0, 1])
@pytest.mark.parametrize("point", [(4.0, 0.0), (0.5, 0.0), (4.0, 2.0), (2.0, -1.0), (3.0, 1.0)])
def test_pow_second_order_at_zero_exponent(point, argnum):
    """d/dy (y x^(y-1)) = x^(y-1) (1 + y log x) is 1/4 at (4, 0) (JAX issue 12033)."""
    got = _mixed(funcgrad.grad, lax.pow, argnum, point)
    want = _mixed(jax.grad, lax.pow, argnum, point)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
