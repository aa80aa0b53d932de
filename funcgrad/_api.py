"""The public gradient API, mirroring JAX: vjp, grad, value_and_grad, jacrev, hessian."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from . import _eager, _remat
from ._backward import backward, differentiable, forward
from ._errors import FuncgradError, aval_str
from ._jax_compat import as_weak
from ._tracing import Traced, concrete, trace

FLOAT0 = jax.dtypes.float0
_ARRAY_TYPES = (jax.Array, np.ndarray, np.generic, numbers.Number)


def _check_leaves(args, what: str) -> None:
    """Every differentiated leaf must be an array or a number; say which one is not."""
    for path, leaf in tree_util.tree_flatten_with_path(args)[0]:
        if not isinstance(leaf, _ARRAY_TYPES) and not isinstance(leaf, jax.core.Tracer):
            raise TypeError(
                f"{what}: argument leaf at {_path_str(path)} is a {type(leaf).__name__} "
                f"({_short_repr(leaf)}); differentiated arguments must be pytrees of arrays or "
                f"numbers. Pass other values through a closure or functools.partial, or "
                f"exclude that argument with argnums."
            )


def _path_str(path) -> str:
    return "args" + tree_util.keystr(path) if path else "args"


def _short_repr(x, n=40) -> str:
    r = repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def vjp(fun: Callable, *primals, has_aux: bool = False, remat=None):
    """funcgrad's ``(out, pullback)`` (and ``aux`` with ``has_aux``), like ``jax.vjp``.

    ``pullback(ct)`` takes a cotangent with the structure, shapes and dtypes of ``out`` and
    returns one cotangent per primal, each with its primal's structure. Integer and boolean
    inputs get ``float0`` cotangents, as in JAX. Complex primals and outputs follow JAX's
    convention (the pullback is the transpose of the linearisation, not its adjoint).
    Outside ``jit``, Python control flow on values is recorded (``funcgrad/_record.py``).
    ``remat``: the memory plan (``None``, ``"auto"`` or ``funcgrad.Budget(bytes)``; see
    ``docs/memory.md``).
    """
    _check_leaves(primals, "funcgrad.vjp")
    _remat.check_remat(remat, "funcgrad.vjp")
    diff = [True] * len(tree_util.tree_leaves(primals))
    t = trace(fun, primals, {}, diff, has_aux, "funcgrad.vjp", _eager.start_path(fun))
    # the memory plan
    t.closed = _remat.apply(t.closed, remat, t.n_out, "funcgrad.vjp", t.active)
    if concrete(t.dyn):
        _eager.note_path(t.path, fun, len(t.closed.jaxpr.eqns))
    closed, in_tree = t.closed, tree_util.tree_structure(primals)
    outs, tape = forward(closed.jaxpr, closed.consts, t.dyn, t.active)
    n_out = t.n_out
    out_flat = outs[:n_out]
    in_avals = [v.aval for v in closed.jaxpr.invars]

    def pullback(ct):
        ct_flat = _check_cotangent(ct, t.out_tree, out_flat)
        cts = backward(closed.jaxpr, tape, [*ct_flat, *([None] * (len(outs) - n_out))])
        leaves = [_zero_or(c, av) for c, av in zip(cts, in_avals, strict=True)]
        return tuple(tree_util.tree_unflatten(in_tree, leaves))

    out, aux = t.unflatten(outs)
    if has_aux:
        return out, pullback, aux
    return out, pullback


def _zero_or(ct, aval):
    """The cotangent a user sees for an input of type ``aval`` (None: a zero)."""
    if not differentiable(aval):
        return np.zeros(aval.shape, jax.dtypes.float0)
    ct = jnp.zeros(aval.shape, aval.dtype) if ct is None else ct
    return as_weak(ct) if getattr(aval, "weak_type", False) else ct


def _check_cotangent(ct, out_tree, out_flat):
    ct_flat, ct_tree = tree_util.tree_flatten(ct)
    if ct_tree != out_tree:
        raise TypeError(
            f"funcgrad.vjp pullback expected a cotangent with the structure of the output, "
            f"{out_tree}, got {ct_tree}. Pass one cotangent per output leaf."
        )
    checked = []
    for k, (c, o) in enumerate(zip(ct_flat, out_flat, strict=True)):
        want_dtype = jnp.result_type(o) if differentiable(jax.typeof(o)) else jax.dtypes.float0
        shape, dtype = np.shape(c), getattr(c, "dtype", None)
        if dtype is None:
            c = jnp.asarray(c, want_dtype)
            dtype = c.dtype
        if shape != np.shape(o) or dtype != want_dtype:
            raise TypeError(
                f"funcgrad.vjp pullback: cotangent leaf {k} has type {aval_str(c)}, but the "
                f"output leaf it belongs to needs {want_dtype}[{','.join(map(str, np.shape(o)))}]"
                f" (a cotangent has its output's shape and dtype"
                f"{'; integer outputs take float0 zeros' if want_dtype == FLOAT0 else ''})."
            )
        checked.append(None if want_dtype == jax.dtypes.float0 else c)
    return checked


def _argnums_tuple(argnums, nargs, what) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError(f"{what}: argnums must name at least one argument, got {argnums!r}.")
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise ValueError(
                f"{what}: argnums={argnums!r} but the function was called with {nargs} "
                f"positional argument(s); valid argnums are 0..{nargs - 1}."
            )
    return tuple(n % nargs for n in nums)


def _check_dtypes(dyn, argnums, allow_int, holomorphic, what):
    """Inputs JAX's grad accepts: inexact (complex too), ints with allow_int; holomorphic:
    complex only."""
    for i, arg in zip(argnums, dyn, strict=True):
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            dtype = jnp.result_type(leaf)
            where = f"argument {i}{tree_util.keystr(path)}"
            if holomorphic and not jnp.issubdtype(dtype, jnp.complexfloating):
                raise TypeError(
                    f"{what} with holomorphic=True requires inputs with complex dtype, but "
                    f"{where} has dtype {dtype}. Cast it, e.g. x.astype(jnp.complex64), or "
                    f"drop holomorphic=True for a real-valued function."
                )
            if not jnp.issubdtype(dtype, jnp.inexact) and not allow_int:
                raise TypeError(
                    f"{what} requires real- or complex-valued inputs, but {where} has dtype "
                    f"{dtype}. Cast it to a float dtype, exclude it with argnums, or pass "
                    f"allow_int=True to get a float0 gradient for it."
                )


def _check_output_dtype(dtype, holomorphic, what):
    if holomorphic:
        if not jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"{what} with holomorphic=True requires outputs with complex dtype, but got "
                f"{dtype}."
            )
        return
    if not jnp.issubdtype(dtype, jnp.floating):
        hint = (
            "For holomorphic differentiation, pass holomorphic=True. For differentiation of "
            "non-holomorphic functions involving complex outputs, use funcgrad.vjp directly."
            if jnp.issubdtype(dtype, jnp.complexfloating)
            else "For differentiation of functions with integer outputs, use funcgrad.vjp directly."
        )
        raise TypeError(
            f"{what} requires real-valued outputs (output dtype that is a sub-dtype of "
            f"np.floating), but got {dtype}. {hint}"
        )


def _check_scalar(t: Traced, holomorphic, what):
    """``fun`` returned one scalar of a differentiable dtype (checked on the trace)."""
    avals = t.out_avals()
    if len(avals) != 1 or t.out_tree.num_nodes != 1:
        raise TypeError(
            f"{what} needs a function that returns one scalar, got an output with structure "
            f"{t.out_tree} and {len(avals)} leaves. For several outputs use funcgrad.vjp or "
            f"funcgrad.jacrev; to return extra values use has_aux=True."
        )
    if tuple(avals[0].shape) != ():
        raise TypeError(
            f"{what} needs a scalar output, got shape {tuple(avals[0].shape)}. Reduce it "
            f"(e.g. .sum() or .mean()), or use funcgrad.vjp(f, x) with a cotangent of that "
            f"shape, or funcgrad.jacrev for the full Jacobian."
        )
    _check_output_dtype(avals[0].dtype, holomorphic, what)


def _partial_at(fun, args, kwargs, argnums):
    def f_dyn(*dyn):
        full = list(args)
        for i, v in zip(argnums, dyn, strict=True):
            full[i] = v
        return fun(*full, **kwargs)

    return f_dyn


def _diff_mask(args, kwargs, nums):
    mask = []
    for i, a in enumerate(args):
        mask.extend([i in nums] * len(tree_util.tree_leaves(a)))
    mask.extend([False] * len(tree_util.tree_leaves(kwargs)))
    return mask


def _grad_run(jaxpr, active):
    """``(consts, dyn) -> (outputs, cotangents of the active inputs)`` for ``jaxpr``.

    The function reads nothing but ``jaxpr``'s structure, so one compiled copy serves every
    jaxpr with the same structure (``_eager.program``).
    """
    in_avals = [v.aval for v in jaxpr.invars]
    out_aval = jaxpr.outvars[0].aval

    def run(consts, dyn):
        outs, tape = forward(jaxpr, consts, dyn, active)
        seed = jnp.ones((), out_aval.dtype)
        cts = backward(jaxpr, tape, [seed, *([None] * (len(outs) - 1))])
        grads = [
            _zero_or(c, av) if differentiable(av) else None
            for c, av, a in zip(cts, in_avals, active, strict=True)
            if a
        ]
        return outs, grads

    return run


def _assemble_grads(t: Traced, grads, args, nums, argnums):
    """Per differentiated argument, its cotangent pytree (float0 for integer leaves)."""
    by_pos = dict(zip([p for p, a in zip(t.dyn_pos, t.active) if a], grads, strict=True))
    avals = {p: v.aval for p, v in zip(t.dyn_pos, t.closed.jaxpr.invars)}
    offsets = np.cumsum([0, *(len(tree_util.tree_leaves(a)) for a in args)])
    out = []
    for i in nums:
        leaves = []
        for p in range(offsets[i], offsets[i + 1]):
            g = by_pos[p]
            leaves.append(_zero_or(None, avals[p]) if g is None else g)
        out.append(tree_util.tree_unflatten(tree_util.tree_structure(args[i]), leaves))
    return out[0] if isinstance(argnums, int) else tuple(out)


def value_and_grad(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    eager_compile: bool | str | None = None,
    remat=None,
):
    """Like ``jax.value_and_grad``, computed with funcgrad's VJP table.

    Outside ``jit`` a call means what ``jax.value_and_grad`` means: ``fun``'s Python runs at
    every call (fresh reads of globals and captured state, side effects each time), and the
    forward+backward program is compiled once per traced structure and reused; Python
    ``int``/``float`` arguments do not recompile. Where Python inspects a value
    (``if x < 3``), the call is recorded on concrete values (see ``docs/eager.md``).
    ``eager_compile``: ``None`` follows ``funcgrad.set_eager_compile`` (default ``True``);
    ``False`` walks the equations op by op; ``"signature"`` opts into ``jax.jit``
    semantics (one program per input signature, captured values baked in).

    A real-valued ``fun`` of complex inputs gets JAX's gradient (the conjugate of the
    steepest-ascent direction); ``holomorphic=True`` differentiates a complex ``fun`` of
    complex inputs as ``jax.grad(..., holomorphic=True)`` does.
    """
    if eager_compile is not None and (
        eager_compile not in _eager.MODES or type(eager_compile) is int
    ):
        raise TypeError(
            f"eager_compile must be None, True, False or 'signature', got {eager_compile!r}."
        )
    what = "funcgrad.value_and_grad"
    _remat.check_remat(remat, what)

    def traced_call(args, kwargs, nums, start):
        dyn = [args[i] for i in nums]
        _check_leaves(tuple(dyn), what)
        _check_dtypes(dyn, nums, allow_int, holomorphic, what)
        t = trace(fun, args, kwargs, _diff_mask(args, kwargs, nums), has_aux, what, start)
        _check_scalar(t, holomorphic, what)
        t.closed = _remat.apply(t.closed, remat, t.n_out, what, t.active)  # the memory plan
        return t

    def finish(t, outs, grads, args, nums):
        value, aux = t.unflatten(outs)
        grads = _assemble_grads(t, grads, args, nums, argnums)
        return ((value, aux) if has_aux else value), grads

    def value_and_grad_walk(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args), what)
        t = traced_call(args, kwargs, nums, _eager.start_path(fun))
        if concrete(t.dyn):
            _eager.remember_path(fun, _eager.PATHS.index(t.path))
            _eager.note_path(t.path, fun, len(t.closed.jaxpr.eqns))
            _eager.walked()
        outs, grads = _grad_run(t.closed.jaxpr, t.active)(t.closed.consts, t.dyn)
        return finish(t, outs, grads, args, nums)

    def value_and_grad_compiled(args, kwargs):
        nums = _argnums_tuple(argnums, len(args), what)
        t = traced_call(args, kwargs, nums, _eager.start_path(fun))
        _eager.remember_path(fun, _eager.PATHS.index(t.path))
        _eager.note_path(t.path, fun, len(t.closed.jaxpr.eqns))
        jaxpr, active = t.closed.jaxpr, t.active
        if t.path == "recorded":  # this call's own path through Python: walked op by op
            _eager.walked()
            outs, grads = _grad_run(jaxpr, active)(t.closed.consts, t.dyn)
        else:
            outs, grads = _eager.run_program(
                fun, jaxpr, (tuple(active), t.n_out, remat), lambda: _grad_run(jaxpr, active),
                t.closed.consts, t.dyn,
            )  # fmt: skip
        return finish(t, outs, grads, args, nums)

    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        m = _eager.mode(eager_compile)
        abstract = not concrete(tree_util.tree_leaves((args, kwargs)))
        if abstract or m is False or jax.config.jax_disable_jit:
            return value_and_grad_walk(*args, **kwargs)
        if m == "signature":
            nums = _argnums_tuple(argnums, len(args), what)
            options = (argnums if isinstance(argnums, int) else tuple(argnums), has_aux, remat)
            res = _eager.signature_call(
                fun, options, value_and_grad_walk, args, kwargs, _diff_mask(args, kwargs, nums)
            )
            return value_and_grad_walk(*args, **kwargs) if res is _eager.NOT_CACHED else res
        return value_and_grad_compiled(args, kwargs)

    return value_and_grad_fun


def grad(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    eager_compile: bool | str | None = None,
    remat=None,
):
    """Like ``jax.grad``: the gradient of a scalar function, from funcgrad's VJP table.

    ``eager_compile`` and complex inputs: see ``value_and_grad``.

    Example:
        >>> import jax.numpy as jnp, funcgrad
        >>> funcgrad.grad(lambda x: jnp.sum(x ** 2))(jnp.array([1.0, 2.0]))
        Array([2., 4.], dtype=float32)
    """
    vg = value_and_grad(
        fun, argnums, has_aux, holomorphic, allow_int, eager_compile=eager_compile, remat=remat
    )

    @functools.wraps(fun)
    def grad_fun(*args, **kwargs):
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return grad_fun


def jacrev(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
):
    """Like ``jax.jacrev``: the Jacobian by one funcgrad pullback per output element (vmapped)."""

    @functools.wraps(fun)
    def jac_fun(*args, **kwargs):
        what = "funcgrad.jacrev"
        nums = _argnums_tuple(argnums, len(args), what)
        dyn = [args[i] for i in nums]
        _check_leaves(tuple(dyn), what)
        _check_dtypes(dyn, nums, allow_int, holomorphic, what)
        res = vjp(_partial_at(fun, args, kwargs, nums), *dyn, has_aux=has_aux)
        out, pullback = res[0], res[1]
        out_flat, out_tree = tree_util.tree_flatten(out)
        for o in out_flat:
            _check_output_dtype(jnp.result_type(o), holomorphic, what)
        sizes = [int(np.size(o)) for o in out_flat]
        total = sum(sizes)
        offsets = np.cumsum([0, *sizes])
        eye = jnp.eye(total, dtype=jnp.result_type(*out_flat) if out_flat else jnp.float32)
        basis = [
            eye[:, offsets[k] : offsets[k + 1]]
            .reshape((total, *np.shape(o)))
            .astype(jnp.result_type(o))
            for k, o in enumerate(out_flat)
        ]
        cts = jax.vmap(lambda *b: pullback(tree_util.tree_unflatten(out_tree, b)))(*basis)
        in_flat, in_tree = tree_util.tree_flatten(tuple(cts))
        blocks = [
            tree_util.tree_unflatten(
                in_tree,
                [
                    c[offsets[k] : offsets[k + 1]].reshape((*np.shape(o), *c.shape[1:]))
                    for c in in_flat
                ],
            )
            for k, o in enumerate(out_flat)
        ]
        blocks = [b[0] if isinstance(argnums, int) else b for b in blocks]
        jac = tree_util.tree_unflatten(out_tree, blocks)
        return (jac, res[2]) if has_aux else jac

    return jac_fun


def hessian(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Any:
    """Like ``jax.hessian``: funcgrad's reverse-over-reverse Jacobian of the gradient."""
    if has_aux:
        inner = jacrev(fun, argnums, has_aux=True)
        return jacrev(inner, argnums, has_aux=True)
    return jacrev(jacrev(fun, argnums), argnums)


__all__ = ["FuncgradError", "grad", "hessian", "jacrev", "value_and_grad", "vjp"]
