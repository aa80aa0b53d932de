"""Numerics shared by every checker: finite differences, tolerances, NaN-aware comparison.

Used by ``check_grads`` (funcgrad/_check.py), ``funcgrad.testing`` and
``funcgrad.diagnostics.blame``; nothing else in the package differences a function or
owns a tolerance table.

* ``directional(F, h, ...)``: central difference of a scalar function of a step ``t`` along a
  direction, with an error estimate (the gap between steps ``h`` and ``2h`` plus rounding)
  and a kink test (one-sided slopes whose jump survives a tenfold smaller step).
* ``step(dtype, scale)``: the central-difference step, ``eps ** (1/3) * scale``.
* ``tolerance(dtype, kind)``: per-dtype relative tolerances, one table.
* ``max_abs_diff(a, b)``: elementwise, NaN where both are NaN counts as equal.
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._backward import bind

# Relative tolerances by dtype, one column per comparison:
# grad: funcgrad vs jax.grad on a whole function, against the largest |jax.grad| (the same
#       mathematics in the same precision: a few ulps of accumulation);
# fd:   <grad, v> vs a finite difference, relative to |grad|_2 (the FD's own estimated
#       error is added to it);
# eqn:  one equation's VJP rule vs jax.vjp of it (blame): looser, a rule may use another,
#       equally exact, formula than JAX's.
_TOLERANCES = {
    "float64": {"grad": 1e-9, "fd": 1e-6, "eqn": 1e-7},
    "float32": {"grad": 2e-5, "fd": 1e-4, "eqn": 1e-4},
    "float16": {"grad": 2e-2, "fd": 2e-2, "eqn": 3e-2},
    "bfloat16": {"grad": 2e-2, "fd": 5e-2, "eqn": 3e-2},
}


def tolerance(dtype, kind: str) -> float:
    """Relative tolerance of comparison ``kind`` ("grad", "fd", "eqn") in ``dtype``; a dtype
    not in the table (complex, an extended float) gets float32's."""
    name = jnp.dtype(dtype).name
    row = _TOLERANCES.get(name) or _TOLERANCES.get(name.replace("complex128", "float64"))
    return (row or _TOLERANCES["float32"])[kind]


def eps_of(dtype) -> float:
    """Machine epsilon of a floating dtype (float64's for anything else)."""
    if jnp.issubdtype(dtype, jnp.inexact):
        return float(jnp.finfo(dtype).eps)
    return float(np.finfo(np.float64).eps)


def step(dtype, scale: float = 1.0) -> float:
    """Central-difference step that balances truncation (h^2) and rounding (eps/h)."""
    return eps_of(dtype) ** (1 / 3) * max(1.0, scale)


@contextlib.contextmanager
def float64_mode():
    """x64 on for the duration (recompute a float32 function in float64)."""
    with jax.enable_x64(True):
        yield


def widen(x):
    """A floating leaf as float64 (inside float64_mode); other leaves unchanged."""
    if jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return jnp.asarray(x, jnp.float64)
    return x


@dataclasses.dataclass
class FDResult:
    """A directional finite difference: value, its estimated error, and the kink test."""

    value: float  # (F(h) - F(-h)) / 2h
    err: float  # estimated error: |D(h) - D(2h)| + rounding |F(0)| eps / h
    kink: bool = False  # one-sided slopes keep a jump as h shrinks
    one_sided: tuple[float, float] = (0.0, 0.0)  # (backward, forward) at the smallest step

    def reliable(self, scale: float, rtol: float) -> bool:
        """The estimate is good to ``rtol`` relative to ``scale`` and not at a kink."""
        return not self.kink and self.err <= rtol * max(scale, 1e-300)


def directional(F, h: float, eps: float, kinks: bool = True) -> FDResult:
    """Central difference of scalar ``F(t)`` at 0 with step ``h`` (``eps``: the precision
    ``F`` is computed in), its error estimate and, with ``kinks``, a kink test."""
    f0 = F(0.0)
    fp, fm = F(h), F(-h)
    d1 = (fp - fm) / (2 * h)
    d2 = (F(2 * h) - F(-2 * h)) / (4 * h)
    err = abs(d1 - d2) + (abs(f0) + 1e-300) * eps / h
    if not kinks:
        return FDResult(d1, err)
    # A kink keeps its slope jump as the step shrinks tenfold; curvature does not.
    jump_h = abs((fp - f0) / h - (f0 - fm) / h)
    hs = h / 10
    fwd, bwd = (F(hs) - f0) / hs, (f0 - F(-hs)) / hs
    jump_s = abs(fwd - bwd)
    noise = 4 * (abs(f0) + 1e-300) * eps / hs
    size = max(abs(fwd), abs(bwd), 1e-300)
    kink = jump_s > 0.5 * jump_h and jump_s > max(noise, 1e-3 * size)
    return FDResult(d1, err, bool(kink), (bwd, fwd))


def random_directions(shapes: dict, rng) -> dict:
    """Random directions, one per key, jointly of unit norm."""
    vs = {k: rng.standard_normal(s) for k, s in shapes.items()}
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in vs.values())) or 1.0
    return {k: v / norm for k, v in vs.items()}


def max_abs_diff(a, b) -> float:
    """max |a - b| elementwise; NaN in both counts as equal, NaN in one as infinite."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not a.size:
        return 0.0
    if np.any(np.isnan(a) ^ np.isnan(b)):
        return float("inf")
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    diff = np.where(same, 0.0, np.abs(a - b))
    return float(np.max(np.nan_to_num(diff, nan=np.inf)))


def max_abs(x) -> float:
    """max |x| ignoring NaN (0 for an empty array)."""
    x = np.asarray(x, np.float64)
    return float(np.max(np.abs(np.nan_to_num(x)))) if x.size else 0.0


def equation_fd(eqn, invals, act, g, rng):
    """Directional FD of ``<g, eqn(x)>`` along a random unit direction of the active inputs,
    recomputed in float64 where the equation allows it. Returns ``(FDResult, directions)``."""
    vs = random_directions({k: np.shape(invals[k]) for k, a in enumerate(act) if a}, rng)
    try:
        with float64_mode():
            return _equation_central(eqn, invals, g, vs, wide=True), vs
    except Exception:  # params pin a narrower dtype: difference in the equation's own dtype
        return _equation_central(eqn, invals, g, vs, wide=False), vs


def _equation_central(eqn, invals, g, vs, wide) -> FDResult:
    base = [widen(x) if wide else x for x in invals]
    gs = [None if c is None else np.asarray(c, np.float64) for c in g]
    out_dtype = []

    def along(t):
        full = [
            base[k] + jnp.asarray(t * vs[k], jnp.result_type(base[k])) if k in vs else base[k]
            for k in range(len(base))
        ]
        outs = bind(eqn, full)
        out_dtype.append(jnp.result_type(outs[0]))
        return sum(
            float(np.vdot(c, np.asarray(o, np.float64)))
            for c, o in zip(gs, outs, strict=False)
            if c is not None
        )

    along(0.0)  # the output's dtype sets the step
    scale = max([1.0] + [max_abs(invals[k]) for k in vs if np.size(invals[k])])
    eps = eps_of(out_dtype[0]) if jnp.issubdtype(out_dtype[0], jnp.inexact) else 1e-16
    return directional(along, eps ** (1 / 3) * scale, eps, kinks=False)


def dot(cts, vs) -> float:
    """``sum_k <cts[k], vs[k]>`` (a missing cotangent is zero)."""
    return sum(
        float(np.sum(np.asarray(cts[k], np.float64) * vs[k])) for k in vs if cts[k] is not None
    )
