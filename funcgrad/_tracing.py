"""Tracing one call of a user's function into a closed jaxpr, the engine's input.

``trace`` is the one place a call's closed jaxpr is produced: by ``jax.make_jaxpr`` (JAX's
abstract trace) or, when Python needs a value outside ``jit``, by recording the call on
concrete values (``funcgrad/_record.py``). ``grad``/``value_and_grad``/``vjp`` then run the
forward and backward walks on ``Traced.closed``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import tree_util

from . import _eager, _record
from . import _jax_compat as compat

# Python needed a value the abstract trace does not have.
NEEDS_VALUES = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


class Traced:
    """One call of ``fun`` as a closed jaxpr over its dynamic leaves ``dyn``.

    ``active[i]``: ``dyn[i]`` is differentiated. Outputs of the jaxpr: the ``n_out`` leaves
    of the function's output, then the traced leaves of ``aux`` (the others are kept as
    Python values in ``aux_static``). ``path``: "jaxpr", "jaxpr-static" or "recorded".
    """

    def __init__(self, closed, dyn, dyn_pos, active, store, path):
        self.closed, self.dyn, self.dyn_pos, self.active = closed, dyn, dyn_pos, active
        self.path = path
        self.out_tree, self.n_out = store["out_tree"], store["n_out"]
        self.aux_tree, self.aux_static = store.get("aux_tree"), store.get("aux_static")

    def out_avals(self):
        return [v.aval for v in self.closed.jaxpr.outvars[: self.n_out]]

    def unflatten(self, outs):
        out = tree_util.tree_unflatten(self.out_tree, outs[: self.n_out])
        if self.aux_tree is None:
            return out, None
        it = iter(outs[self.n_out :])
        aux = [next(it) if s is _TRACED else s for s in self.aux_static]
        return out, tree_util.tree_unflatten(self.aux_tree, aux)


_TRACED = object()  # placeholder for an aux leaf that is a jaxpr output


def _traceable(leaf) -> bool:
    """A leaf traced as a jaxpr input: arrays and Python numbers (bools stay Python)."""
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return True
    return isinstance(leaf, (int, float, complex)) and not isinstance(leaf, bool)


def _flat_fun(fun, leaves, treedef, dyn_pos, has_aux, what, store):
    """``fun`` as a function of the leaves at ``dyn_pos`` returning a flat list."""

    def flat_fun(*dyn):
        store["trace"] = compat.trace_of(dyn)
        full = list(leaves)
        for i, v in zip(dyn_pos, dyn, strict=True):
            full[i] = v
        args, kwargs = tree_util.tree_unflatten(treedef, full)
        out = fun(*args, **kwargs)
        aux_flat = []
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(
                    f"{what} with has_aux=True expected the function to return a pair "
                    f"(output, aux), got {type(out).__name__}"
                    f"{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}."
                )
            out, aux = out
            aux_flat, store["aux_tree"] = tree_util.tree_flatten(aux)
            traced = [isinstance(a, jax.core.Tracer) for a in aux_flat]
            store["aux_static"] = [_TRACED if t else a for a, t in zip(aux_flat, traced)]
            aux_flat = [a for a, t in zip(aux_flat, traced) if t]
        out_flat, store["out_tree"] = tree_util.tree_flatten(out)
        store["n_out"] = len(out_flat)
        return [*out_flat, *aux_flat]

    return flat_fun


def concrete(leaves) -> bool:
    """No leaf is abstract: the call may be recorded on values if Python needs them."""
    return not any(
        isinstance(x, jax.core.Tracer) and not isinstance(x, _record.RecordTracer) for x in leaves
    )


def trace(fun, args, kwargs, diff_mask, has_aux, what, start=0) -> Traced:
    """The one place where a call's closed jaxpr is produced (see ``docs/eager.md``).

    Tries, from ``_eager.PATHS[start]`` on: JAX's abstract trace over every array and number
    leaf; over the differentiated leaves only; then, where every leaf is concrete, a
    recording on values (``_record.record``). Errors other than "Python needed a value" are
    the function's own and propagate, as do those of the last path tried.
    """
    if not callable(fun):
        raise TypeError(f"{what} expected a callable, got {type(fun).__name__}: {fun!r}")
    leaves, treedef = tree_util.tree_flatten((args, kwargs))
    diff_pos = [i for i, d in enumerate(diff_mask) if d]
    all_pos = [i for i, x in enumerate(leaves) if diff_mask[i] or _traceable(x)]
    if concrete(leaves):
        order = list(range(min(start, len(_eager.PATHS) - 1), len(_eager.PATHS)))
        if order[0] == 0 and all_pos == diff_pos:
            order.remove(1)  # path 1 would repeat path 0's trace
    else:
        order = [1]  # abstract values (under jit, vmap): JAX's trace, JAX's errors
    for k, p in enumerate(order):
        dyn_pos = all_pos if p == 0 else diff_pos
        store = {}
        flat_fun = _flat_fun(fun, leaves, treedef, dyn_pos, has_aux, what, store)
        dyn = [leaves[i] for i in dyn_pos]
        try:
            if _eager.PATHS[p] == "recorded":
                closed, _ = _record.record(flat_fun, dyn)
            else:
                closed = jax.make_jaxpr(flat_fun)(*dyn)
        except NEEDS_VALUES:
            if k == len(order) - 1:
                raise
            continue
        finally:  # rules traced with this trace's values must not use them now (stale)
            compat.end_trace(store.pop("trace", None))
        active = [diff_mask[i] for i in dyn_pos]
        return Traced(closed, dyn, dyn_pos, active, store, _eager.PATHS[p])
    raise AssertionError("unreachable: the last path re-raises")
