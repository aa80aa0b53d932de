"""pytest helpers: compare funcgrad with jax.grad, and check a new VJP rule on its own.

from funcgrad.testing import assert_grads_match, check_rule

def test_my_model():
    assert_grads_match(loss, params, x, y)          # funcgrad vs jax.grad, table on failure

def test_my_rule():
    check_rule(my_p, (3, 4), (3, 4))                # structure, linearity, finite differences
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as num
from ._check import check_grads
from ._custom_check import check_custom_rules
from ._errors import aval_str
from ._jax_compat import call_with_params
from ._numerics import float64_mode, widen
from ._registry import lookup

__all__ = ["RuleCheck", "assert_grads_match", "check_rule"]


def assert_grads_match(f, *args, argnums=None, rtol=None, fd_on_failure=True, **kwargs):
    """Assert funcgrad's gradient of scalar ``f`` equals ``jax.grad``'s, leaf by leaf.

    funcgrad and jax.grad both run a function's own ``custom_vjp``/``custom_jvp`` rules, so
    those are also checked alone against finite differences: a wrong one fails with the
    same verdict as ``check_grads``.

    On failure raises ``AssertionError`` (``funcgrad.GradientMismatchError``) with the
    per-leaf table, the three-way verdict from finite differences (``fd_on_failure``) and
    blame's pointer to the diverging rule.

    Returns:
        The CheckReport (``report.ok`` is true).

    Example:
        >>> import jax.numpy as jnp
        >>> assert_grads_match(lambda x: jnp.sum(jnp.exp(x)), jnp.ones(3)).ok
        True
    """
    __tracebackhide__ = True
    report = check_grads(
        f, *args, argnums=argnums, rtol=rtol, fd=False, raise_on_mismatch=False, **kwargs
    )
    if report.ok and not _wrong_custom_rule(f, args, argnums, kwargs):
        return report
    if fd_on_failure:  # explain: which of the three is the odd one out, and which rule
        report = check_grads(
            f, *args, argnums=argnums, rtol=rtol, fd=True, raise_on_mismatch=False, **kwargs
        )
    from ._errors import GradientMismatchError

    raise GradientMismatchError("funcgrad's gradient differs from jax.grad:\n" + str(report))


def _wrong_custom_rule(f, args, argnums, kwargs) -> bool:
    """funcgrad and jax.grad both run the user's custom rules: check those against FD."""
    nums = tuple(range(len(args))) if argnums is None else argnums
    nums = (nums,) if isinstance(nums, int) else tuple(nums)
    try:
        return any(r.wrong for r in check_custom_rules(f, args, nums, kwargs))
    except Exception:  # cannot be walked eagerly (values Python inspects): check_grads's FD
        return False


@dataclasses.dataclass
class RuleCheck:
    """What ``check_rule`` verified: one line per check, and whether each passed."""

    primitive: str
    lines: list[tuple[str, bool, str]]

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.lines)

    def __str__(self) -> str:
        rows = [f"check_rule({self.primitive}):"]
        rows += [f"  [{'ok' if ok else 'FAIL'}] {name}: {msg}" for name, ok, msg in self.lines]
        return "\n".join(rows)


def check_rule(
    primitive,
    *inputs,
    rule=None,
    seed: int = 0,
    rtol: float | None = None,
    domain=(-2.0, 2.0),
    **params,
) -> RuleCheck:
    """Check a VJP rule for ``primitive`` on given shapes, the way a rule author needs.

    Checks, with random inputs and random cotangents (float64 where possible):

    1. *structure*: the rule returns one entry per input, each ``None`` or with the input's
       shape and dtype (the output structure comes from ``jax.eval_shape``);
    2. *linearity* in the cotangent: ``rule(a g1 + b g2) = a rule(g1) + b rule(g2)``;
    3. *finite differences*: ``<g, d out>`` along a random direction equals ``<rule(g), v>``;
    4. *agreement with jax.vjp*, when JAX can differentiate the primitive.

    Args:
        primitive: a ``jax.extend.core.Primitive``.
        inputs: per input, a shape tuple (random float), a ``jax.ShapeDtypeStruct`` or an
            array (used as given: integer indices, a positive domain, ...).
        rule: the rule to check (default: the one registered for ``primitive``).
        domain: ``(low, high)`` of the random float inputs.
        params: the primitive's parameters.

    Returns:
        A RuleCheck; raises AssertionError with its table when a check fails.

    Example:
        >>> from jax.extend.core import primitives as p
        >>> check_rule(p.sin_p, (3,), accuracy=None).ok
        True
    """
    __tracebackhide__ = True
    rule = rule if rule is not None else _registered(primitive)
    rng = np.random.default_rng(seed)
    with float64_mode():
        xs = [_make_input(x, rng, domain) for x in inputs]
        check = _run_checks(primitive, rule, xs, params, rng, rtol)
    if not check.ok:
        raise AssertionError("\n" + str(check))
    return check


def _registered(primitive):
    entry = lookup(primitive)
    if entry is None:
        raise LookupError(
            f"no VJP rule is registered for '{primitive.name}'. Register one with "
            f"@funcgrad.register_vjp(...) first, or pass it as check_rule(..., rule=my_rule)."
        )
    if entry.forward is not None:
        raise TypeError(
            f"'{primitive.name}' has a rule with its own forward (a nested "
            f"jaxpr); check it with funcgrad.check_grads on a function using it."
        )
    return entry.rule


def _make_input(x, rng, domain):
    if isinstance(x, tuple) and all(isinstance(d, int) for d in x):
        return jnp.asarray(rng.uniform(*domain, size=x), jnp.float64)
    if isinstance(x, jax.ShapeDtypeStruct):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(rng.uniform(*domain, size=x.shape), jnp.float64)
        return jnp.zeros(x.shape, x.dtype)
    return widen(jnp.asarray(x))


def _run_checks(primitive, rule, xs, params, rng, rtol) -> RuleCheck:
    multi = primitive.multiple_results
    lines = []
    shapes = jax.eval_shape(lambda *a: primitive.bind(*a, **params), *xs)
    outs = primitive.bind(*xs, **params)
    outs_l = list(outs) if multi else [outs]
    shapes_l = list(shapes) if multi else [shapes]
    floats = [k for k, x in enumerate(xs) if jnp.issubdtype(x.dtype, jnp.floating)]
    g1 = [_rand_like(s, rng) for s in shapes_l]
    g2 = [_rand_like(s, rng) for s in shapes_l]

    def call(g):
        ans = outs if multi else outs_l[0]
        res = call_with_params(rule, primitive, (g if multi else g[0], ans, *xs), params)
        return list(res) if isinstance(res, (tuple, list)) else res

    c1 = call(g1)
    ok, msg = _structure(c1, xs)
    lines.append(("structure", ok, msg))
    if not ok:
        return RuleCheck(primitive.name, lines)
    a, b = 0.7, -1.3
    c2 = call(g2)
    c12 = call([None if x is None else a * x + b * y for x, y in zip(g1, g2, strict=False)])
    tol = rtol or 1e-9
    err = max(
        (_rel(c12[k], a * _z(c1[k], xs[k]) + b * _z(c2[k], xs[k])) for k in floats), default=0.0
    )
    lines.append(("linear in the cotangent", err <= tol, f"relative error {err:.1e}"))
    fd_err, fd_msg = _fd(primitive, params, xs, floats, g1, c1, rng)
    lines.append(("finite differences", fd_err <= (rtol or 1e-6), fd_msg))
    try:
        _, pull = jax.vjp(
            lambda *d: _bind_at(primitive, params, xs, floats, d), *[xs[k] for k in floats]
        )
        ref = pull(g1 if multi else g1[0])
        err = max(
            (_rel(_z(c1[k], xs[k]), r) for k, r in zip(floats, ref, strict=False)), default=0.0
        )
        lines.append(("agrees with jax.vjp", err <= (rtol or 1e-9), f"relative error {err:.1e}"))
    except Exception as e:  # a user's primitive JAX cannot differentiate: FD is the reference
        lines.append(
            (
                "agrees with jax.vjp",
                True,
                f"skipped: JAX cannot differentiate it ({type(e).__name__})",
            )
        )
    return RuleCheck(primitive.name, lines)


def _structure(cts, xs) -> tuple[bool, str]:
    if not isinstance(cts, (tuple, list)) or len(cts) != len(xs):
        got = f"{type(cts).__name__}" + (
            f" of {len(cts)}" if isinstance(cts, (tuple, list)) else ""
        )
        return False, f"expected a tuple of {len(xs)} cotangents (one per input), got {got}"
    for k, (c, x) in enumerate(zip(cts, xs, strict=False)):
        if c is None:
            continue
        if np.shape(c) != np.shape(x) or jnp.result_type(c) != jnp.result_type(x):
            return False, (
                f"cotangent {k} is {aval_str(c)} but input {k} is {aval_str(x)}; "
                f"each cotangent must have its input's shape and dtype"
            )
    return True, f"{len(xs)} cotangents with their inputs' shapes and dtypes"


def _rand_like(s, rng):
    if not jnp.issubdtype(s.dtype, jnp.inexact):
        return None
    return jnp.asarray(rng.standard_normal(s.shape), s.dtype)


def _z(c, x):
    return jnp.zeros(np.shape(x), jnp.result_type(x)) if c is None else c


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _bind_at(primitive, params, xs, floats, dyn):
    full = list(xs)
    for k, d in zip(floats, dyn, strict=False):
        full[k] = d
    return primitive.bind(*full, **params)


def _fd(primitive, params, xs, floats, g, cts, rng) -> tuple[float, str]:
    vs = num.random_directions({k: np.shape(xs[k]) for k in floats}, rng)

    def along(t):
        out = _bind_at(primitive, params, xs, floats, [xs[k] + t * vs[k] for k in floats])
        outs = out if primitive.multiple_results else [out]
        return sum(
            float(np.vdot(np.asarray(c), np.asarray(o)))
            for c, o in zip(g, outs, strict=False)
            if c is not None
        )

    scale = max([num.max_abs(xs[k]) for k in floats], default=1.0)
    fd = num.directional(along, num.step(jnp.float64, scale), num.eps_of(jnp.float64), False)
    d = sum(float(np.sum(np.asarray(_z(cts[k], xs[k])) * vs[k])) for k in floats)
    err = abs(d - fd.value) / max(abs(d), abs(fd.value), 1e-12)
    return err, (
        f"directional derivative {d:.8g} vs FD {fd.value:.8g} (relative error {err:.1e}, "
        f"estimated FD error {fd.err:.1e})"
    )
