"""blame: which VJP rule made the gradient wrong.

The program's jaxpr is replayed with its recorded forward values. Walking backwards, every
equation on the differentiated path receives the *reference* cotangent (so one wrong rule
cannot hide or fake another) and is differentiated twice: by funcgrad's rule and by
``jax.vjp`` of that single equation. The first equation, in backward order, whose input
cotangents differ is the culprit; a finite difference of that equation alone says which of
the two is right. Nested jaxprs (jit, scan, cond, custom_jvp, remat) are opened, so the
culprit is an equation of the user's code, with its source line. A primitive JAX cannot
differentiate (a user's own) is checked against finite differences instead.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from .. import _numerics as num
from .._errors import aval_str, describe_eqn, source_line
from ._inspect import DiagnosticWatch, as_np, describe_scope, funcgrad_rule, jax_vjp_of_eqn
from ._repro import Unwritable, max_rel_diff, repro_source, run_repro


@dataclasses.dataclass
class Divergence:
    """One equation whose VJP from funcgrad's rule differs from the reference."""

    kind: str  # "rule", "nested-rule" (the jit/scan/... rule itself), "error", "fd-only"
    primitive: str
    where: str  # the user's file:line:col (function)
    context: str  # enclosing nested equations, e.g. "jit 'layer' > scan > step 3"
    equation: str
    in_types: list[str]
    params: str
    input_index: int | None
    max_abs_err: float
    rel_err: float
    verdict: str  # what the finite difference of the equation says
    repro: str = ""
    repro_note: str = ""
    scope_key: tuple = ()

    def headline(self) -> str:
        if self.kind == "error":
            return f"funcgrad's rule for '{self.primitive}' fails on this equation"
        if self.kind == "nested-rule":
            return (
                f"funcgrad's '{self.primitive}' rule (a nested jaxpr) disagrees with "
                f"jax.vjp although every equation inside agrees"
            )
        ref = "finite differences" if self.kind == "fd-only" else "jax.vjp of the same equation"
        return f"funcgrad's VJP rule for '{self.primitive}' disagrees with {ref}"


@dataclasses.dataclass
class BlameReport:
    """What ``blame`` found: the diverging equations in backward order (first = culprit)."""

    divergences: list[Divergence]
    n_checked: int
    worst_agreeing_rel: float
    fd_only: list[str]

    @property
    def ok(self) -> bool:
        return not self.divergences

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None

    def __str__(self) -> str:
        if self.ok:
            extra = (
                f"; checked by finite differences: {', '.join(self.fd_only)}"
                if self.fd_only
                else ""
            )
            return (
                f"blame: no equation diverges. funcgrad's rules agree with jax.vjp on all "
                f"{self.n_checked} equations on the differentiated path (worst relative "
                f"difference {self.worst_agreeing_rel:.1e}{extra})."
            )
        d = self.first
        lines = [f"blame: {d.headline()}.", f"  where:     {d.where}"]
        if d.context:
            lines.append(f"  inside:    {d.context}")
        lines += [f"  equation:  {d.equation}", f"  inputs:    {', '.join(d.in_types)}"]
        if d.params:
            lines.append(f"  params:    {d.params}")
        if d.kind == "error":
            lines.append(f"  error:     {d.verdict}")
        else:
            lines.append(
                f"  error:     cotangent of input {d.input_index}: max |funcgrad - "
                f"reference| = {d.max_abs_err:.2e}, relative {d.rel_err:.2e}"
            )
            lines.append(f"  verdict:   {d.verdict}")
        if d.repro:
            lines.append(f"  reproduce ({d.repro_note}):")
            lines += ["      " + ln for ln in d.repro.splitlines()]
        for other in self.divergences[1:6]:
            lines.append(
                f"  also diverges: '{other.primitive}' at {other.where}"
                + (f" [{other.context}]" if other.context else "")
            )
        lines.append(
            f"checked {self.n_checked} equations on the differentiated path; "
            f"{len(self.divergences)} diverge."
        )
        return "\n".join(lines)


def blame(
    f, *args, argnums=None, max_scan_steps: int = 64, seed: int = 0, repro: bool = True
) -> BlameReport:
    """Find the first equation, in backward order, whose VJP rule disagrees with JAX's.

    Args:
        f: a function of ``args`` returning an array (scalar: cotangent 1; otherwise a
            random cotangent, which also exposes transposition bugs).
        args: its arguments (pytrees of arrays).
        argnums: which arguments are differentiated (default: all floating leaves).
        max_scan_steps: scans with at most this many steps are unrolled and checked step by
            step; longer ones are checked as one equation.
        seed: seeds the output cotangent and the finite-difference directions.
        repro: build (and run) a minimal reproduction of the first divergence.

    Returns:
        A BlameReport; ``str()`` is the readable form, ``.first`` the culprit (or None).

    Example:
        >>> import jax.numpy as jnp, funcgrad.diagnostics as fd
        >>> fd.blame(lambda x: jnp.sum(jnp.tanh(x) ** 2), jnp.ones(3)).ok
        True
    """
    nargs = len(args)
    nums = (
        range(nargs)
        if argnums is None
        else ((argnums,) if isinstance(argnums, int) else tuple(argnums))
    )
    flat, in_tree = tree_util.tree_flatten(args)
    owner = [k for k, a in enumerate(args) for _ in tree_util.tree_leaves(a)]
    closed = jax.make_jaxpr(lambda *leaves: f(*tree_util.tree_unflatten(in_tree, leaves)))(*flat)
    jaxpr = closed.jaxpr
    active = [
        owner[j] in nums and jnp.issubdtype(jnp.result_type(x), jnp.floating)
        for j, x in enumerate(flat)
    ]
    rng = np.random.default_rng(seed)
    walker = _BlameWalker(rng, max_scan_steps)
    outs, tape = walker.forward(jaxpr, closed.consts, flat, active)
    cts_out = [_output_cotangent(o, rng) for o in outs]
    walker.backward(jaxpr, tape, cts_out)
    report = BlameReport(walker.found, walker.n_checked, walker.worst_ok, walker.fd_only)
    if repro and report.first is not None and walker.first_inputs is not None:
        _attach_repro(report.first, *walker.first_inputs)
    return report


def _output_cotangent(out, rng):
    dtype = jnp.result_type(out)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return None
    if np.shape(out) == ():
        return jnp.ones((), dtype)
    return jnp.asarray(rng.standard_normal(np.shape(out)), dtype)


class _BlameWalker(DiagnosticWatch):
    exact = False  # blame passes the reference cotangents on, not funcgrad's

    def __init__(self, rng, max_scan_steps):
        super().__init__(max_scan_steps)
        self.rng = rng
        self.found: list[Divergence] = []
        self.n_checked = 0
        self.worst_ok = 0.0
        self.fd_only: list[str] = []
        self.first_inputs = None
        self._seen: set = set()

    def leaf_cotangents(self, scope, i, eqn, rec, g, call):
        self.n_checked += 1
        try:
            ref = jax_vjp_of_eqn(eqn, rec, g)
        except Exception as err:  # JAX cannot differentiate it: a user's own primitive
            ref, ref_error = None, err
        try:
            fg = call(g)
        except Exception as err:
            self._record(
                scope, eqn, rec, g, "error", None, 0.0, 0.0, f"{type(err).__name__}: {err}"
            )
            return ref if ref is not None else [None] * len(rec.invals)
        if ref is None:
            self._check_by_fd(scope, eqn, rec, g, fg, ref_error)
            return fg
        self._compare(scope, eqn, rec, g, fg, ref, "rule")
        return ref

    def after_nested(self, scope, i, eqn, rec, g, cts):
        inner = scope + ((i,),)
        if any(_within(d.scope_key, inner) for d in self.found):
            return cts  # the culprit is inside; the nested rule is not to blame
        try:
            fg = funcgrad_rule(eqn, rec, g)
        except Exception as err:
            self._record(
                scope, eqn, rec, g, "error", None, 0.0, 0.0, f"{type(err).__name__}: {err}"
            )
            return cts
        self._compare(scope, eqn, rec, g, fg, cts, "nested-rule")
        return cts

    # ------------------------------------------------------------------ comparison
    def _compare(self, scope, eqn, rec, g, fg, ref, kind):
        worst = (0.0, 0.0, None)
        for k, a in enumerate(rec.act):
            if not a:
                continue
            x = rec.invals[k]
            got, want = fg[k] if k < len(fg) else None, ref[k]
            if got is not None and np.shape(got) != np.shape(x):
                worst = max(worst, (np.inf, np.inf, k))
                continue
            rel, abs_err, ok = _agreement(as_np(got, x), as_np(want, x), g, jnp.result_type(x))
            if not ok:
                worst = max(worst, (rel, abs_err, k), key=lambda t: t[0])
            else:
                self.worst_ok = max(self.worst_ok, rel)
        if worst[2] is None:
            return
        rtol = num.tolerance(jnp.result_type(rec.invals[worst[2]]), "eqn")
        verdict = (
            _fd_verdict(eqn, rec, g, fg, ref, self.rng, rtol)
            if kind == "rule"
            else (
                "the equations inside agree with jax.vjp one by one; the rule that stitches "
                "them together is wrong."
            )
        )
        self._record(scope, eqn, rec, g, kind, worst[2], worst[1], worst[0], verdict)

    def _check_by_fd(self, scope, eqn, rec, g, fg, ref_error):
        name = eqn.primitive.name
        if name not in self.fd_only:
            self.fd_only.append(name)
        fd, err, vs = _eqn_fd(eqn, rec, g, self.rng)
        d_fg = _directional(fg, vs)
        scale = max(_norm(fg), abs(fd), 1e-300)
        rel = abs(d_fg - fd) / scale
        tol = num.tolerance(jnp.result_type(rec.invals[0]), "eqn") * 10 + 10 * err / scale
        if rel > tol:
            why = str(ref_error).splitlines()[0][:120]
            self._record(
                scope,
                eqn,
                rec,
                g,
                "fd-only",
                None,
                abs(d_fg - fd),
                rel,
                f"JAX cannot differentiate '{name}' ({why}); its directional "
                f"derivative from funcgrad's rule is {d_fg:.6g}, finite differences "
                f"give {fd:.6g}.",
            )
        else:
            self.worst_ok = max(self.worst_ok, rel)

    def _record(self, scope, eqn, rec, g, kind, k, abs_err, rel, verdict):
        key = (id(eqn), tuple(s[0] for s in scope if not str(s[1]).startswith("step")))
        if key in self._seen:  # the same equation again (another scan step)
            return
        self._seen.add(key)
        d = Divergence(
            kind,
            eqn.primitive.name,
            source_line(eqn),
            describe_scope(scope),
            describe_eqn(eqn, 200),
            [aval_str(x) for x in rec.invals],
            _params_summary(eqn),
            k,
            float(abs_err),
            float(rel),
            verdict,
        )
        d.scope_key = tuple(s[0] for s in scope)
        if not self.found and kind == "rule":
            self.first_inputs = (eqn, rec, g)
        self.found.append(d)


def _within(key, prefix) -> bool:
    want = tuple(s[0] for s in prefix)
    return key[: len(want)] == want


def _agreement(got, want, g, dtype) -> tuple[float, float, bool]:
    if got.shape != want.shape:
        return np.inf, np.inf, False
    if np.any(np.isnan(got) ^ np.isnan(want)):
        return np.inf, np.inf, False
    diff = np.where((got == want) | (np.isnan(got) & np.isnan(want)), 0.0, np.abs(got - want))
    abs_err = float(np.max(np.nan_to_num(diff, nan=np.inf))) if diff.size else 0.0
    scale = float(np.max(np.abs(np.nan_to_num(want)))) if want.size else 0.0
    gmax = max(
        (
            float(np.max(np.abs(np.nan_to_num(np.asarray(c, np.float64)))))
            for c in g
            if c is not None and np.size(c)
        ),
        default=0.0,
    )
    eps = num.eps_of(dtype) if jnp.issubdtype(dtype, jnp.inexact) else 1e-7
    tol = num.tolerance(dtype, "eqn") * scale + 64 * eps * gmax
    rel = abs_err / max(scale, 1e-300) if abs_err else 0.0
    return rel, abs_err, abs_err <= tol


def _params_summary(eqn) -> str:
    parts = []
    for k, v in eqn.params.items():
        text = (
            type(v).__name__ if callable(v) or "jaxpr" in k.lower() or "branches" == k else repr(v)
        )
        parts.append(f"{k}={text if len(text) < 80 else text[:77] + '...'}")
    return ", ".join(parts)


# ---------------------------------------------------------------------- finite differences


def _eqn_fd(eqn, rec, g, rng):
    fd, vs = num.equation_fd(eqn, rec.invals, rec.act, g, rng)
    return fd.value, fd.err, vs


def _directional(cts, vs) -> float:
    return sum(float(np.sum(as_np(cts[k], vs[k]) * vs[k])) for k in vs)


def _norm(cts) -> float:
    return float(
        np.sqrt(sum(float(np.sum(np.asarray(c, np.float64) ** 2)) for c in cts if c is not None))
    )


def _fd_verdict(eqn, rec, g, fg, ref, rng, rtol) -> str:
    try:
        fd, err, vs = _eqn_fd(eqn, rec, g, rng)
    except Exception as e:
        return f"finite differences could not be computed ({type(e).__name__}: {e})."
    d_fg, d_ref = _directional(fg, vs), _directional(ref, vs)
    scale = max(abs(d_fg), abs(d_ref), abs(fd), 1e-300)
    e_fg, e_ref = abs(d_fg - fd) / scale, abs(d_ref - fd) / scale
    slack = 10 * err / scale + rtol
    if e_ref <= slack < e_fg:
        return (
            f"finite differences side with jax.vjp (directional derivative: FD "
            f"{fd:.6g}, jax {d_ref:.6g}, funcgrad {d_fg:.6g}): funcgrad's rule is wrong."
        )
    if e_fg <= slack < e_ref:
        return (
            f"finite differences side with funcgrad (FD {fd:.6g}, funcgrad {d_fg:.6g}, "
            f"jax {d_ref:.6g}): JAX's VJP is the odd one out here."
        )
    return (
        f"finite differences are inconclusive along a random direction (FD {fd:.6g} "
        f"+- {err:.1e}, jax {d_ref:.6g}, funcgrad {d_fg:.6g})."
    )


def _attach_repro(d: Divergence, eqn, rec, g) -> None:
    try:
        src, exact = repro_source(eqn, rec.invals, rec.act, g, d.where)
    except Unwritable as why:
        d.repro_note = f"not available: a parameter cannot be written as code ({why})"
        return
    d.repro = src
    inputs = "the recorded inputs" if exact else "random inputs of the recorded shapes"
    try:
        fg, ref = run_repro(src)
        gap = max_rel_diff(fg, ref)
        shows = (
            f"shows the disagreement (relative {gap:.1e})"
            if gap > 1e-6
            else "does NOT show it with these inputs: it depends on the recorded values"
        )
    except Exception as err:
        shows = f"could not run: {type(err).__name__}: {str(err).splitlines()[0][:100]}"
    d.repro_note = f"{inputs}; {shows}"
