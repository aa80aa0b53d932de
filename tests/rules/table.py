"""The rule table's machinery: rows, shape groups, and the check against ``jax.vjp``.

A row says: this function, on these argument specs, must produce a jaxpr containing
primitive ``prim``; funcgrad's VJP with a *random* cotangent must equal ``jax.vjp``'s.
Family test files (``test_<family>.py``) each define ``ROWS`` and parametrise over them;
``test_coverage.py`` fails when a registered rule has no row anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore


@dataclasses.dataclass(frozen=True)
class F:
    """A float64 argument of the given shape, drawn uniformly from ``domain``."""

    shape: tuple[int, ...] = ()
    domain: tuple[float, float] | None = None  # None: use the row's domain

    def make(self, rng, row_domain):
        lo, hi = self.domain or row_domain
        return jnp.asarray(rng.uniform(lo, hi, size=self.shape), dtype=jnp.float64)


@dataclasses.dataclass(frozen=True)
class I:  # noqa: E742  (F, I, C: float, int and constant argument specs)
    """An int32 argument of the given shape with values in [low, high)."""

    shape: tuple[int, ...] = ()
    high: int = 3
    low: int = 0

    def make(self, rng, row_domain):
        del row_domain
        return jnp.asarray(rng.integers(self.low, self.high, size=self.shape), dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class C:
    """A fixed argument (e.g. a permutation, a boolean mask, a well-conditioned matrix)."""

    value: Any

    def make(self, rng, row_domain):
        del row_domain
        v = self.value(rng) if callable(self.value) else self.value
        return jnp.asarray(v)


def f(*shape, domain=None):
    return F(tuple(shape), domain)


# Shape groups that exercise broadcasting, size-1 and rank-0 operands and empty arrays.
UNARY = [(f(),), (f(5),), (f(3, 4),), (f(1, 4),), (f(2, 1, 3),), (f(0, 3),)]
BINARY = [
    (f(3, 4), f(3, 4)),
    (f(), f()),
    (f(3, 4), f()),
    (f(), f(3, 4)),
    (f(3, 4), f(1, 4)),
    (f(3, 1), f(1, 4)),
    (f(2, 3, 4), f(1, 1, 4)),
    (f(0, 4), f(1, 4)),
]


@dataclasses.dataclass
class Row:
    prim: str  # name of the primitive the row exists to test
    fun: Callable[..., Any]
    arg_groups: Sequence[tuple[Any, ...]]
    domain: tuple[float, float] = (-2.0, 2.0)
    rtol: float = 1e-7
    atol: float = 1e-9
    id: str | None = None  # distinguishes several rows for one primitive

    @property
    def name(self):
        return self.id or self.prim


def primitive_names(jaxpr) -> set[str]:
    """Names of every primitive in a jaxpr, recursing into nested jaxprs."""
    names = set()
    stack = [jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr]
    while stack:
        jx = stack.pop()
        for eqn in jx.eqns:
            names.add(eqn.primitive.name)
            for v in eqn.params.values():
                for sub in v if isinstance(v, (tuple, list)) else (v,):
                    if isinstance(sub, jcore.ClosedJaxpr):
                        stack.append(sub.jaxpr)
                    elif isinstance(sub, jcore.Jaxpr):
                        stack.append(sub)
    return names


def _random_like(rng, x):
    """A random cotangent for output ``x``; complex outputs get random imaginary parts too
    (a real-valued cotangent on a complex output would hide conjugation mistakes)."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return None
    ct = rng.standard_normal(x.shape)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        ct = ct + 1j * rng.standard_normal(x.shape)
    return jnp.asarray(ct, dtype=x.dtype)


def make_args(row: Row, group, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(spec.make(rng, row.domain) for spec in group)


def check_row(row: Row, group, seed=0):
    """Assert funcgrad's VJP equals jax.vjp's for ``row`` on argument specs ``group``."""
    import funcgrad

    args = make_args(row, group, seed)
    jaxpr = jax.make_jaxpr(row.fun)(*args)
    names = primitive_names(jaxpr)
    assert row.prim in names, (
        f"row {row.name!r}: its jaxpr does not contain primitive {row.prim!r}; it has "
        f"{sorted(names)}"
    )
    float_idx = [i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.inexact)]

    def on_floats(*fl):
        full = list(args)
        for i, v in zip(float_idx, fl):
            full[i] = v
        return row.fun(*full)

    fl_args = [args[i] for i in float_idx]
    out_ref, vjp_ref = jax.vjp(on_floats, *fl_args)
    out, vjp_fg = funcgrad.vjp(on_floats, *fl_args)
    rng = np.random.default_rng(seed + 1)
    ct = jax.tree.map(lambda o: _random_like(rng, o), out_ref)
    if any(c is None for c in jax.tree.leaves(ct, is_leaf=lambda c: c is None)):
        ct = jax.tree.map(
            lambda o: (
                _random_like(rng, o)
                if jnp.issubdtype(o.dtype, jnp.inexact)
                else np.zeros(o.shape, jax.dtypes.float0)
            ),
            out_ref,
        )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=row.rtol, atol=row.atol), out, out_ref
    )
    got = vjp_fg(ct)
    want = vjp_ref(ct)
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"row {row.name!r}: cotangent of float argument {k} has {a.shape} {a.dtype}, "
            f"jax.vjp gives {b.shape} {b.dtype}"
        )
        np.testing.assert_allclose(
            a, b, rtol=row.rtol, atol=row.atol, err_msg=f"row {row.name!r}, float argument {k}"
        )


def expand(rows: Sequence[Row]):
    """pytest parameters: one per (row, shape group), with readable ids."""
    import pytest

    params = []
    for row in rows:
        for k, group in enumerate(row.arg_groups):
            shapes = ",".join("x".join(map(str, getattr(s, "shape", ()))) or "s" for s in group)
            params.append(pytest.param(row, group, id=f"{row.name}-{k}-{shapes}"))
    return params
