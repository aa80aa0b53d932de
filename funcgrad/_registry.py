"""The VJP table: primitive -> hand-written rule, plus the explicit non-differentiable list.

Rule contract (see funcgrad/rules/README.md):

    rule(g, ans, *primals, **params) -> tuple[cotangent | None, ...]

``g`` is the output cotangent (a list, possibly holding ``None``, for multiple-result
primitives), ``ans`` the primal output, ``primals`` the input values (literals included),
``params`` the equation's parameters under their jaxpr names.  One entry per input;
``None`` means "no cotangent" (a symbolic zero).

A rule registered with ``forward=`` (nested jaxprs: scan, cond, custom_jvp, ...) keeps its
own residuals: the forward walk calls ``outs, res = forward(active, *primals, **params)``
where ``active`` says which inputs need a cotangent, and the backward walk then passes
``res`` in the ``ans`` slot of the rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jax.extend.core import Primitive

Rule = Callable[..., tuple[Any, ...]]


@dataclasses.dataclass(frozen=True)
class Entry:
    rule: Rule
    forward: Callable[..., tuple[Any, Any]] | None = None


VJP_RULES: dict[Primitive, Entry] = {}
# Primitives with no derivative (comparisons, rounding, integer ops, ...): their outputs carry
# no cotangent, so nothing flows back through them.  Listed explicitly; an unlisted,
# unregistered primitive is an error, never a silent zero.
NONDIFF: set[Primitive] = set()
# Primitives that JAX does not export under jax.extend.core.primitives are matched by name.
_BY_NAME: dict[str, Entry] = {}
_NONDIFF_BY_NAME: set[str] = set()


def register_vjp(primitive: Primitive | str, *, forward=None) -> Callable[[Rule], Rule]:
    """Register ``rule`` as the VJP of ``primitive`` (a Primitive object, or its name).

    Example::

        @funcgrad.register_vjp(my_prim)
        def my_prim_vjp(g, ans, x, *, scale):
            return (g * scale,)
    """

    def decorate(rule: Rule) -> Rule:
        if not callable(rule):
            raise TypeError(f"register_vjp expected a callable rule, got {rule!r}")
        entry = Entry(rule, forward)
        if isinstance(primitive, str):
            _BY_NAME[primitive] = entry
        elif isinstance(primitive, Primitive):
            VJP_RULES[primitive] = entry
        else:
            raise TypeError(
                f"register_vjp expected a jax.extend.core.Primitive or its name, "
                f"got {type(primitive).__name__}: {primitive!r}"
            )
        return rule

    return decorate


def register_nondiff(*primitives: Primitive | str) -> None:
    """Declare primitives whose outputs carry no derivative (e.g. comparisons, argmax)."""
    for prim in primitives:
        if isinstance(prim, str):
            _NONDIFF_BY_NAME.add(prim)
        else:
            NONDIFF.add(prim)


def lookup(primitive: Primitive) -> Entry | None:
    entry = VJP_RULES.get(primitive)
    return entry if entry is not None else _BY_NAME.get(primitive.name)


def is_nondiff(primitive: Primitive) -> bool:
    return primitive in NONDIFF or primitive.name in _NONDIFF_BY_NAME


def registered_primitives() -> list[str]:
    """Names of every primitive with a rule (for coverage meta-tests and docs)."""
    return sorted({p.name for p in VJP_RULES} | set(_BY_NAME))


def nondiff_primitives() -> list[str]:
    return sorted({p.name for p in NONDIFF} | _NONDIFF_BY_NAME)


# Primitives funcgrad deliberately does not differentiate, by name, with the reason. The
# coverage discovery (funcgrad/_discovery.py, docs/coverage.md) requires every primitive a
# public JAX function produces to have a rule, a non-differentiable entry, or a line here.
REFUSED: dict[str, str] = {
    "custom_lin": "JAX's linearisation of a custom_vjp; reaches funcgrad only through the "
    "tangent map of a custom_jvp rule that calls jax.jvp on a custom_vjp function; no rule yet",
    "reduce_window": "generic windowed reduction with a user computation; pooling uses "
    "reduce_window_sum/max/min, which have rules",
    "select_and_scatter": "JAX does not differentiate it either",
    "igamma_grad_a": "JAX has no derivative for it either",
    "random_gamma_grad": "JAX has no derivative for it either",
    "zeta": "JAX differentiates only one operand; no rule yet",
    "regularized_incomplete_beta": "JAX differentiates only some operands; no rule yet",
    "hessenberg": "rare linear-algebra primitive; no rule yet",
    "householder_product": "rare linear-algebra primitive; no rule yet",
    "schur": "rare linear-algebra primitive; no rule yet",
    "tridiagonal": "rare linear-algebra primitive; no rule yet",
    "geqrf": "Householder QR factors (jax.scipy.linalg.qr_multiply); no rule yet",
    "ormqr": "product with Householder QR factors (jax.scipy.linalg.qr_multiply); no rule yet",
    "scaled_dot": "block-scaled low-precision matmul (jax.lax.scaled_dot); no rule yet",
    "stack": "jnp.stack/jnp.select/jax.scipy.special.gamma on JAX >= 0.10; no rule yet",
    "unstack": "jnp.unstack on JAX >= 0.10; no rule yet",
    "dce_sink": "jax.lax.dce_sink keeps a value alive and returns nothing; no rule yet",
    "optimization_barrier": "jax.lax.optimization_barrier; no rule yet",
    "platform_index": "integer platform selector inside jnp.diagonal/slogdet; not yet listed as "
    "non-differentiable",
}
