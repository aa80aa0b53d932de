"""The static dataflow of a jaxpr: which values each equation reads and writes, nested
jaxprs opened. The one place outside the walks that goes over a jaxpr's equations.

The walks in ``_backward.py`` follow the values one run computes (the branch a cond took,
a scan's actual steps). A question about what *could* reach the loss (``why_zero``), or
which equation reads a value (``explain_nans`` looking for the ``jnp.where`` that masks a
NaN), needs the program's structure instead: every branch of a cond, a while's body, a
scan's body once with its carries fed back. ``flow`` yields that structure as steps, in
program order, each between nodes ``(scope, var)``:

* an equation: ``Step(scope, eqn, ins=its variable inputs, outs=its variable outputs)``;
* an equation that holds jaxprs (jit, closed_call, remat, cond, scan, while) is yielded
  with ``opened=True``; unless ``open_nested=False``, the steps of each of its jaxprs
  follow in a fresh scope (one ``Nest`` per use), then the pass-through steps
  (``eqn=None``) that connect the equation's inputs to the jaxpr's inputs, the jaxpr's
  outputs to the equation's outputs, and a loop's carried outputs back to its inputs.

custom_jvp and custom_vjp calls are single equations: their own derivative decides, not
their primal code.
"""

from __future__ import annotations

import dataclasses

from jax.extend import core as jcore
from jax.extend.core import primitives as P

from ._jax_compat import CLOSED_CALL_NAME, REMAT_NAMES, eqn_params
from ._liveness import is_var


@dataclasses.dataclass(frozen=True, eq=False)
class Nest:
    """One use of a nested jaxpr: held by equation ``index`` (``eqn``) of the enclosing one.
    Compared by identity, so every use is its own scope."""

    index: int
    eqn: object


@dataclasses.dataclass(frozen=True)
class Step:
    scope: tuple  # the Nests enclosing it, outermost first; () at top level
    eqn: object  # None for a pass-through into or out of a nested jaxpr
    ins: list  # nodes (scope, var) read, in the equation's order (a var used twice: twice)
    outs: list  # nodes (scope, var) written
    opened: bool = False  # an equation whose jaxprs are walked as their own steps


def flow(jaxpr, open_nested: bool = True):
    """The steps of ``jaxpr`` (a Jaxpr), see the module docstring."""
    yield from _steps(jaxpr, (), open_nested)


def _steps(jaxpr, scope, open_nested):
    for i, eqn in enumerate(jaxpr.eqns):
        ins = [(scope, v) for v in eqn.invars if is_var(v)]
        outs = [(scope, o) for o in eqn.outvars if is_var(o)]
        subs = nested_jaxprs(eqn)
        yield Step(scope, eqn, ins, outs, opened=bool(subs))
        if open_nested:
            for sub, in_map, out_map, loops in subs:
                yield from _nested(scope, i, eqn, sub, in_map, out_map, loops)


def _nested(scope, i, eqn, sub, in_map, out_map, loops):
    inner = scope + (Nest(i, eqn),)
    yield from _steps(sub, inner, True)
    for k_out, k_in in in_map:
        v = eqn.invars[k_out]
        if is_var(v):
            yield Step(scope, None, [(scope, v)], [(inner, sub.invars[k_in])])
    for k_in, k_out in out_map:
        o, w = eqn.outvars[k_out], sub.outvars[k_in]
        if is_var(o) and is_var(w):
            yield Step(scope, None, [(inner, w)], [(scope, o)])
    for k_out, k_in in loops:  # scan/while carries: the body's output feeds its input
        w = sub.outvars[k_out]
        if is_var(w):
            yield Step(inner, None, [(inner, w)], [(inner, sub.invars[k_in])])


def nested_jaxprs(eqn) -> list:
    """``[(jaxpr, [(outer in, inner in)], [(inner out, outer out)], [(inner out, inner in)])]``
    for an equation holding jaxprs; [] for any other (custom_jvp/vjp included)."""
    name, prm = eqn.primitive.name, eqn_params(eqn)
    n_in, n_out = len(eqn.invars), len(eqn.outvars)
    ident_in = [(k, k) for k in range(n_in)]
    ident_out = [(k, k) for k in range(n_out)]
    if name in (P.jit_p.name, CLOSED_CALL_NAME):
        return [(_open(prm.get("jaxpr", prm.get("call_jaxpr"))), ident_in, ident_out, [])]
    if name in REMAT_NAMES:
        return [(_open(prm["jaxpr"]), ident_in, ident_out, [])]
    if name == P.cond_p.name:  # input 0 is the branch index
        ops = [(k + 1, k) for k in range(n_in - 1)]
        return [(_open(b), ops, ident_out, []) for b in prm["branches"]]
    if name == P.scan_p.name:
        nc, nk = prm["num_consts"], prm["num_carry"]
        return [(_open(prm["jaxpr"]), ident_in, ident_out, [(k, nc + k) for k in range(nk)])]
    if name == P.while_p.name:  # the body: its consts, then the carry (the cond's are skipped)
        nb, nc = prm["body_nconsts"], prm["cond_nconsts"]
        n_carry = n_in - nb - nc
        in_map = [(nc + k, k) for k in range(nb)]
        in_map += [(nc + nb + k, nb + k) for k in range(n_carry)]
        loops = [(k, nb + k) for k in range(n_carry)]
        return [(_open(prm["body_jaxpr"]), in_map, ident_out, loops)]
    return []


def _open(j):
    return j.jaxpr if isinstance(j, jcore.ClosedJaxpr) else j
