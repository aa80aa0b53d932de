"""The rule table's machinery: rows, shape groups, and the check against ``jax.vjp``.

A row says: this function, on these argument specs, must produce a jaxpr containing
primitive ``prim``; funcgrad's VJP with a *random* cotangent must equal ``jax.vjp``'s.
Family test files (``test_<family>.py``) each define ``ROWS`` and parametrise over them;
``test_coverage.py`` fails when a registered rule has no row anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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


@contextlib.contextmanager
def _reference_refusing_complex():
    """JAX 0.12's jax.vjp refuses to differentiate complex comparisons (max, min, cummax of
    complex operands: "gt does not accept dtype complex128"), which JAX 0.10.2 differentiates.
    There the row has no reference on this JAX: skip it with that reason (it is still checked
    against jax.vjp on 0.10.2, the oldest CI leg). Any other reference error fails the row."""
    try:
        yield
    except TypeError as err:
        if "does not accept dtype complex" not in str(err):
            raise
        pytest.skip(f"jax.vjp on JAX {jax.__version__} refuses this complex row: {err}")


def run_checked(fn, args, check) -> None:
    """``check(fn(*args))`` with ``fn`` compiled by XLA's cheap-compile options (the
    fuzzer's: compiling is most of a row's time); where that build fails to run or its result
    fails ``check``, the default build's result is checked instead, and decides. (The cheap
    build once miscompiled JAX's own side: fuzz seed 424245 program 543.) Tracing errors,
    funcgrad's or JAX's, propagate."""
    from funcgrad._jax_compat import fast_compile_options

    lowered = jax.jit(fn).lower(*args)
    try:
        result = lowered.compile(compiler_options=fast_compile_options())(*args)
        check(jax.block_until_ready(result))
        return
    except (AssertionError, jax.errors.JaxRuntimeError):
        pass
    check(jax.block_until_ready(lowered.compile()(*args)))


def check_row(row: Row, group, seed=0):
    """Assert funcgrad's VJP equals jax.vjp's for ``row`` on argument specs ``group``.

    Both sides are traced into one compiled program, as the variants below are: JAX's
    op-by-op dispatch of the reference had been most of the table's time. (funcgrad's eager
    path has its own tests: ``tests/test_eager.py``.)"""
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
    with _reference_refusing_complex():
        out_shapes = jax.eval_shape(on_floats, *fl_args)
    rng = np.random.default_rng(seed + 1)
    ct = jax.tree.map(lambda o: _random_like(rng, o), out_shapes)
    if any(c is None for c in jax.tree.leaves(ct, is_leaf=lambda c: c is None)):
        ct = jax.tree.map(
            lambda o: (
                _random_like(rng, o)
                if jnp.issubdtype(o.dtype, jnp.inexact)
                else np.zeros(o.shape, jax.dtypes.float0)
            ),
            out_shapes,
        )

    def both(fl):
        out_ref, vjp_ref = jax.vjp(on_floats, *fl)
        out, vjp_fg = funcgrad.vjp(on_floats, *fl)
        # funcgrad's rules never rely on implicit dtype promotion: they run under "strict".
        with jax.numpy_dtype_promotion("strict"):
            got = vjp_fg(ct)
        return (out_ref, vjp_ref(ct)), (out, got)

    def check(result):
        (out_ref, want), (out, got) = result
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=row.rtol, atol=row.atol),
            out,
            out_ref,
        )
        assert len(got) == len(want)
        for k, (a, b) in enumerate(zip(got, want)):
            assert a.shape == b.shape and a.dtype == b.dtype, (
                f"row {row.name!r}: cotangent of float argument {k} has {a.shape} {a.dtype}, "
                f"jax.vjp gives {b.shape} {b.dtype}"
            )
            np.testing.assert_allclose(
                a, b, rtol=row.rtol, atol=row.atol, err_msg=f"row {row.name!r}, float argument {k}"
            )

    try:
        run_checked(both, (fl_args,), check)
    except TypeError:
        with _reference_refusing_complex():  # skips if the reference alone refuses the row
            jax.eval_shape(lambda fl: jax.vjp(on_floats, *fl)[1](ct), fl_args)
        raise  # the reference runs: the failure is funcgrad's


def expand(rows: Sequence[Row]):
    """pytest parameters: one per (row, shape group), with readable ids."""
    import pytest

    params = []
    for row in rows:
        for k, group in enumerate(row.arg_groups):
            shapes = ",".join("x".join(map(str, getattr(s, "shape", ()))) or "s" for s in group)
            params.append(pytest.param(row, group, id=f"{row.name}-{k}-{shapes}"))
    return params


# ----- variants of a row: second order, and other floating dtypes ----------------------------

# Tolerances for comparing funcgrad with jax.vjp in a dtype: both compute in that dtype, in a
# different order, so the difference is a few roundings of the largest value involved.
DTYPE_TOL = {
    jnp.dtype(jnp.float64): 1e-9,
    jnp.dtype(jnp.float32): 2e-5,
    jnp.dtype(jnp.bfloat16): 6e-2,
}


def _cast_args(args, dtype):
    """Real float64 arguments cast to ``dtype``; integers, booleans and complex unchanged."""
    if dtype is None:
        return args
    return tuple(a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args)


def _inexact_function(row, args):
    """(function of the inexact arguments returning the inexact output leaves, those args)."""
    idx = [i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.inexact)]

    def fun(*fl):
        full = list(args)
        for i, v in zip(idx, fl):
            full[i] = v
        leaves = jax.tree.leaves(row.fun(*full))
        return [o for o in leaves if jnp.issubdtype(o.dtype, jnp.inexact)]

    return fun, [args[i] for i in idx]


def _assert_close(row, what, got, want, tol):
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got) == len(want), f"row {row.name!r} {what}: {len(got)} vs {len(want)} leaves"
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"row {row.name!r} {what}, leaf {k}: funcgrad gives {a.shape} {a.dtype}, "
            f"jax gives {b.shape} {b.dtype}"
        )
        a64, b64 = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
        finite = np.abs(b64)[np.isfinite(b64)]  # inf and nan must match exactly
        scale = float(np.max(finite, initial=1.0))
        np.testing.assert_allclose(
            a64, b64, rtol=tol, atol=tol * scale, err_msg=f"row {row.name!r} {what}, leaf {k}"
        )


def _random_tree(rng, tree):
    return jax.tree.map(lambda x: _random_like(rng, x), tree)


def check_row_dtype(row: Row, group, dtype, seed=0):
    """The first-order check with the row's real arguments cast to ``dtype``.

    Both sides run in one compiled program (op-by-op dispatch of the reference dominated the
    suite's time); where that program fails, the reference is compiled alone, and a row
    JAX itself cannot run in this dtype is skipped with JAX's own error."""
    import funcgrad

    fun, fl = _inexact_function(row, _cast_args(make_args(row, group, seed), dtype))
    if not fl:
        return
    name = jnp.dtype(dtype).name

    def reference(fl, ct):
        out, vjp_ref = jax.vjp(fun, *fl)
        return out, vjp_ref(ct)

    def ours(fl, ct):
        out, vjp_fg = funcgrad.vjp(fun, *fl)
        with jax.numpy_dtype_promotion("strict"):
            return out, vjp_fg(ct)

    def skip_if_jax_cannot(run, *args):
        """Run ``run``; if JAX itself fails there, the row does not apply in this dtype."""
        try:
            return jax.block_until_ready(run(*args))
        except (TypeError, ValueError, NotImplementedError) as err:
            first = str(err).strip().splitlines()[0][:160]
            pytest.skip(f"jax.vjp itself does not run this row in {name}: {first}")

    ct = _random_tree(np.random.default_rng(seed + 1), skip_if_jax_cannot(jax.eval_shape, fun, *fl))
    tol = max(DTYPE_TOL[jnp.dtype(dtype)], row.rtol)

    def check(result):
        (out_ref, want), (out, got) = result
        _assert_close(row, f"{name} output", out, out_ref, tol)
        _assert_close(row, f"{name} cotangents", got, want, tol)

    try:
        run_checked(lambda *a: (reference(*a), ours(*a)), (fl, ct), check)
    except (TypeError, ValueError, NotImplementedError):
        skip_if_jax_cannot(jax.jit(reference), fl, ct)
        raise  # JAX runs the row: the failure is funcgrad's


def check_row_second_order(row: Row, group, seed=0):
    """funcgrad's VJP of funcgrad's pullback equals jax.vjp of jax.vjp's pullback.

    The map (primals, ct) -> pullback(ct) is differentiated at random cotangents ``ct`` and
    ``u``: this exercises the derivative of every expression a rule's backward pass emits.
    """
    import funcgrad

    fun, fl = _inexact_function(row, make_args(row, group, seed))
    if not fl:
        return
    out_ref = jax.eval_shape(fun, *fl)  # shapes only: the values come from the compiled run
    rng = np.random.default_rng(seed + 1)
    ct = _random_tree(rng, out_ref)
    if not jax.tree.leaves(ct):
        return

    def pullback_fg(primals, ct):
        return funcgrad.vjp(fun, *primals)[1](ct)

    def pullback_jax(primals, ct):
        return jax.vjp(fun, *primals)[1](ct)

    def second_fg(primals, ct, u):
        firsts, vjp_fg = funcgrad.vjp(pullback_fg, primals, ct)
        with jax.numpy_dtype_promotion("strict"):
            return firsts, vjp_fg(u)

    def second_jax(primals, ct, u):
        firsts, vjp_ref = jax.vjp(pullback_jax, primals, ct)
        return firsts, vjp_ref(u)

    with _reference_refusing_complex():
        u = _random_tree(rng, jax.eval_shape(pullback_jax, fl, ct))
    tol = max(DTYPE_TOL[jnp.dtype(jnp.float64)], row.rtol)

    def check(result):
        (got_firsts, got), (firsts, want) = result
        _assert_close(row, "first order", got_firsts, firsts, tol)
        _assert_close(row, "second order", got, want, tol * 10)

    # Compiled: one XLA program for both sides instead of hundreds of op-by-op dispatches.
    run_checked(lambda *a: (second_fg(*a), second_jax(*a)), (fl, ct, u), check)
