"""A minimal reproduction of one equation's VJP disagreement, as Python source that runs alone."""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np

from .._api import vjp as fg_vjp
from .._jax_compat import bind_params

_MAX_LITERAL = 16  # arrays up to this size are written out exactly; larger ones are random


class Unwritable(ValueError):
    pass


def param_source(v) -> str:
    """Python source for an equation parameter, or raise Unwritable (jaxprs, callables)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return f"jnp.dtype('{np.dtype(v).name}')"
    if isinstance(v, enum.Enum):
        owner = type(v).__name__
        if getattr(jax.lax, owner, None) is type(v):
            return f"jax.lax.{owner}.{v.name}"
        raise Unwritable(f"enum {owner}")
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        owner = type(v).__name__
        if getattr(jax.lax, owner, None) is type(v):
            inner = ", ".join(f"{k}={param_source(getattr(v, k))}" for k in v._fields)
            return f"jax.lax.{owner}({inner})"
        raise Unwritable(f"named tuple {owner}")
    if isinstance(v, (tuple, list)):
        inner = ", ".join(param_source(x) for x in v)
        if isinstance(v, tuple) and len(v) == 1:
            inner += ","
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    raise Unwritable(type(v).__name__)


def _array_source(x, name: str, key: int) -> tuple[str, bool]:
    """Source that rebuilds ``x``; the flag says whether it is exact."""
    arr = np.asarray(x)
    dt = arr.dtype.name
    if arr.size <= _MAX_LITERAL or not np.issubdtype(arr.dtype, np.floating):
        if arr.size > 256:
            return f"{name} = jnp.zeros({arr.shape}, jnp.{dt})  # stand-in", False
        lit = np.array2string(
            arr, separator=", ", precision=17, threshold=10**6, max_line_width=10**6
        ).replace("\n", "")
        return f"{name} = jnp.asarray(np.array({lit}), jnp.{dt}).reshape({arr.shape})", True
    return (f"{name} = jax.random.normal(jax.random.key({key}), {arr.shape}, jnp.{dt})", False)


def repro_source(eqn, invals, act, g, where: str) -> tuple[str, bool]:
    """Source that shows funcgrad's and JAX's VJP of ``eqn`` side by side, and whether its
    inputs are the recorded ones (small arrays) or random stand-ins (large ones)."""
    prim = eqn.primitive.name
    params = bind_params(eqn)
    kw = ", ".join(f"{k}={param_source(v)}" for k, v in params.items())
    lines = [
        "import jax, jax.numpy as jnp, numpy as np",
        "from jax.extend.core import primitives as p",
        "import funcgrad",
    ]
    names, exact = [], True
    for k, x in enumerate(invals):
        src, ok = _array_source(x, f"x{k}", k)
        lines.append(src)
        names.append(f"x{k}")
        exact &= ok
    dyn = [n for n, a in zip(names, act, strict=False) if a]
    lines.append(f"def eqn({', '.join(dyn)}):  # {prim} at {where}")
    lines.append(f"    return p.{prim}_p.bind({', '.join(names)}{', ' if kw else ''}{kw})")
    cts = [c for c in g]
    if len(cts) != 1:
        raise Unwritable("several outputs")
    src, ok = _array_source(cts[0], "ct", 100)
    lines.append(src)
    exact &= ok
    lines.append(f"args = ({', '.join(dyn)},)")
    lines.append("print('funcgrad:', funcgrad.vjp(eqn, *args)[1](ct))")
    lines.append("print('jax:     ', jax.vjp(eqn, *args)[1](ct))")
    return "\n".join(lines), exact


def run_repro(source: str):
    """Execute a reproduction's setup and return (funcgrad cts, jax cts) without printing."""
    body = source.rsplit("\n", 2)[0]
    ns: dict = {}
    exec(compile(body, "<funcgrad repro>", "exec"), ns)  # our own generated code
    fg = fg_vjp(ns["eqn"], *ns["args"])[1](ns["ct"])
    ref = jax.vjp(ns["eqn"], *ns["args"])[1](ns["ct"])
    return fg, ref


def max_rel_diff(a, b) -> float:
    a = [np.asarray(x, np.float64) for x in jax.tree.leaves(a)]
    b = [np.asarray(x, np.float64) for x in jax.tree.leaves(b)]
    worst = 0.0
    for x, y in zip(a, b, strict=False):
        if x.dtype == jax.dtypes.float0 or not x.size:
            continue
        scale = max(float(np.max(np.abs(y))), float(jnp.finfo(jnp.float32).tiny))
        worst = max(worst, float(np.max(np.abs(x - y))) / scale)
    return worst
