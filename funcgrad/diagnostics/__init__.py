"""Gradient diagnostics: blame the rule, trace a NaN, explain a zero, draw the graph.

blame(f, *args)            which VJP rule disagrees with jax.vjp, with source line + repro
explain_nans(f, *args)     where a NaN/Inf first arose; the jnp.where trap and its fix
debug_grad(f)              funcgrad.grad that raises with that report on a non-finite grad
why_zero(f, *args)         parameters blocked (argmax, round, stop_gradient), disconnected,
                           dead at this point, or underflowing
draw_graph(f, *args)       the graph as a picture with values and cotangents (SVG/PNG)
grad_norms(grads)          per-layer gradient norms inside jit; plot_grad_flow(history)
"""

from .._check import explain_wrong_rule_with
from ._blame import BlameReport as BlameReport
from ._blame import blame as blame
from ._flow import grad_norms as grad_norms
from ._flow import plot_grad_flow as plot_grad_flow
from ._flow import stack_history as stack_history
from ._graph import GraphPicture as GraphPicture
from ._graph import draw_graph as draw_graph
from ._nan import NanReport as NanReport
from ._nan import NonFiniteGradientError as NonFiniteGradientError
from ._nan import debug_grad as debug_grad
from ._nan import explain_nans as explain_nans
from ._zero import ZeroReport as ZeroReport
from ._zero import why_zero as why_zero


def _blame_headline(f, args, argnums) -> str:
    return "\n".join(str(blame(f, *args, argnums=argnums)).splitlines()[:4])


explain_wrong_rule_with(_blame_headline)

__all__ = [
    "BlameReport",
    "GraphPicture",
    "NanReport",
    "NonFiniteGradientError",
    "ZeroReport",
    "blame",
    "debug_grad",
    "draw_graph",
    "explain_nans",
    "grad_norms",
    "plot_grad_flow",
    "stack_history",
    "why_zero",
]
