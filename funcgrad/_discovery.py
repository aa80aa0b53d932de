"""Coverage by discovery: call every public function of the JAX numerical namespaces (and
optax's losses) on generated arguments, trace each with ``jax.make_jaxpr``, and collect every
primitive it produces, inside nested jaxprs too (jit, custom_jvp/vjp, scan, cond, while...).

Each primitive must have a rule, be listed as non-differentiable, or be refused with a reason
(``funcgrad._registry.REFUSED``). ``python -m funcgrad._discovery`` prints the summary;
``--write`` regenerates ``docs/coverage.md`` (with ``--grads``: also the gradient check of
every discovered function against ``jax.vjp``). Not imported by ``import funcgrad``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from . import _registry

# Namespaces whose public functions are called: (label, module path, name filter).
STATS_FUNS = ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf", "ppf", "pmf", "logpmf", "isf")


def namespaces() -> list[tuple[str, object]]:
    out = [
        (name, importlib.import_module(name))
        for name in (
            "jax.numpy",
            "jax.numpy.linalg",
            "jax.numpy.fft",
            "jax.nn",
            "jax.lax",
            "jax.scipy.special",
            "jax.scipy.linalg",
            "jax.scipy.signal",
            "jax.random",
        )
    ]
    stats = importlib.import_module("jax.scipy.stats")
    for sub in sorted(n for n in dir(stats) if not n.startswith("_")):
        mod = getattr(stats, sub)
        if inspect.ismodule(mod):
            out.append((f"jax.scipy.stats.{sub}", mod))
    try:
        out.append(("optax.losses", importlib.import_module("optax.losses")))
    except ImportError:  # optax is a dependency of funcgrad.nn; absent, its losses are not run
        pass
    return out


def public_functions(label: str, mod) -> list[tuple[str, object]]:
    funs = []
    for name in sorted(dir(mod)):
        if name.startswith("_") or f"{label}.{name}" in FILE_IO:
            continue
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or inspect.isclass(obj) or not callable(obj):
            continue
        if label.startswith("jax.scipy.stats.") and name not in STATS_FUNS:
            continue
        funs.append((f"{label}.{name}", obj))
    return funs


# Functions that write or read files: never called by discovery.
FILE_IO = {"jax.numpy.save", "jax.numpy.savez", "jax.numpy.load", "jax.numpy.fromfile"}

# ---------------------------------------------------------------- argument patterns

F, I, K = "f", "i", "key"  # float array, int array, PRNG key


def _pattern(*specs):
    return tuple(specs)


# (kind, shape) per positional argument; tried in order, the first that traces wins.
PATTERNS = (
    _pattern((F, (3,))),
    _pattern((F, (3, 3))),
    _pattern((F, (3,)), (F, (3,))),
    _pattern((F, (3, 3)), (F, (3, 3))),
    _pattern((F, (3, 3)), (F, (3,))),
    _pattern((F, (3,)), (F, (3,)), (F, (3,))),
    _pattern((F, ())),
    _pattern((F, ()), (F, ())),
    _pattern((F, (2, 3, 4))),
    _pattern((F, (2, 3, 3))),
    _pattern((F, (3, 3)), (I, (3,))),
    _pattern((F, (3,)), (I, ())),
    _pattern((F, (3,)), (I, (3,))),
    _pattern((I, (3,))),
    _pattern((F, (1, 3, 5)), (F, (2, 3, 2))),
    _pattern((F, (3, 3)), (F, (3, 3)), (F, (3, 3))),
    _pattern(K),
    _pattern(K, None),  # key plus a shape
    _pattern(K, F, None),
    _pattern(K, (F, ()), (F, ())),
    _pattern(K, (F, (3,))),
    _pattern(K, (I, ())),
    # literal arguments (ints, axes, shapes, subscripts, a reducer), for functions that need them
    _pattern((F, (3,)), ("lit", 2)),
    _pattern((F, (3, 3)), ("lit", (0,))),
    _pattern((F, (3, 3)), ("lit", 0), ("lit", 1)),
    _pattern((F, (3, 3)), ("lit", (9,))),
    _pattern(("lit", 2), (F, (3,))),
    _pattern((F, (3,)), ("lit", 2), ("lit", 2)),
    _pattern(("lit", "ij,jk->ik"), (F, (3, 3)), (F, (3, 3))),
    _pattern((F, (3, 3)), (F, (3, 3)), ("lit", (((1,), (0,)), ((), ())))),
    _pattern(
        (F, (4,)),
        ("lit", -np.inf),
        ("lit", jax.lax.max),
        ("lit", (2,)),
        ("lit", (1,)),
        ("lit", "VALID"),
    ),
)
KEYWORDS = ({}, {"axis": 0})


def make_arg(spec, n: int, rng, lo=0.2, hi=0.8):
    """An argument for ``spec``; ``n`` replaces every size 3 (0 and 1 for edge cases)."""
    if spec == K:
        return jax.random.key(0)
    if spec is None:
        return (n,)
    if spec == F:
        spec = (F, (n,))
    kind, shape = spec
    if kind == "lit":
        return shape
    shape = tuple(n if d == 3 else d for d in shape)
    if kind == I:
        return jnp.asarray(rng.integers(0, 2, size=shape), jnp.int32)
    return jnp.asarray(rng.uniform(lo, hi, size=shape), jnp.float64)


def make_args(pattern, n: int, seed=0, lo=0.2, hi=0.8):
    rng = np.random.default_rng(seed)
    return [make_arg(s, n, rng, lo, hi) for s in pattern]


# ---------------------------------------------------------------- primitives of a jaxpr


def sub_jaxprs(value):
    if isinstance(value, jcore.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jcore.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from sub_jaxprs(v)


def primitives(jaxpr, found: dict) -> dict:
    """Every primitive in ``jaxpr`` and its nested jaxprs: name -> Primitive."""
    for eqn in jaxpr.eqns:
        found.setdefault(eqn.primitive.name, eqn.primitive)
        for value in eqn.params.values():
            for sub in sub_jaxprs(value):
                primitives(sub, found)
    return found


def _is_static(spec) -> bool:
    """Literal arguments and shapes are passed as Python values, not traced."""
    return spec is None or (isinstance(spec, tuple) and spec[0] == "lit")


def _make_jaxpr(fun, pattern, kwargs):
    """Trace under JAX's default rank promotion ("allow"), as a user's call runs: the result
    must not depend on the caller's setting (the test suite raises on rank promotion)."""
    vals = make_args(pattern, 3)

    def call(*traced):
        it = iter(traced)
        full = [v if _is_static(s) else next(it) for v, s in zip(vals, pattern, strict=True)]
        return fun(*full, **kwargs)

    with jax.numpy_rank_promotion("allow"):
        return jax.make_jaxpr(call)(
            *[v for v, s in zip(vals, pattern, strict=True) if not _is_static(s)]
        )


@dataclasses.dataclass
class Found:
    name: str  # qualified public name
    fun: object
    pattern: tuple | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    prims: dict = dataclasses.field(default_factory=dict)
    skip: str = ""  # why no pattern traced


def trace(name: str, fun) -> Found:
    found = Found(name, fun)
    last = ""
    for kwargs in KEYWORDS:
        for pattern in PATTERNS:
            if (K in pattern) != name.startswith("jax.random."):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    closed = _make_jaxpr(fun, pattern, kwargs)
            except Exception as e:  # noqa: BLE001  (a pattern that does not fit: try the next)
                first = re.sub(r" at /\S+?\.py:\d+", "", (str(e) or " ").splitlines()[0])
                last = last or f"{type(e).__name__}: {first}"  # no path: the same on any clone
                continue
            found.pattern, found.kwargs = pattern, kwargs
            found.prims = primitives(closed.jaxpr, {})
            return found
    found.skip = last[:150] or "no argument pattern fits"
    return found


def discover() -> list[Found]:
    out = []
    for label, mod in namespaces():
        for name, fun in public_functions(label, mod):
            out.append(trace(name, fun))
    return out


def status(prim) -> tuple[str, str]:
    """(rule | no derivative | refused | UNCOVERED, where/why) for a primitive."""
    entry = _registry.lookup(prim)
    if entry is not None:
        return "rule", f"`{entry.rule.__module__.replace('.', '/')}.py`"
    if _registry.is_nondiff(prim):
        return "no derivative", "listed as non-differentiable"
    reason = _registry.REFUSED.get(prim.name)
    if reason is not None:
        return "refused", reason
    return "UNCOVERED", "no rule, not non-differentiable, not refused"


def trace_with(name: str, fun, pattern_index: int, kw_index: int) -> Found:
    """Trace with a known pattern (the cache ``docs/coverage.md`` records); search on failure."""
    pattern, kwargs = PATTERNS[pattern_index], KEYWORDS[kw_index]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            closed = _make_jaxpr(fun, pattern, kwargs)
    except Exception:  # noqa: BLE001  (the JAX release changed the function: search again)
        return trace(name, fun)
    return Found(name, fun, pattern, kwargs, primitives(closed.jaxpr, {}))


def pattern_key(found: Found) -> str:
    if found.pattern is None:
        return "-"
    return f"p{PATTERNS.index(found.pattern)}k{KEYWORDS.index(found.kwargs)}"


def describe(pattern) -> str:
    def one(spec):
        if spec == K:
            return "key"
        if spec is None:
            return "shape"
        if spec == F:
            return "f64[3]"
        kind, shape = spec
        if kind == "lit":
            return getattr(shape, "__name__", repr(shape))
        return f"{'f64' if kind == F else 'i32'}[{','.join(map(str, shape))}]"

    return ", ".join(one(s) for s in pattern)


# ---------------------------------------------------------------- gradient check


def _cotangent(rng, leaf):
    dt = jnp.result_type(leaf)
    if not jnp.issubdtype(dt, jnp.inexact):
        return np.zeros(np.shape(leaf), jax.dtypes.float0)
    ct = rng.normal(size=np.shape(leaf))
    if jnp.issubdtype(dt, jnp.complexfloating):
        ct = ct + 1j * rng.normal(size=np.shape(leaf))
    return jnp.asarray(ct, dt)


def _float_positions(pattern):
    return [k for k, s in enumerate(pattern) if s == F or (isinstance(s, tuple) and s[0] == F)]


def _finite(tree) -> bool:
    return all(
        bool(np.all(np.isfinite(np.asarray(x))))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    )


def grad_check(found: Found, rtol: float = 1e-6) -> tuple[str, str]:
    """(matched | mismatch | error | refused | excluded, reason): see ``_grad_check``; under
    JAX's default rank promotion, as discovery traced the function."""
    with jax.numpy_rank_promotion("allow"):
        return _grad_check(found, rtol)


def _grad_check(found: Found, rtol: float) -> tuple[str, str]:
    """(matched | mismatch | error | refused | excluded, reason) for one public function.

    Differentiates with respect to every float argument at sizes 3, 1 and 0 (where JAX can),
    funcgrad.vjp against jax.vjp with one random cotangent, normwise relative ``rtol``.
    """
    from ._errors import MissingRuleError, NonDifferentiableError  # loaded with the rules

    if found.name.startswith("jax.random."):
        return "excluded", "random sampling: non-differentiable by design"
    if found.pattern is None:
        return "excluded", "no generated argument pattern fits: " + found.skip
    floats = _float_positions(found.pattern)
    if not floats:
        return "excluded", "no float argument (integer-only)"
    sizes = 0
    for n in (3, 1, 0):
        args = make_args(found.pattern, n, seed=n)

        def f(*fl, args=args):
            full = list(args)
            for k, v in zip(floats, fl, strict=True):
                full[k] = v
            return found.fun(*full, **found.kwargs)

        primals = [args[k] for k in floats]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = jax.eval_shape(f, *primals)
                if not any(jnp.issubdtype(o.dtype, jnp.inexact) for o in jax.tree.leaves(out)):
                    return "excluded", "output is not a float (integer or boolean result)"
                ct = jax.tree.map(functools.partial(_cotangent, np.random.default_rng(n)), out)
                jax.eval_shape(lambda *p, f=f, ct=ct: jax.vjp(f, *p)[1](ct), *primals)
        except Exception as e:  # noqa: BLE001  (JAX itself cannot: not a case at this size)
            if n == 3:
                msg = (str(e) or " ").splitlines()[0][:120]
                return "excluded", f"jax.vjp cannot differentiate it: {type(e).__name__}: {msg}"
            continue
        both = jax.jit(functools.partial(_both, f))
        for lo, hi in ((0.2, 0.8), (1.2, 1.8)):
            primals = [
                a for k, a in enumerate(make_args(found.pattern, n, n, lo, hi)) if k in floats
            ]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want, got = both(primals, ct)
            except MissingRuleError as e:
                prim = str(e).split("'")[1] if "'" in str(e) else "?"
                if prim in _registry.REFUSED:
                    return "refused", f"`{prim}`: {_registry.REFUSED[prim]}"
                return "error", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            except NonDifferentiableError as e:  # funcgrad's deliberate, explained refusal
                return "refused", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            except Exception as e:  # noqa: BLE001  (a funcgrad failure JAX does not have: a bug)
                if not _reference_runs(f, primals, ct):  # JAX fails only when compiling
                    if n == 3:
                        return "excluded", "jax.vjp traces it but XLA rejects the program"
                    break
                return "error", f"{type(e).__name__}: {(str(e) or ' ').splitlines()[0][:160]}"
            if not _finite(want):
                continue  # outside the function's domain: try the other range
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                g64, w64 = np.asarray(g, np.complex128), np.asarray(w, np.complex128)
                err = float(np.max(np.abs(g64 - w64), initial=0.0))
                scale = max(1.0, float(np.max(np.abs(w64), initial=0.0)))
                if not err <= rtol * scale:
                    return "mismatch", f"size {n}: max error {err:.3g} (scale {scale:.3g})"
            sizes += 1
            break
    if sizes == 0:
        return "excluded", "not finite at the generated points (outside its domain)"
    return "matched", ""


def _reference_runs(f, primals, ct) -> bool:
    """Whether JAX alone runs what ``_both`` asks of it: the value and the cotangents (XLA
    cannot build an rfft of 0 samples, though its VJP alone compiles)."""

    def value_and_cotangents(p):
        out, pb = jax.vjp(f, *p)
        return out, pb(ct)

    try:
        jax.jit(value_and_cotangents)(primals)
    except Exception:  # noqa: BLE001
        return False
    return True


def _both(f, primals, ct):
    """JAX's and funcgrad's (value, cotangents), traced into one program."""
    import funcgrad

    out, pb = jax.vjp(f, *primals)
    fout, fpb = funcgrad.vjp(f, *primals)
    return (out, pb(ct)), (fout, fpb(ct))


# ---------------------------------------------------------------- docs/coverage.md

GRAD_MARK = "<!-- gradient check: written by `--write --grads`; the test checks its counts -->"


def render(found: list[Found]) -> str:
    """The discovery part of docs/coverage.md."""
    prims: dict[str, object] = {}
    users: dict[str, list[str]] = {}
    for f in found:
        for name, prim in f.prims.items():
            prims.setdefault(name, prim)
            users.setdefault(name, []).append(f.name)
    statuses = {name: status(prim) for name, prim in prims.items()}
    counts = {}
    for st, _ in statuses.values():
        counts[st] = counts.get(st, 0) + 1
    traced = [f for f in found if f.pattern is not None]
    lines = [
        "# Primitive coverage, by discovery",
        "",
        "Generated by `python -m funcgrad._discovery --write` (funcgrad/_discovery.py) on "
        f"JAX {jax.__version__}: every public function of {', '.join(NAMESPACE_LIST)} is "
        "called on generated float arguments, traced with `jax.make_jaxpr`, and every "
        "primitive it produces (nested jaxprs included) is looked up in funcgrad's table. "
        "`tests/test_coverage_doc.py` re-traces every function and fails when this page is "
        "out of date or when a primitive has no rule, no non-differentiable entry and no "
        "refusal (`funcgrad._registry.REFUSED`).",
        "",
        "## Counts",
        "",
        f"- public functions: {len(found)}; traced: {len(traced)}; "
        f"not callable with the generated arguments: {len(found) - len(traced)}",
        f"- primitives produced: {len(prims)}; "
        + "; ".join(f"{k}: {counts.get(k, 0)}" for k in STATUSES),
        "",
        "## Primitives",
        "",
        "| primitive | status | where / why | produced by (of N functions) |",
        "|---|---|---|---|",
    ]
    for name in sorted(prims):
        st, why = statuses[name]
        who = users[name]
        shown = ", ".join(f"`{w}`" for w in who[:3]) + (" ..." if len(who) > 3 else "")
        lines.append(f"| `{name}` | {st} | {why} | {shown} ({len(who)}) |")
    lines += [
        "",
        "## Functions",
        "",
        "Arguments: the generated pattern that traced (float64/int32 arrays of these shapes; "
        "`key` a PRNG key, `shape` a shape tuple). Primitives without a rule are marked.",
        "",
        "| function | arguments | key | primitives |",
        "|---|---|---|---|",
    ]
    for f in found:
        if f.pattern is None:
            continue
        kw = ", ".join(f"{k}={v}" for k, v in f.kwargs.items())
        args = describe(f.pattern) + (f"; {kw}" if kw else "")
        ps = []
        for name in sorted(f.prims):
            st = statuses[name][0]
            ps.append(f"`{name}`" + ("" if st == "rule" else f" ({st})"))
        lines.append(f"| `{f.name}` | {args} | {pattern_key(f)} | {', '.join(ps) or '(none)'} |")
    lines += [
        "",
        "## Not callable with generated arguments",
        "",
        "| function | first error |",
        "|---|---|",
    ]
    for f in found:
        if f.pattern is None:
            reason = re.sub(r" at /\S+?\.py:\d+", "", f.skip).replace("|", "/").strip()
            lines.append(f"| `{f.name}` | {reason} |")
    return "\n".join(lines) + "\n"


NAMESPACE_LIST = (
    "`jax.numpy` (and `.linalg`, `.fft`)",
    "`jax.nn`",
    "`jax.lax`",
    "`jax.scipy.special`/`.linalg`/`.signal`",
    "`jax.scipy.stats` (pdf/cdf families)",
    "`jax.random`",
    "`optax.losses`",
)
STATUSES = ("rule", "no derivative", "refused", "UNCOVERED")


def render_grads(results: list[tuple[str, str, str]]) -> str:
    """The gradient-check part: counts, then every function that did not match."""
    counts = {}
    for _, outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    order = ("matched", "mismatch", "error", "refused", "excluded")
    lines = [
        GRAD_MARK,
        "",
        "## Gradient check of every discovered function",
        "",
        "`funcgrad.vjp` against `jax.vjp` with a random cotangent, float64, with respect to "
        "every float argument, at sizes 3, 1 and 0 where JAX can (normwise relative 1e-6).",
        "",
        f"- tried: {len(results)}; " + "; ".join(f"{k}: {counts.get(k, 0)}" for k in order),
        "",
        "| function | outcome | reason |",
        "|---|---|---|",
    ]
    for name, outcome, reason in results:
        if outcome != "matched":
            lines.append(f"| `{name}` | {outcome} | {reason.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def cached_patterns(text: str) -> dict[str, tuple[int, int] | None]:
    """function -> (pattern index, keyword index) from a coverage page (None: skipped)."""
    out = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`")
        if section == "## Functions":
            p, k = cells[2][1:].split("k")
            out[name] = (int(p), int(k))
        elif section == "## Not callable with generated arguments":
            out[name] = None
    return out


def discover_cached(text: str) -> list[Found]:
    """Discovery, using the argument patterns a previous page recorded (much faster)."""
    cache = cached_patterns(text)
    found = []
    for label, mod in namespaces():
        for name, fun in public_functions(label, mod):
            if name not in cache:
                found.append(trace(name, fun))
            elif cache[name] is None:
                found.append(Found(name, fun, skip=_skip_reason(text, name)))
            else:
                found.append(trace_with(name, fun, *cache[name]))
    return found


def _skip_reason(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"| `{name}` |"):
            return line.strip("|").split("|")[1].strip()
    return ""


def main(argv=None) -> int:
    import argparse
    import pathlib
    import time

    ap = argparse.ArgumentParser(prog="python -m funcgrad._discovery")
    ap.add_argument("--write", action="store_true", help="write docs/coverage.md")
    ap.add_argument("--grads", action="store_true", help="also run the gradient check")
    ap.add_argument("--doc", default="docs/coverage.md")
    opts = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    import funcgrad  # noqa: F401  (fills the rule table)

    t0 = time.perf_counter()
    found = discover()
    text = render(found)
    print(f"discovered {len(found)} functions in {time.perf_counter() - t0:.0f} s")
    doc = pathlib.Path(opts.doc)
    grads = ""
    if doc.exists() and GRAD_MARK in doc.read_text():
        grads = GRAD_MARK + doc.read_text().split(GRAD_MARK, 1)[1]
    if opts.write:
        doc.write_text(text + ("\n" + grads if grads else ""))
    if opts.grads:
        results = []
        for k, f in enumerate(found):
            outcome, reason = grad_check(f)
            results.append((f.name, outcome, reason))
            if outcome in ("mismatch", "error"):
                print(f"{outcome}: {f.name}: {reason}", flush=True)
            if k % 50 == 49:
                print(
                    f"gradient check: {k + 1} of {len(found)} at {time.perf_counter() - t0:.0f} s"
                )
        if opts.write:
            doc.write_text(text + "\n" + render_grads(results))
        print(f"gradient check done at {time.perf_counter() - t0:.0f} s")
    uncovered = [line for line in text.splitlines() if "| UNCOVERED |" in line]
    print("\n".join(uncovered) or "every primitive is covered, non-differentiable or refused")
    return 1 if uncovered else 0


if __name__ == "__main__":
    raise SystemExit(main())
