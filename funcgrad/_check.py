"""check_grads: funcgrad, jax.grad and finite differences, with a verdict on the odd one out.

Per floating-point parameter leaf the check computes three derivatives:

* funcgrad's gradient ``g`` and ``jax.grad``'s ``w``, compared elementwise;
* a central finite difference of ``f`` along a random unit direction ``v``, recomputed in
  float64 (under ``jax.enable_x64`` when x64 is off), compared with ``<g, v>`` and ``<w, v>``.

When they disagree, the verdict says which one is the odd one out. Kinks (ReLU at 0, ties in
a max, ``abs`` at 0) are recognised from one-sided differences that keep their jump as the
step shrinks, and are reported as kinks, not failures.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from . import _numerics as num
from ._api import grad as fg_grad
from ._custom_check import check_custom_rules
from ._errors import GradientMismatchError
from ._numerics import FDResult, float64_mode, widen

OK, KINK, FD_UNRELIABLE, JAX_ODD, KINK_DIFFERS = (
    "ok",
    "kink",
    "fd-unreliable",
    "jax-odd",
    "kink-differs",
)
RULE_WRONG, ALL_DIFFER, MISMATCH = "funcgrad-wrong", "all-differ", "mismatch"
# funcgrad and JAX agree, reliable finite differences do not: the path both share (a
# custom_vjp / custom_jvp rule of the user's) is wrong.
SHARED_WRONG = "shared-wrong"
_PASSING = {OK, KINK, FD_UNRELIABLE, JAX_ODD, KINK_DIFFERS}
_RESULT = {
    OK: "ok",
    KINK: "ok (kink)",
    FD_UNRELIABLE: "ok (FD unreliable)",
    JAX_ODD: "ok (JAX odd)",
    KINK_DIFFERS: "ok (kink)",
}


@dataclasses.dataclass
class LeafResult:
    path: str
    shape: tuple
    dtype: str
    max_abs_err: float  # |funcgrad - jax.grad|, elementwise max
    rel_err: float  # max_abs_err / max |jax.grad|
    fd_rel_err: float | None  # |<g, v> - FD| / |g|_2 (None: skipped)
    ok: bool
    verdict: str = OK
    jax_fd_rel_err: float | None = None  # |<w, v> - FD| / |w|_2
    note: str = ""


@dataclasses.dataclass
class CheckReport:
    leaves: list[LeafResult]
    blame: str = ""  # blame's headline, when funcgrad's rule was found wrong

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.leaves)

    def __str__(self) -> str:
        head = f"{'parameter':<28} {'shape':<14} {'dtype':<8} {'max abs err':>11} "
        head += f"{'rel err':>9} {'FD rel err':>10}  result"
        lines = [head, "-" * len(head)]
        for r in self.leaves:
            fd = "skipped" if r.fd_rel_err is None else f"{r.fd_rel_err:.2e}"
            res = _RESULT.get(r.verdict, "MISMATCH") if r.ok else f"MISMATCH ({r.verdict})"
            lines.append(
                f"{r.path:<28} {str(r.shape):<14} {r.dtype:<8} {r.max_abs_err:>11.2e} "
                f"{r.rel_err:>9.2e} {fd:>10}  {res}"
            )
        notes = [f"  {r.path}: {r.note}" for r in self.leaves if r.note]
        if notes:
            lines += ["", *notes]
        if self.blame:
            lines += ["", self.blame]
        verdict = "all leaves agree" if self.ok else "funcgrad disagrees with the reference"
        lines.append(f"check_grads: {verdict} ({len(self.leaves)} leaves)")
        return "\n".join(lines)


def check_grads(
    f,
    *args,
    argnums=None,
    rtol=None,
    fd=True,
    fd_eps=None,
    seed=0,
    raise_on_mismatch=True,
    **kwargs,
) -> CheckReport:
    """Compare funcgrad's gradient of scalar ``f`` with ``jax.grad`` and finite differences.

    Every floating-point leaf of the arguments in ``argnums`` (default: all) gets a row: max
    abs and relative error of funcgrad against jax.grad (relative to the leaf's largest
    ``|jax.grad|``; tolerance from the dtype, or ``rtol``), and the error of the directional
    derivative ``<g, v>`` against a central difference along a random unit ``v``, recomputed in
    float64. On disagreement the row's verdict names the odd one out:

    * ``funcgrad-wrong``: finite differences side with JAX (``blame`` then names the rule);
    * ``fd-unreliable`` / ``kink``: funcgrad and JAX agree, the finite difference does not
      (cancellation, or a non-differentiable point such as ReLU at 0);
    * ``jax-odd``: funcgrad and the finite difference agree, JAX does not;
    * ``all-differ``: no two agree.

    Args:
        f: scalar function of ``args``.
        argnums: int or tuple of ints; default every argument.
        rtol: overrides the funcgrad-vs-JAX tolerance of every dtype.
        fd: compute finite differences (and the three-way verdict).
        fd_eps: finite-difference step (default: chosen from the dtype of the float64
            recomputation and the size of the leaf's entries).
        seed: seeds the random directions.
        raise_on_mismatch: raise GradientMismatchError with the table when a leaf fails.

    Returns:
        A CheckReport whose ``str()`` is the table; ``.ok`` is true when every leaf passes.

    Example:
        >>> import jax.numpy as jnp, funcgrad
        >>> funcgrad.check_grads(lambda x: jnp.sum(jnp.sin(x)), jnp.ones(3)).ok
        True
    """
    if argnums is None:
        argnums = tuple(range(len(args)))
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    got = fg_grad(f, argnums=argnums, **_int_ok(args, argnums))(*args, **kwargs)
    want = jax.grad(f, argnums=argnums, **_int_ok(args, argnums))(*args, **kwargs)
    rng = np.random.default_rng(seed)
    f64 = _Float64Function(f, args, kwargs) if fd else None
    results = []
    for i, g_arg, w_arg in zip(argnums, got, want, strict=False):
        paths = tree_util.tree_flatten_with_path(args[i])[0]
        g_leaves, w_leaves = tree_util.tree_leaves(g_arg), tree_util.tree_leaves(w_arg)
        for leaf_idx, ((path, x), g, w) in enumerate(zip(paths, g_leaves, w_leaves, strict=False)):
            dtype = jnp.result_type(x)
            if not jnp.issubdtype(dtype, jnp.floating):
                continue
            name = f"args[{i}]{tree_util.keystr(path)}"
            results.append(_check_leaf(name, x, g, w, dtype, rtol, f64, i, leaf_idx, rng, fd_eps))
    report = CheckReport(results)
    if any(r.verdict == RULE_WRONG for r in results):
        report.blame = _blame_headline(f, args, argnums, kwargs)
    if any(r.verdict == SHARED_WRONG for r in results):
        report.blame = _custom_rules_text(f, args, argnums, kwargs, seed)
    if raise_on_mismatch and not report.ok:
        raise GradientMismatchError("\n" + str(report))
    return report


def _check_leaf(name, x, g, w, dtype, rtol, f64, argnum, leaf_idx, rng, fd_eps) -> LeafResult:
    tol = rtol if rtol is not None else num.tolerance(dtype, "grad")
    g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
    abs_err = num.max_abs_diff(g64, w64)
    scale = num.max_abs(w64)
    rel = abs_err / max(scale, np.finfo(np.float64).tiny)
    agree = abs_err == 0.0 or abs_err <= tol * scale
    base = LeafResult(
        name, tuple(np.shape(x)), dtype.name, abs_err, rel, None, agree, OK if agree else MISMATCH
    )
    if f64 is None or not np.size(x):
        if not agree:
            base.note = (
                f"funcgrad differs from jax.grad by {rel:.1e} (relative; tolerance {tol:.0e})"
            )
        return base
    v = rng.standard_normal(np.shape(x))
    v /= np.linalg.norm(v) or 1.0
    fdr = f64.directional(argnum, leaf_idx, v, fd_eps)
    fd_tol = num.tolerance(dtype, "fd")
    g_err, g_ok = _fd_agreement(g64, v, fdr, fd_tol)
    w_err, w_ok = _fd_agreement(w64, v, fdr, fd_tol)
    base.fd_rel_err, base.jax_fd_rel_err = g_err, w_err
    base.verdict, base.note = _verdict(agree, g_ok, w_ok, fdr, g64, v, rel, g_err, w_err)
    base.ok = base.verdict in _PASSING
    return base


def _verdict(agree, g_ok, w_ok, fdr: FDResult, g64, v, rel, g_err, w_err) -> tuple[str, str]:
    """The three-way verdict and its sentence."""
    lo, hi = sorted(fdr.one_sided)
    if agree and g_ok and fdr.kink:
        return KINK, (
            f"non-differentiable point (one-sided slopes {lo:.4g} and {hi:.4g}); "
            f"funcgrad, JAX and the central difference agree."
        )
    if agree and g_ok:
        return OK, ""
    if agree and fdr.kink:
        return KINK, (
            f"non-differentiable point (one-sided slopes {lo:.4g} and {hi:.4g}); "
            f"funcgrad and JAX agree on the one-sided derivative they pick."
        )
    d = float(np.sum(g64 * v))
    if agree and abs(d - fdr.value) > 100 * fdr.err:  # the FD's own error cannot explain it
        return SHARED_WRONG, (
            f"funcgrad and jax.grad agree, but both disagree with finite differences that "
            f"are reliable here (directional derivative {d:.6g}, FD {fdr.value:.6g} +- "
            f"{fdr.err:.1e}): a derivative they share is wrong, e.g. a custom_vjp or "
            f"custom_jvp rule (see below)."
        )
    if agree:
        return FD_UNRELIABLE, (
            f"funcgrad and JAX agree; finite differences are unreliable here (FD rel err "
            f"{g_err:.1e}, estimated FD error {fdr.err:.1e}: cancellation or a kink within "
            f"the step)."
        )
    if fdr.kink:
        d = float(np.sum(g64 * v))
        slack = 1e-6 * (abs(lo) + abs(hi) + 1e-30)
        if lo - slack <= d <= hi + slack:
            return KINK_DIFFERS, (
                f"non-differentiable point: funcgrad and JAX pick different one-sided "
                f"derivatives (slopes {lo:.4g} .. {hi:.4g}); both are valid."
            )
        return RULE_WRONG, (
            f"non-differentiable point, but funcgrad's directional derivative "
            f"{d:.4g} lies outside the one-sided slopes {lo:.4g} .. {hi:.4g}."
        )
    if w_ok:
        return RULE_WRONG, (
            f"funcgrad's rule is wrong: funcgrad differs from jax.grad "
            f"(rel {rel:.1e}) and finite differences agree with jax.grad "
            f"(FD rel err {w_err:.1e}, funcgrad's {g_err:.1e})."
        )
    if g_ok:
        return JAX_ODD, (
            f"JAX disagrees with both: funcgrad agrees with finite differences "
            f"(FD rel err {g_err:.1e}), jax.grad does not ({w_err:.1e})."
        )
    return ALL_DIFFER, (
        f"funcgrad, jax.grad and finite differences all disagree (funcgrad vs "
        f"JAX rel {rel:.1e}, FD rel err {g_err:.1e} / {w_err:.1e})."
    )


def _fd_agreement(grad64, v, fdr: FDResult, fd_tol) -> tuple[float, bool]:
    """Error of <grad, v> against the FD, relative to |grad|_2, and whether it is within tol."""
    d = float(np.sum(grad64 * v))
    scale = max(float(np.linalg.norm(grad64)), abs(fdr.value), 1e-300)
    err = abs(d - fdr.value) / scale
    return err, bool(err <= fd_tol + 10 * fdr.err / scale)


# ---------------------------------------------------------------------- finite differences


class _Float64Function:
    """``f`` recomputed in float64, jitted once, evaluated at shifted copies of one leaf."""

    def __init__(self, f, args, kwargs):
        self.args = args

        def call(*a):
            return f(*a, **kwargs)

        self.call = call
        with float64_mode():
            self.base = [tree_util.tree_map(widen, a) for a in args]
            try:
                self.jitted = jax.jit(call)
                f0 = self.jitted(*self.base)
            except Exception:  # not jittable (Python control flow on values): run eagerly
                self.jitted = call
                f0 = call(*self.base)
        self.f0 = float(f0)
        # The function may cast to float32 inside even under x64; its output dtype says so.
        self.eps = float(jnp.finfo(jnp.result_type(f0)).eps)

    def at(self, argnum, leaf_idx, x):
        with float64_mode():
            leaves, tree = tree_util.tree_flatten(self.base[argnum])
            leaves = list(leaves)
            leaves[leaf_idx] = jnp.asarray(x, jnp.float64)
            args = list(self.base)
            args[argnum] = tree_util.tree_unflatten(tree, leaves)
            return float(self.jitted(*args))

    def directional(self, argnum, leaf_idx, v, eps=None) -> FDResult:
        """Central difference of f along ``v``, its error estimate and a kink test."""
        x = np.asarray(tree_util.tree_leaves(self.args[argnum])[leaf_idx], np.float64)
        h = eps if eps is not None else self.eps ** (1 / 3) * max(1.0, num.max_abs(x))

        def along(t):
            return self.f0 if t == 0.0 else self.at(argnum, leaf_idx, x + t * v)

        return num.directional(along, h, self.eps)


# Who names the wrong rule when finite differences side with JAX: funcgrad.diagnostics
# registers blame here when it is imported (it sits above this module; no import upward).
_RULE_EXPLAINERS: list = []


def explain_wrong_rule_with(explainer) -> None:
    """Register ``explainer(f, args, argnums) -> str`` to name the rule check_grads found
    wrong (funcgrad.diagnostics registers blame's headline)."""
    _RULE_EXPLAINERS[:] = [explainer]


def _blame_headline(f, args, argnums, kwargs) -> str:
    """Which rule: the registered explainer's text, or why it could not run."""
    if not _RULE_EXPLAINERS:
        return "(run funcgrad.diagnostics.blame(f, *args) to find the rule)"
    try:
        return _RULE_EXPLAINERS[0](lambda *a: f(*a, **kwargs), args, argnums)
    except Exception as err:  # the verdict stands without it
        return f"(blame could not run: {type(err).__name__}: {err})"


def _custom_rules_text(f, args, argnums, kwargs, seed) -> str:
    """Each custom rule on the path, checked alone against finite differences."""
    try:
        results = check_custom_rules(f, args, argnums, kwargs, seed)
    except Exception as err:  # the verdict stands without it
        return f"(the custom rules could not be checked: {type(err).__name__}: {err})"
    if not results:
        return "No custom_vjp / custom_jvp function lies on the differentiated path."
    wrong = [r for r in results if r.wrong]
    head = (
        f"custom rule{'s' if len(wrong) > 1 else ''} found wrong by finite differences:"
        if wrong
        else "every custom rule agrees with finite differences on its own:"
    )
    return "\n".join([head, *[f"  {r}" for r in (wrong or results)]])


def _int_ok(args, argnums):
    has_int = any(
        not jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        for i in argnums
        for leaf in tree_util.tree_leaves(args[i])
    )
    return {"allow_int": True} if has_int else {}
