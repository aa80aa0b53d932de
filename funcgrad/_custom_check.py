"""Check each custom_vjp / custom_jvp rule of a function against finite differences.

When funcgrad and jax.grad agree with each other but both disagree with reliable finite
differences, the path they share is the user's own derivative: a ``jax.custom_vjp`` bwd or a
``jax.custom_jvp`` rule, which both of them run. This walks the function once with the
engine (opening jit, closed_call and remat, so custom rules inside are found), records every
custom equation with its inputs, and checks each rule's equation alone, as ``blame`` checks a
primitive: the directional derivative from the rule against a finite difference of the
custom function's own primal, recomputed in float64 where it can be.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util
from jax.extend.core import primitives as p

from . import _numerics as num
from ._backward import forward
from ._errors import source_line
from ._watch import Watch, own_cotangents, watching

_CUSTOM = ("custom_vjp_call", "custom_jvp_call")


@dataclasses.dataclass
class CustomRuleResult:
    kind: str  # "custom_vjp" or "custom_jvp"
    function: str  # "name at file:line" (where the function is defined)
    called_at: str  # the user's line that calls it
    rule: float  # directional derivative from the custom rule
    fd: float
    fd_err: float
    wrong: bool

    def __str__(self) -> str:
        state = "WRONG" if self.wrong else "agrees"
        return (
            f"{self.kind} function {self.function} (called at {self.called_at}): {state}; "
            f"its rule gives directional derivative {self.rule:.6g}, finite differences "
            f"{self.fd:.6g} +- {self.fd_err:.1e}"
        )


class _FindCustom(Watch):
    open = frozenset({p.jit_p.name, "closed_call", p.remat_p.name})

    def __init__(self):
        super().__init__()
        self.found: list = []

    def on_forward(self, scope, i, eqn, rec):
        if eqn.primitive.name in _CUSTOM and any(rec.act):
            self.found.append((eqn, rec, self.user_line(eqn)))

    def user_line(self, eqn) -> str:
        """The call's source line, or its enclosing jit's (JAX's wrappers carry none)."""
        while "unknown" in source_line(eqn) and self.home.get(id(eqn), (0, None))[1]:
            eqn = self.home[id(eqn)][1]
        return source_line(eqn)


def check_custom_rules(f, args, argnums, kwargs, seed: int = 0) -> list[CustomRuleResult]:
    """Every custom rule on ``f``'s differentiated path, checked against finite differences."""
    flat, tree = tree_util.tree_flatten(args)
    owner = [k for k, a in enumerate(args) for _ in tree_util.tree_leaves(a)]
    closed = jax.make_jaxpr(lambda *xs: f(*tree_util.tree_unflatten(tree, xs), **kwargs))(*flat)
    active = [
        owner[j] in argnums and jnp.issubdtype(jnp.result_type(x), jnp.floating)
        for j, x in enumerate(flat)
    ]
    watch = _FindCustom()
    with watching(watch):
        outs, tape = forward(closed.jaxpr, closed.consts, flat, active)
    del outs, tape
    rng = np.random.default_rng(seed)
    return [_check_one(eqn, rec, line, rng) for eqn, rec, line in watch.found]


def _check_one(eqn, rec, line, rng) -> CustomRuleResult:
    g = [
        jnp.asarray(rng.standard_normal(np.shape(o)), jnp.result_type(o))
        if jnp.issubdtype(jnp.result_type(o), jnp.inexact)
        else None
        for o in rec.outs
    ]
    cts = own_cotangents(eqn, rec, g)
    fd, vs = num.equation_fd(eqn, rec.invals, rec.act, g, rng)
    d = num.dot(cts, vs)
    dtype = jnp.result_type(rec.invals[min(vs)])
    scale = max(abs(d), abs(fd.value), 1e-300)
    wrong = abs(d - fd.value) > num.tolerance(dtype, "fd") * scale + 10 * fd.err
    body = eqn.params["call_jaxpr"]
    info = getattr(getattr(body, "jaxpr", body), "debug_info", None)
    name = getattr(info, "func_src_info", None) or "<unknown function>"
    kind = eqn.primitive.name.removesuffix("_call")
    return CustomRuleResult(kind, name, line, d, fd.value, fd.err, bool(wrong))
