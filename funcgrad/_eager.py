"""Compiled eager mode: ``funcgrad.grad(f)(x)`` outside ``jit`` runs one cached XLA program.

Without this, an eager call traces ``f`` and then binds every forward and backward equation
one at a time, paying JAX's per-operation dispatch (hundreds of microseconds each on CPU).
Here the first call for an input signature traces ``f`` once and compiles forward and
backward into one program with ``jax.jit``; later calls with the same signature only
dispatch that program.

Semantics (the same as ``jax.jit(funcgrad.grad(f))``):

- The signature is ``f`` itself (held weakly), the grad options, the pytree structure of the
  arguments, the values of non-array leaves (Python ints, bools, strings: static), and
  ``jax.jit``'s own key for the array leaves (shape, dtype, weak type, sharding).
- Python side effects in ``f`` (prints, appends) run once per signature, while tracing.
- Arrays ``f`` closes over are baked into the program as constants. As a guard against the
  common trap, the identities of arrays held in ``f``'s closure cells, in the globals its code
  names, and in a ``functools.partial``'s arguments are part of the signature: rebinding such
  a variable to a new array compiles a new program instead of reusing a stale one. Arrays
  reached more indirectly (a helper's global, a dict mutated in place) are baked, as under jit.
- Falls back to the uncached walk when an argument is already a tracer (inside ``jit``,
  ``vmap`` or another grad), when a leaf is neither an array nor a hashable static value,
  under ``jax.disable_jit()``, when ``f`` cannot be traced abstractly (Python control flow on
  a non-differentiated array: the uncached walk holds concrete values for those), and when
  one code object keeps producing new signatures (a lambda created per batch), so a loop never
  recompiles on every step.

Opt out per function with ``funcgrad.grad(f, eager_compile=False)``, globally with
``set_eager_compile(False)``, or temporarily with ``with eager_compile_disabled(): ...`` or
``with jax.disable_jit(): ...``.

Example:
    >>> import jax.numpy as jnp, funcgrad
    >>> g = funcgrad.grad(lambda x: jnp.sum(jnp.sin(x)))
    >>> g(jnp.zeros(3))  # compiles once; later float32[3] calls reuse the program
    Array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import weakref
from collections import OrderedDict

import jax
import numpy as np
from jax import tree_util

NOT_CACHED = object()  # sentinel: the caller must take the uncached path

_ENABLED = [True]
_MAX_KEYS_PER_FUN = 8  # signatures kept per function (closure-rebinding variants, statics)
_MAX_FUNS_PER_CODE = 16  # distinct function objects per code object before caching stops

# fun -> OrderedDict[key -> jitted | None]; None marks a signature that cannot be compiled.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FUNS_PER_CODE: dict = {}  # code object -> number of distinct function objects seen
_UNCACHEABLE_CODE: set = set()


def set_eager_compile(enabled: bool) -> None:
    """Turn compiled eager mode on or off for every funcgrad gradient function (default on)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_eager_compile expected a bool, got {type(enabled).__name__}.")
    _ENABLED[0] = enabled


def eager_compile_enabled() -> bool:
    """Whether compiled eager mode is on globally."""
    return _ENABLED[0]


@contextlib.contextmanager
def eager_compile_disabled():
    """Within the block, eager funcgrad calls walk the jaxpr op by op (side effects every call)."""
    previous = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = previous


def clear_cache() -> None:
    """Forget every compiled eager program."""
    _CACHE.clear()
    _FUNS_PER_CODE.clear()
    _UNCACHEABLE_CODE.clear()


def _code_of(fun):
    while isinstance(fun, functools.partial):
        fun = fun.func
    fun = getattr(fun, "__func__", fun)  # bound method -> function
    return getattr(fun, "__code__", None)


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _captured_ids(fun) -> tuple:
    """Identities of arrays ``fun`` reads from closure cells, named globals or partial args."""
    ids = []
    while isinstance(fun, functools.partial):
        ids.extend(id(a) for a in (*fun.args, *fun.keywords.values()) if _is_array(a))
        fun = fun.func
    fun = getattr(fun, "__func__", fun)
    for cell in getattr(fun, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # empty cell
            continue
        if _is_array(value):
            ids.append(id(value))
    code, glob = getattr(fun, "__code__", None), getattr(fun, "__globals__", None)
    if code is not None and glob is not None:
        for name in code.co_names:
            value = glob.get(name)
            if value is not None and _is_array(value):
                ids.append(id(value))
    return tuple(ids)


def _split_leaves(leaves, diff_mask):
    """(dynamic leaves, static key) or None when a leaf cannot be handled by the cache."""
    dynamic, static = [], []
    for leaf, diff in zip(leaves, diff_mask, strict=True):
        if isinstance(leaf, jax.core.Tracer):
            return None
        if (
            _is_array(leaf)
            or isinstance(leaf, np.generic)
            or (diff and isinstance(leaf, numbers.Number))
        ):
            dynamic.append(leaf)
            static.append(None)
            continue
        try:
            hash(leaf)
        except TypeError:
            return None
        static.append((type(leaf), leaf))
    return dynamic, tuple(static)


def _entries_for(fun):
    """The signature table of ``fun``, or None when ``fun`` cannot be cached."""
    try:
        entries = _CACHE.get(fun)
    except TypeError:  # unhashable or not weakly referenceable
        return None
    if entries is not None:
        return entries
    code = _code_of(fun)
    if code in _UNCACHEABLE_CODE:
        return None
    if code is not None:
        seen = _FUNS_PER_CODE.get(code, 0) + 1
        _FUNS_PER_CODE[code] = seen
        if seen > _MAX_FUNS_PER_CODE:  # a fresh closure per call: compiling would not pay
            _UNCACHEABLE_CODE.add(code)
            return None
    entries = OrderedDict()
    try:
        _CACHE[fun] = entries
    except TypeError:
        return None
    return entries


def _compile(impl, treedef, static):
    """A jitted ``impl`` over the dynamic leaves, statics merged back in."""

    def run(dynamic):
        it = iter(dynamic)
        leaves = [next(it) if s is None else s[1] for s in static]
        args, kwargs = tree_util.tree_unflatten(treedef, leaves)
        return impl(*args, **kwargs)

    return jax.jit(run)


def call(fun, options, impl, args, kwargs, diff_positions):
    """Run ``impl(*args, **kwargs)`` as a cached compiled program, or return NOT_CACHED.

    ``options``: hashable grad options (argnums, has_aux, allow_int); ``diff_positions``:
    indices of the differentiated positional arguments (their Python-number leaves stay
    dynamic, so their gradient is taken, not baked).
    """
    if jax.config.jax_disable_jit:
        return NOT_CACHED
    entries = _entries_for(fun)
    if entries is None:
        return NOT_CACHED
    leaves, treedef = tree_util.tree_flatten((args, kwargs))
    diff_mask = _diff_mask(args, kwargs, diff_positions)
    split = _split_leaves(leaves, diff_mask)
    if split is None:
        return NOT_CACHED
    dynamic, static = split
    key = (options, treedef, static, _captured_ids(fun))
    jitted = entries.get(key, NOT_CACHED)
    if jitted is None:
        return NOT_CACHED
    if jitted is NOT_CACHED:
        jitted = _compile(impl, treedef, static)
        entries[key] = jitted
        while len(entries) > _MAX_KEYS_PER_FUN:
            entries.popitem(last=False)
    else:
        entries.move_to_end(key)
    try:
        return jitted(dynamic)
    except Exception:
        # Not traceable abstractly, or a genuine error: the uncached walk decides. If it
        # raises, the user sees its error; if it succeeds, this signature stays uncached.
        result = impl(*args, **kwargs)
        entries[key] = None
        return result


def _diff_mask(args, kwargs, diff_positions):
    mask = []
    for i, a in enumerate(args):
        mask.extend([i in diff_positions] * len(tree_util.tree_leaves(a)))
    mask.extend([False] * len(tree_util.tree_leaves(kwargs)))
    return mask
