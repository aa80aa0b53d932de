"""check_grads: funcgrad against jax.grad and central finite differences, per parameter leaf."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from ._api import grad as fg_grad
from ._errors import GradientMismatchError

# Relative tolerance of funcgrad vs jax.grad, by dtype: both evaluate the same mathematics in
# the same precision, so they agree to a few ulps of accumulated rounding.
_RTOL = {"float64": 1e-9, "float32": 2e-5, "float16": 2e-2, "bfloat16": 2e-2}
# Directional finite differences are recomputed in float64 where x64 is on; their error is
# truncation (eps^2) plus cancellation (ulp / eps).
_FD_RTOL = {"float64": 1e-5, "float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


@dataclasses.dataclass
class LeafResult:
    path: str
    shape: tuple
    dtype: str
    max_abs_err: float  # |funcgrad - jax.grad|, elementwise max
    rel_err: float  # max_abs_err / max |jax.grad|
    fd_rel_err: float | None  # directional derivative vs central difference (None: skipped)
    ok: bool


@dataclasses.dataclass
class CheckReport:
    leaves: list[LeafResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.leaves)

    def __str__(self) -> str:
        head = f"{'parameter':<28} {'shape':<14} {'dtype':<8} {'max abs err':>11} "
        head += f"{'rel err':>9} {'FD rel err':>10}  result"
        lines = [head, "-" * len(head)]
        for r in self.leaves:
            fd = "skipped" if r.fd_rel_err is None else f"{r.fd_rel_err:.2e}"
            lines.append(
                f"{r.path:<28} {str(r.shape):<14} {r.dtype:<8} {r.max_abs_err:>11.2e} "
                f"{r.rel_err:>9.2e} {fd:>10}  {'ok' if r.ok else 'MISMATCH'}"
            )
        verdict = "all leaves agree" if self.ok else "funcgrad disagrees with the reference"
        lines.append(f"check_grads: {verdict} ({len(self.leaves)} leaves)")
        return "\n".join(lines)


def _float64_ok() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def check_grads(f, *args, argnums=None, rtol=None, fd=True, fd_eps=None, seed=0,
                raise_on_mismatch=True, **kwargs) -> CheckReport:
    """Compare funcgrad's gradient of scalar ``f`` with ``jax.grad`` and finite differences.

    Every floating-point leaf of the arguments in ``argnums`` (default: all arguments) gets a
    row: its path, the max abs and relative error of funcgrad against jax.grad, and the
    relative error of the directional derivative ``<grad, v>`` (random unit ``v``) against a
    central difference recomputed in float64 where x64 is enabled. Tolerances come from the
    dtype unless ``rtol`` is given.

    Returns:
        A CheckReport whose ``str()`` is the table. Raises GradientMismatchError with that
        table when a leaf fails and ``raise_on_mismatch`` is true.
    """
    if argnums is None:
        argnums = tuple(range(len(args)))
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    got = fg_grad(f, argnums=argnums, **_int_ok(args, argnums))(*args, **kwargs)
    want = jax.grad(f, argnums=argnums, **_int_ok(args, argnums))(*args, **kwargs)
    rng = np.random.default_rng(seed)
    results = []
    for pos, (i, g_arg, w_arg) in enumerate(zip(argnums, got, want)):
        paths = tree_util.tree_flatten_with_path(args[i])[0]
        g_leaves, w_leaves = tree_util.tree_leaves(g_arg), tree_util.tree_leaves(w_arg)
        for leaf_idx, ((path, x), g, w) in enumerate(zip(paths, g_leaves, w_leaves)):
            dtype = jnp.result_type(x)
            if not jnp.issubdtype(dtype, jnp.floating):
                continue
            name = f"args[{i}]{tree_util.keystr(path)}"
            tol = rtol if rtol is not None else _RTOL.get(dtype.name, 1e-5)
            g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
            abs_err = float(np.max(np.abs(g64 - w64))) if g64.size else 0.0
            scale = float(np.max(np.abs(w64))) if w64.size else 0.0
            rel = abs_err / max(scale, np.finfo(np.float64).tiny)
            ok = abs_err <= tol * max(scale, 1e-30) or abs_err == 0.0
            fd_err = None
            if fd and np.size(x):
                fd_err = _fd_check(f, args, kwargs, i, leaf_idx, g64, rng, fd_eps)
                fd_tol = _FD_RTOL.get(dtype.name, 1e-4)
                ok = ok and (fd_err is None or fd_err <= fd_tol)
            results.append(LeafResult(name, tuple(np.shape(x)), dtype.name, abs_err, rel,
                                      fd_err, ok))
        del pos
    report = CheckReport(results)
    if raise_on_mismatch and not report.ok:
        raise GradientMismatchError("\n" + str(report))
    return report


def _int_ok(args, argnums):
    has_int = any(
        not jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        for i in argnums
        for leaf in tree_util.tree_leaves(args[i])
    )
    return {"allow_int": True} if has_int else {}


def _fd_check(f, args, kwargs, argnum, leaf_idx, g, rng, eps):
    """Relative error of <g, v> against (f(x + eps v) - f(x - eps v)) / (2 eps)."""
    wide = jnp.float64 if _float64_ok() else jnp.float32
    leaves, tree = tree_util.tree_flatten(args[argnum])
    x = np.asarray(leaves[leaf_idx], np.float64)
    v = rng.standard_normal(x.shape)
    v /= np.linalg.norm(v) or 1.0
    eps = eps if eps is not None else (1e-6 if wide == jnp.float64 else 1e-3) * max(
        1.0, float(np.max(np.abs(x)))
    )

    def f_at(xv):
        new_leaves = list(leaves)
        new_leaves[leaf_idx] = jnp.asarray(xv, wide)
        new_args = list(args)
        new_args[argnum] = tree_util.tree_unflatten(tree, _widen(new_leaves, wide))
        return float(f(*_widen_args(new_args, argnum, wide), **kwargs))

    fd = (f_at(x + eps * v) - f_at(x - eps * v)) / (2 * eps)
    analytic = float(np.sum(g * v))
    # Below this scale a difference is rounding in f itself, not a wrong derivative.
    cancellation = abs(f_at(x)) * float(jnp.finfo(wide).eps) / eps
    return abs(fd - analytic) / max(abs(analytic), abs(fd), cancellation, 1e-300)


def _widen(leaves, wide):
    return [
        jnp.asarray(leaf, wide) if jnp.issubdtype(jnp.result_type(leaf), jnp.floating) else leaf
        for leaf in leaves
    ]


def _widen_args(args, skip, wide):
    return [
        a if k == skip else tree_util.tree_map(lambda leaf: _widen([leaf], wide)[0], a)
        for k, a in enumerate(args)
    ]
