"""``custom_lin``: the tangent map of a ``jax.custom_vjp`` function, as JAX's jvp emits it.

A ``jax.custom_jvp`` rule that calls ``jax.jvp`` through a ``custom_vjp`` function traces to a
jaxpr holding ``custom_lin(*res, *tangents)``: the linear map t -> J t at the residuals, known
to JAX only through the user's bwd (J^T). funcgrad differentiates a custom_jvp by walking its
rule's tangent map forward at zero tangents and backward (see ``control_flow``), so:

* forward: the map is linear and every tangent is zero there, so its value is zero (J 0 = 0).
  Outside that walk its value is unknown (JAX refuses to evaluate it too): a clear error.
* backward: the transpose of t -> J t is ct -> J^T ct, the user's bwd at the residuals.
"""

from __future__ import annotations

import contextlib

from .. import _jax_compat as compat
from .._backward import Residual, instantiate, zeros_like_aval
from .._errors import NonDifferentiableError
from .._registry import register_vjp

_zero_walks = [0]  # depth of the custom_jvp tangent-map walks in progress (all tangents zero)


@contextlib.contextmanager
def zero_tangents():
    """Mark a forward walk of a custom_jvp rule's tangent map at zero tangents."""
    _zero_walks[0] += 1
    try:
        yield
    finally:
        _zero_walks[0] -= 1


def in_tangent_map() -> bool:
    """Whether a custom_jvp rule's tangent map is being walked (see ``zero_tangents``)."""
    return _zero_walks[0] > 0


def _custom_lin_forward(active, *operands, num_res, out_avals, **params):
    del active, params
    if not _zero_walks[0]:
        raise NonDifferentiableError(
            "funcgrad met JAX's custom_lin (the tangent map of a jax.custom_vjp function) "
            "outside a jax.custom_jvp rule, where its value J t is unknown (a custom_vjp "
            "function has no forward-mode derivative). Differentiate the custom_vjp function "
            "in reverse mode instead of evaluating its jax.linearize/jax.jvp."
        )
    outs = [zeros_like_aval(av) for av in out_avals]
    return outs, Residual(None, tuple(operands[:num_res]))


@register_vjp(compat.CUSTOM_LIN, forward=_custom_lin_forward)
def custom_lin_vjp(g, res, *operands, bwd, in_zeros, out_avals, **params):
    """J^T ct by the user's bwd at the residuals; bwd answers one cotangent per input of the
    custom_vjp function, and only the inputs not flagged in ``in_zeros`` are operands."""
    del params
    g = g if isinstance(g, (list, tuple)) else [g]
    cts_out = [instantiate(ct, av) for ct, av in zip(g, out_avals)]
    cts_in = compat.custom_vjp_bwd(bwd, res.arrays, cts_out)
    if len(cts_in) != len(in_zeros):
        raise NonDifferentiableError(
            f"a jax.custom_vjp bwd returned {len(cts_in)} cotangents for a function of "
            f"{len(in_zeros)} inputs; return one per input."
        )
    present = [ct for ct, zero in zip(cts_in, in_zeros) if not zero]
    return (None,) * len(res.arrays) + tuple(present)
