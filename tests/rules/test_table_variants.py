"""Every row of the rule table, once more: as a VJP of a VJP, and in float32 and bfloat16.

The family tables check first order in float64 on every shape group.  A rule's backward pass
is itself differentiated by funcgrad (grad of grad, hessians), so each row is also checked to
second order; and rules must keep a cotangent in its operand's dtype and be accurate in the
dtypes models train in.  To keep the suite fast these variants take one shape group per row
(the first, which is the row's main case).
"""

import importlib
import pkgutil

import jax.numpy as jnp
import pytest

from . import __path__ as rules_tests_path
from .table import check_row_dtype, check_row_second_order

# Modules whose ROWS are not rule-table rows of this process (collectives run on 8 devices).
_NOT_TABLES = {"test_coverage", "test_table_variants", "test_second_order"}


def _rows():
    rows = []
    for info in sorted(pkgutil.iter_modules(rules_tests_path), key=lambda i: i.name):
        if info.name.startswith("test_") and info.name not in _NOT_TABLES:
            module = importlib.import_module(f"{__package__}.{info.name}")
            family = info.name.removeprefix("test_")
            rows.extend((family, row) for row in getattr(module, "ROWS", []))
    return rows


def _params(marks=None):
    marks = marks or {}
    params = []
    for family, row in _rows():
        pid = f"{family}-{row.name}"
        reason = marks.get(pid)
        extra = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(row, row.arg_groups[0], id=pid, marks=extra))
    return params


# Rows whose variant fails for a reason outside the rule table (each with the reason).
_NO_JAX_SECOND_ORDER = (
    "jax.vjp has no second order for ragged_dot_general (RAGGED_CONTRACTING); "
    "test_contractions.py::test_ragged_dot_groups_layout_against_dense checks it against a "
    "dense reference"
)
_NO_JAX_IGAMMA_A = (
    "jax.vjp has no rule for igamma_grad_a (the a-derivative of the a-derivative), so there "
    "is no reference; funcgrad refuses it too (MissingRuleError)"
)
_NO_JAX_GAMMA_GRAD = (
    "random_gamma_grad is a while_loop: neither jax.vjp nor funcgrad differentiates it in "
    "reverse mode"
)
_EIGH_UNSYMMETRIZED = (
    "eigh with symmetrize_input=False is defined on symmetric input only; JAX's derivative "
    "symmetrises inside, so its second derivative is symmetric, while funcgrad's reuses the "
    "forward eigendecomposition: the two agree on every symmetric direction (diagonal equal, "
    "each off-diagonal pair averages to JAX's value) and differ by an antisymmetric part, "
    "which no symmetric input reaches; the jnp.linalg.eigh rows pass"
)
_NO_JAX_EIGVEC_DERIVS = (
    "jax.vjp's second order of eigvals differentiates non-symmetric eigenvectors, which the "
    "reference refuses (NotImplementedError: 'Derivatives of non-symmetric eigenvectors ... "
    "enable_eigvec_derivs'); funcgrad's side runs, there is no reference to compare with"
)
SECOND_ORDER_KNOWN = {
    "elementwise-igamma": _NO_JAX_IGAMMA_A,
    "elementwise-igammac": _NO_JAX_IGAMMA_A,
    "elementwise-random_gamma": _NO_JAX_GAMMA_GRAD,
    "elementwise-random_loggamma": _NO_JAX_GAMMA_GRAD,
    "contractions-ragged_dot_general": _NO_JAX_SECOND_ORDER,
    "contractions-ragged_rhs_t": _NO_JAX_SECOND_ORDER,
    "linalg-eig": _NO_JAX_EIGVEC_DERIVS,
    "linalg-eig-complex": _NO_JAX_EIGVEC_DERIVS,
    "linalg-eigh-primitive": _EIGH_UNSYMMETRIZED,
}
DTYPE_KNOWN = {}


@pytest.mark.parametrize("row,group", _params(SECOND_ORDER_KNOWN))
def test_second_order(row, group):
    check_row_second_order(row, group)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("row,group", _params(DTYPE_KNOWN))
def test_low_precision(row, group, dtype):
    check_row_dtype(row, group, dtype)
