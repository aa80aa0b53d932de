"""Eager calls: ``funcgrad.grad(f)(x)`` outside ``jit`` means what ``jax.grad(f)(x)`` means.

Every eager call runs ``f``'s Python again, as ``jax.grad`` does: globals, ``self.data``,
dicts and NumPy arrays are read at that call, and side effects happen at that call. What is
reused is the *compiled program*: the traced jaxpr's structure (primitives, parameters,
types, literals, wiring; never the values of constants or inputs) keys a cache of jitted
forward+backward programs, whose constants and inputs are arguments. So a new value of an
array, of a captured constant, or of a Python ``int``/``float`` argument (traced as a weakly
typed input) does not recompile; a new structure does.

How a call is traced (``_tracing.trace`` is the one place a closed jaxpr is produced):

1. ``"jaxpr"``: ``jax.make_jaxpr`` over every array and Python-number leaf of the arguments
   (``bool``, strings, ``None`` and other objects stay Python values);
2. ``"jaxpr-static"``: if Python needed a value, again with only the differentiated leaves
   abstract (``range(n)`` on an ``int`` argument; one program per value, as under ``jit``);
3. ``"recorded"``: if Python needs a differentiated value (``if x < 3``) or an array's value,
   the program is recorded on concrete values (``funcgrad/_record.py``) and walked op by op.

A function that needed step 2 or 3 starts there at its next call (so its Python side effects
before the failing line ran twice only at the first call). ``eager_stats()`` counts each path
and compilation; the logger ``funcgrad.eager`` says at DEBUG level which path each call took.

Modes (``eager_compile=`` per function, or ``set_eager_compile`` globally): ``True`` (default)
as above; ``False`` traces the same way but walks every equation op by op, no compilation;
``"signature"`` opts into ``jax.jit`` semantics: one program per input signature, Python run
only when compiling, captured values baked in (``signature_call`` below).

Example:
    >>> import jax.numpy as jnp, funcgrad
    >>> g = funcgrad.grad(lambda x, step: jnp.sum(jnp.sin(x)) * step)
    >>> [float(g(jnp.zeros(3), k)[0]) for k in (1, 2, 3)]  # one compilation for all three
    [1.0, 2.0, 3.0]
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import numbers
import weakref
from collections import OrderedDict

import jax
import numpy as np
from jax import tree_util
from jax.extend import core as jcore

from ._registry import lookup

LOG = logging.getLogger("funcgrad.eager")
NOT_CACHED = object()  # sentinel: the caller must take the uncached path
MODES = (True, False, "signature")
PATHS = ("jaxpr", "jaxpr-static", "recorded")

_MODE = [True]
_MAX_PROGRAMS = 64  # compiled forward+backward programs kept, least recently used dropped
_PROGRAMS: OrderedDict = OrderedDict()
_STATS: collections.Counter = collections.Counter()
_START_PATH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fun -> index in PATHS


def set_eager_compile(mode) -> None:
    """Set how eager calls run, for every funcgrad gradient function (default ``True``).

    ``True``: trace at every call, reuse a compiled program per traced structure.
    ``False``: trace at every call, walk the equations op by op.
    ``"signature"``: ``jax.jit`` semantics, one program per input signature (opt-in).
    """
    if mode not in MODES or isinstance(mode, int) and not isinstance(mode, bool):
        raise TypeError(f"set_eager_compile expected True, False or 'signature', got {mode!r}.")
    _MODE[0] = mode


def eager_compile_enabled() -> bool:
    """Whether eager calls compile (modes ``True`` and ``"signature"``)."""
    return _MODE[0] is not False


def mode(local):
    """The mode a call runs in: its ``eager_compile=`` argument, else the global one."""
    return _MODE[0] if local is None else local


@contextlib.contextmanager
def eager_compile_disabled():
    """Within the block, eager funcgrad calls walk the jaxpr op by op (no compilation)."""
    previous = _MODE[0]
    _MODE[0] = False
    try:
        yield
    finally:
        _MODE[0] = previous


def eager_stats() -> dict:
    """Counters since the last ``clear_cache``: calls per path, compilations, reuses."""
    out = {k: _STATS.get(k, 0) for k in (*PATHS, "compiled", "reused", "walked")}
    out["last_path"] = _STATS.get("last_path_name", None)
    return out


def clear_cache() -> None:
    """Forget every compiled eager program and reset ``eager_stats``."""
    _PROGRAMS.clear()
    _SEEN.clear()
    _MISSES.clear()
    _STATS.clear()
    _START_PATH.clear()
    _SIGNATURES.clear()


def note_path(path: str, fun, n_eqns: int) -> None:
    _STATS[path] += 1
    _STATS["last_path_name"] = path
    LOG.debug("%s: %s path, %d equations", getattr(fun, "__name__", fun), path, n_eqns)


def start_path(fun) -> int:
    try:
        return _START_PATH.get(fun, 0)
    except TypeError:  # not weakly referenceable
        return 0


def remember_path(fun, index: int) -> None:
    with contextlib.suppress(TypeError):
        if index:
            _START_PATH[fun] = index


# ----- structural key of a jaxpr ---------------------------------------------------------


class _Same:
    """Key part equal only to the very same object (kept alive, so its id is not reused)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def _literal_key(val):
    arr = np.asarray(val)
    return (type(val), arr.dtype.str, arr.shape, arr.tobytes())


def _param_key(v, memo):
    if isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)):
        got = memo.get(id(v))
        if got is None:
            got = memo[id(v)] = (structure_key(v, memo), v)  # v: keeps id(v) unique
        return got[0]
    if isinstance(v, (tuple, list)):
        return (type(v), tuple(_param_key(x, memo) for x in v))
    try:
        hash(v)
    except TypeError:
        return _Same(v)
    return v


def structure_key(jaxpr, memo=None) -> tuple:
    """Everything about ``jaxpr`` a compiled program depends on, except constants' values.

    Primitives, parameters (nested jaxprs by structure, their constants by identity),
    variable types (weak types included), literal values and the wiring between equations.
    """
    memo = {} if memo is None else memo
    inner = getattr(jaxpr, "jaxpr", jaxpr)
    ids = {}
    for v in (*inner.constvars, *inner.invars):
        ids[v] = len(ids)

    def atom(a):
        if isinstance(a, jcore.Literal):
            return ("lit", a.aval, _literal_key(a.val))
        return ids[a]

    eqns = []
    for eqn in inner.eqns:
        ins = tuple(atom(a) for a in eqn.invars)
        for v in eqn.outvars:
            ids[v] = len(ids)
        params = tuple((k, _param_key(p, memo)) for k, p in eqn.params.items())
        # The rule in force is part of the key: re-registering a rule must not reuse a
        # program compiled with the old one.
        rule = lookup(eqn.primitive)
        eqns.append((eqn.primitive, rule, ins, tuple(v.aval for v in eqn.outvars), params))
    consts = getattr(jaxpr, "consts", None) if inner is not jaxpr else None
    return (
        tuple(v.aval for v in inner.constvars),
        tuple(v.aval for v in inner.invars),
        tuple(eqns),
        tuple(atom(a) for a in inner.outvars),
        tuple(_Same(c) for c in consts) if consts else (),
    )


_UNCOMPILABLE = object()  # a structure whose program failed to compile: always walked


_THRASH_AFTER = 3  # consecutive compilations of one function before new structures are walked
_MISSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fun -> consecutive compiles
_SEEN: OrderedDict = OrderedDict()  # structures walked once by a thrashing function


def _count_miss(owner, n):
    with contextlib.suppress(TypeError):  # not weakly referenceable: no guard
        _MISSES[owner] = n


def run_program(owner, jaxpr, extra_key, make_run, consts, dyn):
    """``make_run()(consts, dyn)``, jitted once per structure of ``jaxpr`` and reused.

    ``make_run()`` must build its function from ``jaxpr``'s structure alone: the compiled
    program serves every later jaxpr with the same structure and ``extra_key``, its
    constants and inputs being arguments. ``owner`` (the user's function) is watched for
    thrashing: after ``_THRASH_AFTER`` compilations in a row, a structure is walked op by
    op the first time it is seen and compiled only when it comes back. A program that
    cannot be compiled (a primitive with an implementation but no lowering) is walked op by
    op instead, as ``jax.grad`` would run it; a genuine error then comes from that walk.
    """
    key = (structure_key(jaxpr), extra_key)
    jitted = _PROGRAMS.get(key)
    if jitted is _UNCOMPILABLE:
        walked()
        return make_run()(consts, dyn)
    try:
        misses = _MISSES.get(owner, 0)
    except TypeError:
        misses = 0
    if jitted is not None:
        _PROGRAMS.move_to_end(key)
        _STATS["reused"] += 1
        _count_miss(owner, 0)
    elif misses >= _THRASH_AFTER and key not in _SEEN:
        # A new structure at every call (a Python number baked into the program): compiling
        # each would cost far more than walking; compile a structure when it comes back.
        _SEEN[key] = True
        while len(_SEEN) > 4 * _MAX_PROGRAMS:
            _SEEN.popitem(last=False)
        walked()
        return make_run()(consts, dyn)
    else:
        _count_miss(owner, misses + 1)
        run = make_run()

        @functools.wraps(run)
        def counted(*args):
            _STATS["compiled"] += 1  # runs once per jit trace: a compilation
            return run(*args)

        jitted = _PROGRAMS[key] = jax.jit(counted)
        while len(_PROGRAMS) > _MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    try:
        return jitted(consts, dyn)
    except Exception:
        _PROGRAMS[key] = _UNCOMPILABLE
        walked()
        return make_run()(consts, dyn)


def walked() -> None:
    _STATS["walked"] += 1


# ----- opt-in "signature" mode: jax.jit semantics -----------------------------------------

# fun -> OrderedDict[key -> jitted | None]; None marks a signature that cannot be compiled.
_SIGNATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_KEYS_PER_FUN = 8


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


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


def signature_call(fun, options, impl, args, kwargs, diff_mask):
    """``impl(*args, **kwargs)`` as one jitted program per input signature, or NOT_CACHED.

    ``jax.jit`` semantics: Python in ``fun`` runs when a signature compiles, captured arrays
    are baked in, non-array leaves are static. Falls back (NOT_CACHED) where that cannot work.
    """
    try:
        entries = _SIGNATURES.setdefault(fun, OrderedDict())
    except TypeError:  # not weakly referenceable
        return NOT_CACHED
    leaves, treedef = tree_util.tree_flatten((args, kwargs))
    split = _split_leaves(leaves, diff_mask)
    if split is None:
        return NOT_CACHED
    dynamic, static = split
    key = (options, treedef, static)
    jitted = entries.get(key, NOT_CACHED)
    if jitted is None:
        return NOT_CACHED
    if jitted is NOT_CACHED:

        def run(dyn):
            it = iter(dyn)
            full = [next(it) if s is None else s[1] for s in static]
            a, k = tree_util.tree_unflatten(treedef, full)
            return impl(*a, **k)

        jitted = entries[key] = jax.jit(run)
        while len(entries) > _MAX_KEYS_PER_FUN:
            entries.popitem(last=False)
    try:
        return jitted(dynamic)
    except jax.errors.ConcretizationTypeError:
        entries[key] = None  # needs values: this signature walks eagerly from now on
        return NOT_CACHED
