"""Weight initialisers: JAX's own (``jax.nn.initializers``), re-exported under one roof.

Each is a factory returning ``init(key, shape, dtype=float32) -> array``. The fan-in and
fan-out are read from the shape: ``in_axis=-2`` and ``out_axis=-1`` by default, and every
other axis is a receptive field, so a conv kernel ``(K, C_in, C_out)`` gets
``fan_in = K * C_in``.

| name | distribution | variance | use with |
|---|---|---|---|
| ``glorot_uniform`` / ``glorot_normal`` | U / N | 2 / (fan_in + fan_out) | tanh, sigmoid |
| ``he_uniform`` / ``he_normal`` | U / N | 2 / fan_in | ReLU |
| ``lecun_uniform`` / ``lecun_normal`` | U / N | 1 / fan_in | SELU, linear, default |

Example:
    >>> import jax
    >>> from funcgrad.nn import initializers
    >>> w = initializers.he_normal()(jax.random.key(0), (784, 128))
    >>> w.shape
    (784, 128)
"""

from jax.nn.initializers import constant as constant
from jax.nn.initializers import glorot_normal as glorot_normal
from jax.nn.initializers import glorot_uniform as glorot_uniform
from jax.nn.initializers import he_normal as he_normal
from jax.nn.initializers import he_uniform as he_uniform
from jax.nn.initializers import lecun_normal as lecun_normal
from jax.nn.initializers import lecun_uniform as lecun_uniform
from jax.nn.initializers import normal as normal
from jax.nn.initializers import ones as ones
from jax.nn.initializers import orthogonal as orthogonal
from jax.nn.initializers import uniform as uniform
from jax.nn.initializers import variance_scaling as variance_scaling
from jax.nn.initializers import zeros as zeros

__all__ = [
    "constant",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "uniform",
    "variance_scaling",
    "zeros",
]
