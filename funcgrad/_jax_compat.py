"""Everything that differs between JAX releases (this branch holds only its own section)."""

from __future__ import annotations

import jax

# --- compat: cholesky's derivative convention ---
# JAX 0.10.2 differentiates the cholesky primitive as a function of a Hermitian matrix: the
# cotangent of A = L L^H is the unsymmetrised A_bar, on both triangles.  JAX 0.12.0.1
# differentiates what the primitive reads (its docstring: "only the lower triangle of x is
# used"): A_bar's strict upper triangle is folded, conjugate-transposed, onto the lower one.
# Both conventions agree after jnp.linalg.cholesky's (A + A^H) / 2.  Checked on 0.10.2 and
# 0.12.0.1; which 0.11.x release changed it is not known here, so 0.11 is taken as old.
CHOLESKY_READS_LOWER_TRIANGLE = tuple(jax.__version_info__[:2]) >= (0, 12)
