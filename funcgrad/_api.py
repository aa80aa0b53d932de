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


def _trace(fun, primals, has_aux, what):
    """Trace ``fun(*primals)`` with JAX into a closed jaxpr over flat leaves."""
    if not callable(fun):
        raise TypeError(f"{what} expected a callable, got {type(fun).__name__}: {fun!r}")
    flat, in_tree = tree_util.tree_flatten(primals)
    store = {}

    def flat_fun(*leaves):
        out = fun(*tree_util.tree_unflatten(in_tree, leaves))
        aux = None
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(
                    f"{what} with has_aux=True expected the function to return a pair "
                    f"(output, aux), got {type(out).__name__}"
                    f"{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}."
                )
            out, aux = out
        out_flat, store["out_tree"] = tree_util.tree_flatten(out)
        aux_flat, store["aux_tree"] = tree_util.tree_flatten(aux)
        store["n_out"] = len(out_flat)
        return [*out_flat, *aux_flat]

    closed = jax.make_jaxpr(flat_fun)(*flat)
    return closed, flat, in_tree, store


def vjp(fun: Callable, *primals, has_aux: bool = False, remat=None):
    """funcgrad's ``(out, pullback)`` (and ``aux`` with ``has_aux``), like ``jax.vjp``.

    ``pullback(ct)`` takes a cotangent with the structure, shapes and dtypes of ``out`` and
    returns one cotangent per primal, each with its primal's structure. Integer and boolean
    inputs get ``float0`` cotangents, as in JAX.
    """
    _check_leaves(primals, "funcgrad.vjp")
    closed, flat, in_tree, store = _trace(fun, primals, has_aux, "funcgrad.vjp")
    closed = _remat.apply(closed, remat, store["n_out"], "funcgrad.vjp")  # memory plan
    outs, tape = forward(
        closed.jaxpr, closed.consts, flat, [differentiable(v.aval) for v in closed.jaxpr.invars]
    )
    n_out = store["n_out"]
    out_tree = store["out_tree"]
    out_flat = outs[:n_out]
    in_avals = [v.aval for v in closed.jaxpr.invars]

    def pullback(ct):
        ct_flat = _check_cotangent(ct, out_tree, out_flat)
        cts = backward(closed.jaxpr, tape, [*ct_flat, *([None] * (len(outs) - n_out))])
        leaves = [_zero_or(c, av) for c, av in zip(cts, in_avals, strict=True)]
        return tuple(tree_util.tree_unflatten(in_tree, leaves))

    out = tree_util.tree_unflatten(out_tree, out_flat)
    if has_aux:
        return out, pullback, tree_util.tree_unflatten(store["aux_tree"], outs[n_out:])
    return out, pullback


def _zero_or(ct, aval):
    if not differentiable(aval):
        return np.zeros(aval.shape, jax.dtypes.float0)
    return jnp.zeros(aval.shape, aval.dtype) if ct is None else ct


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


def _check_dtypes(dyn, argnums, allow_int, what):
    for i, arg in zip(argnums, dyn, strict=True):
        for path, leaf in tree_util.tree_flatten_with_path(arg)[0]:
            dtype = jnp.result_type(leaf)
            where = f"argument {i}{tree_util.keystr(path)}"
            if jnp.issubdtype(dtype, jnp.complexfloating):
                raise TypeError(
                    f"{what}: {where} is complex ({dtype}). funcgrad does not differentiate "
                    f"complex inputs yet (no holomorphic mode); split it into real and "
                    f"imaginary parts, or use jax.grad(..., holomorphic=True)."
                )
            if not jnp.issubdtype(dtype, jnp.floating) and not allow_int:
                raise TypeError(
                    f"{what} requires floating-point inputs, but {where} has dtype {dtype}. "
                    f"Cast it to a float dtype, exclude it with argnums, or pass "
                    f"allow_int=True to get a float0 gradient for it."
                )


def _partial_at(fun, args, kwargs, argnums):
    def f_dyn(*dyn):
        full = list(args)
        for i, v in zip(argnums, dyn, strict=True):
            full[i] = v
        return fun(*full, **kwargs)

    return f_dyn


def value_and_grad(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    eager_compile: bool | None = None,
    remat=None,
):
    """Like ``jax.value_and_grad``, computed with funcgrad's VJP table.

    Called outside ``jit`` with array arguments, the forward and backward program is compiled
    once per input signature and reused (see ``funcgrad._eager``): a Python side effect in
    ``fun`` then runs once per signature and closed-over arrays are baked in, as under
    ``jax.jit``. ``eager_compile=False`` (or ``funcgrad.set_eager_compile(False)``, or
    ``jax.disable_jit()``) walks the jaxpr op by op on every call instead; ``None`` follows
    the global setting.
    """
    if eager_compile not in (None, True, False):
        raise TypeError(f"eager_compile must be None, True or False, got {eager_compile!r}.")
    if holomorphic:
        raise NotImplementedError(
            "funcgrad does not support holomorphic=True: complex differentiation is not "
            "implemented. Use jax.grad(..., holomorphic=True) for complex functions."
        )

    options = (argnums if isinstance(argnums, int) else tuple(argnums), has_aux, allow_int, remat)

    def value_and_grad_walk(*args, **kwargs):
        what = "funcgrad.value_and_grad"
        nums = _argnums_tuple(argnums, len(args), what)
        dyn = [args[i] for i in nums]
        _check_leaves(tuple(dyn), what)
        _check_dtypes(dyn, nums, allow_int, what)
        res = vjp(_partial_at(fun, args, kwargs, nums), *dyn, has_aux=has_aux, remat=remat)
        out, pullback = res[0], res[1]
        _check_scalar(out)
        grads = pullback(jnp.ones((), jnp.result_type(out)))
        grads = grads[0] if isinstance(argnums, int) else grads
        return ((out, res[2]) if has_aux else out), grads

    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        if eager_compile is not False and (eager_compile or _eager.eager_compile_enabled()):
            nums = _argnums_tuple(argnums, len(args), "funcgrad.value_and_grad")
            res = _eager.call(fun, options, value_and_grad_walk, args, kwargs, nums)
            if res is not _eager.NOT_CACHED:
                return res
        return value_and_grad_walk(*args, **kwargs)

    return value_and_grad_fun


def _check_scalar(out):
    leaves = tree_util.tree_leaves(out)
    if len(leaves) != 1 or not isinstance(out, (jax.Array, np.ndarray, np.generic, float)):
        raise TypeError(
            f"funcgrad.grad needs a function that returns one scalar, got "
            f"{type(out).__name__} with {len(leaves)} leaves. For several outputs use "
            f"funcgrad.vjp or funcgrad.jacrev; to return extra values use has_aux=True."
        )
    if np.shape(out) != ():
        raise TypeError(
            f"funcgrad.grad needs a scalar output, got shape {np.shape(out)}. Reduce it "
            f"(e.g. .sum() or .mean()), or use funcgrad.vjp(f, x) with a cotangent of that "
            f"shape, or funcgrad.jacrev for the full Jacobian."
        )
    if not jnp.issubdtype(jnp.result_type(out), jnp.floating):
        raise TypeError(
            f"funcgrad.grad needs a real floating-point output, got dtype {jnp.result_type(out)}."
        )


def grad(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    eager_compile: bool | None = None,
    remat=None,
):
    """Like ``jax.grad``: the gradient of a scalar function, from funcgrad's VJP table.

    ``eager_compile``: see ``value_and_grad`` (outside ``jit``, one compiled program per input
    signature; ``False`` walks the jaxpr op by op on every call).

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
    fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False, allow_int: bool = False
):
    """Like ``jax.jacrev``: the Jacobian by one funcgrad pullback per output element (vmapped)."""

    @functools.wraps(fun)
    def jac_fun(*args, **kwargs):
        what = "funcgrad.jacrev"
        nums = _argnums_tuple(argnums, len(args), what)
        dyn = [args[i] for i in nums]
        _check_leaves(tuple(dyn), what)
        _check_dtypes(dyn, nums, allow_int, what)
        res = vjp(_partial_at(fun, args, kwargs, nums), *dyn, has_aux=has_aux)
        out, pullback = res[0], res[1]
        out_flat, out_tree = tree_util.tree_flatten(out)
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
