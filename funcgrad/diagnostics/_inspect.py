"""The diagnostics' configuration of the engine's walks (funcgrad/_watch.py).

A diagnostic is a ``DiagnosticWatch``: it opens ``jit``, ``closed_call``, ``remat``
(``checkpoint``), ``cond`` (the branch taken), ``custom_jvp_call`` (its JVP jaxpr, whose
transpose is the VJP) and ``scan`` (unrolled over its steps, up to ``max_scan_steps``), and
chooses what happens at each equation of the backward walk (``leaf_cotangents``; default:
funcgrad's own rule, exactly as ``grad`` calls it). The walks are the engine's; nothing here
loops over a jaxpr's equations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jax.extend.core import primitives as p

from .._backward import backward, bind, forward
from .._errors import source_line
from .._watch import Record, Watch, own_cotangents, watching
from ..rules.control_flow import OPENED_RULES

__all__ = ["DiagnosticWatch", "Record", "funcgrad_rule"]


def is_var(v) -> bool:
    return isinstance(v, jcore.Var) and not isinstance(v, jcore.DropVar)


# remat's primitive is named "remat2" in JAX 0.10-0.12 (jax.checkpoint); read it from the
# primitive itself so a rename cannot silently stop diagnostics from opening it.
OPENABLE = frozenset(
    {p.jit_p.name, "closed_call", p.remat_p.name, p.cond_p.name, "custom_jvp_call", p.scan_p.name}
)


class DiagnosticWatch(Watch):
    """Walks a program with the engine, opening nested jaxprs; subclasses override hooks."""

    open = OPENABLE
    rules = OPENED_RULES

    def __init__(self, max_scan_steps: int = 64):
        super().__init__()
        self.max_scan_steps = max_scan_steps

    def opens(self, eqn) -> bool:
        name = eqn.primitive.name
        if name not in self.open:
            return False
        if name == p.scan_p.name:
            return 0 < eqn.params["length"] <= self.max_scan_steps
        return True

    def label(self, eqn) -> str:
        return label(eqn)

    def forward(self, jaxpr, consts, args, active_in):
        with watching(self):
            return forward(jaxpr, consts, args, active_in)

    def backward(self, jaxpr, tape, cts_out):
        with watching(self):
            return backward(jaxpr, tape, cts_out)

    def cotangents(self, scope, i, eqn, rec, g, call):
        if rec.opened:
            return self.after_nested(scope, i, eqn, rec, g, call(g))
        return self.leaf_cotangents(scope, i, eqn, rec, g, call)

    def leaf_cotangents(self, scope, i, eqn, rec: Record, g: list, call) -> list:
        """Input cotangents of an equation that is not opened; ``call(g)`` is funcgrad's."""
        del scope, i, eqn, rec
        return call(g)

    def after_nested(self, scope, i, eqn, rec: Record, g: list, cts: list) -> list:
        """Called after an opened equation's backward walk; may replace its cotangents."""
        del scope, i, eqn, rec, g
        return cts

    def user_line(self, eqn) -> str:
        """The equation's user source line, or that of the nearest enclosing equation with
        one (JAX's own jitted helpers, like the one inside jnp.where, carry none)."""
        return source_line(self.user_level(eqn))

    def user_level(self, eqn):
        """``eqn``, or the nearest enclosing equation that has a user source line."""
        while "unknown" in source_line(eqn):
            outer = self.home.get(id(eqn), (None, None))[1]
            if outer is None:
                break
            eqn = outer
        return eqn


def label(eqn) -> str:
    """``jit 'mlp'``, ``custom_jvp_call 'relu'``, ``scan``: how an equation is named."""
    name = eqn_name(eqn)
    return f"{eqn.primitive.name} '{name}'" if name else eqn.primitive.name


def eqn_name(eqn) -> str:
    """The function name a nested equation carries (jit's ``name``, a custom_jvp's function)."""
    name = eqn.params.get("name")
    if isinstance(name, str):
        return name
    body = eqn.params.get("call_jaxpr")
    info = getattr(getattr(body, "jaxpr", body), "debug_info", None)
    src = getattr(info, "func_src_info", None) or ""
    return src.split(" at ")[0] if src else ""


def describe_scope(scope) -> str:
    """``inside jit 'layer' > scan > step 3`` for messages ('' at top level)."""
    return " > ".join(lbl for _, lbl in scope)


def funcgrad_rule(eqn, rec: Record, g: list) -> list:
    """Input cotangents from funcgrad's own rule for ``eqn``, called as the engine calls it."""
    return own_cotangents(eqn, rec, g)


def jax_vjp_of_eqn(eqn, rec: Record, g: list) -> list:
    """Input cotangents from ``jax.vjp`` of the single equation (the reference)."""
    idx = [k for k, a in enumerate(rec.act) if a]

    def one_eqn(*dyn):
        full = list(rec.invals)
        for k, d in zip(idx, dyn, strict=False):
            full[k] = d
        return bind(eqn, full)

    outs, pull = jax.vjp(one_eqn, *[rec.invals[k] for k in idx])
    cts_out = [_ct_or_zero(c, o) for c, o in zip(g, outs, strict=False)]
    got = pull(cts_out)
    full = [None] * len(rec.invals)
    for k, c in zip(idx, got, strict=False):
        full[k] = c
    return full


def _ct_or_zero(ct, out):
    if ct is not None:
        return ct
    dtype = jnp.result_type(out)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return np.zeros(np.shape(out), jax.dtypes.float0)
    return jnp.zeros(np.shape(out), dtype)


def as_np(x, like=None) -> np.ndarray:
    """A cotangent as float64 numpy (None -> zeros shaped like ``like``)."""
    if x is None:
        return np.zeros(np.shape(like), np.float64)
    return np.asarray(x, np.float64)
