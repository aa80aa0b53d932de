"""Everything funcgrad reads from JAX that differs, or may differ, between JAX releases.

Each section names the JAX versions checked and how they behave.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.extend.core import primitives as _prims

# --- compat: weak types ---
# A weakly typed value (a Python scalar's type, ``~float32[]``) is made with the
# ``convert_element_type`` primitive's ``weak_type=True``; ``jax.lax.convert_element_type``
# always makes a strong type. JAX 0.10.2 and 0.12.0.1 both take exactly the parameters
# ``new_dtype``, ``weak_type`` and ``sharding`` (None keeps the operand's sharding).


def as_weak(x):
    """``x`` with the same value and dtype, weakly typed (as JAX types a Python scalar)."""
    aval = jax.typeof(x)
    if getattr(aval, "weak_type", False):
        return x
    return _prims.convert_element_type_p.bind(
        x, new_dtype=np.dtype(aval.dtype), weak_type=True, sharding=None
    )
