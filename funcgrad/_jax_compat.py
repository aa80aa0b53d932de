"""Everything that differs between JAX releases, or reaches below JAX's stable surface.

funcgrad supports ``jax>=0.10.2,<0.13``. No other module of funcgrad reads a primitive by its
name string, unpacks a custom_jvp/custom_vjp thunk, inspects a remat policy's decision, reads
``eqn.ctx``/``get_bind_params``, rewrites ``linear_solve``'s parameters or reads the varying
axes of an aval: they all come here, each section saying which JAX versions behave how.
A new JAX release should need edits in this file only (tests/test_upgrade_warning.py lists
the primitives it adds).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import weakref

import jax
import numpy as np
from jax.extend import core as jcore
from jax.extend import source_info_util
from jax.extend.core import primitives as _primitives

# --- compat: primitives matched by name ---
# JAX exports only some primitives under jax.extend.core.primitives; the others are matched by
# name.  Exported in neither 0.10.2 nor 0.12.0.1 unless said otherwise.
PVARY = "pvary"  # shard_map with check_vma: invariant -> varying cast
PSUM_INVARIANT = "psum_invariant"  # psum of a varying value (check_vma)
ALL_GATHER_INVARIANT = "all_gather_invariant"
REDUCE_SCATTER = "reduce_scatter"
RESHARD = "reshard"  # jax.sharding.reshard
SHARD_MAP = "shard_map"
SCATTER_SUB = "scatter-sub"  # x.at[i].subtract(u)
TILE = "tile"  # jnp.tile
UNSTACK = "unstack"  # jnp.unstack, likewise
STACK = "stack"  # jnp.stack (0.10.2 emits it too; not exported under jax.extend)
SPLIT = "split"  # jnp.split
OPTIMIZATION_BARRIER = "optimization_barrier"  # lax.optimization_barrier
# custom_lin: the tangent map of a custom_vjp function, which jax.jvp/linearize emit (a
# custom_jvp rule that calls jax.jvp through a custom_vjp function puts one in the traced rule).
# Operands: num_res residuals, then the tangents of the inputs whose in_zeros entry is False;
# bwd is the same flattened WrappedFun as custom_vjp_call's.  Same on 0.10.2 and 0.12.0.1.
CUSTOM_LIN = "custom_lin"
# checkpoint/remat: jax.extend exports it as remat_p (named "remat2" in 0.10.2 and 0.12);
# older jaxprs printed "checkpoint".  Diagnostics match either.
REMAT_NAMES = frozenset({"remat2", "checkpoint"})
# closed_call_p (and call_p) are named "closed_call"/"call" on 0.10.2 and "eval_jaxpr" on
# 0.12; 0.10.2 also has a separate internal primitive named "eval_jaxpr".  Match closed_call
# by its exported object's name, never by a string.
CLOSED_CALL_NAME = _primitives.closed_call_p.name
CLOSED_CALL_IS_EVAL_JAXPR = CLOSED_CALL_NAME == "eval_jaxpr"


# --- compat: rule-parameter adapter ---
# Releases add keyword params to primitives (0.12 added out_sharding to reduce_max/min/
# argmax..., accuracy to more unary ops).  A rule names the params it reads, or takes
# **params; the adapter passes exactly the params a rule accepts and drops the rest, so a new
# param never breaks a rule with TypeError.  A param the rule needs that the equation lacks
# (a rename) is reported by name.  Before the call, normalize_params restores the parameter
# set the rules are written against (0.10.2's), see the next section.
_ACCEPTS: dict = {}


def _accepted(fn):
    """Keyword names ``fn`` accepts (None: any, it takes **params) and those it requires."""
    got = _ACCEPTS.get(fn)
    if got is None:
        kinds = inspect.Parameter
        sig = inspect.signature(fn).parameters.values()
        if any(a.kind is kinds.VAR_KEYWORD for a in sig):
            names, required = None, frozenset()
        else:
            kw = [a for a in sig if a.kind in (kinds.KEYWORD_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
            names = frozenset(a.name for a in kw)
            required = frozenset(
                a.name for a in kw if a.kind is kinds.KEYWORD_ONLY and a.default is a.empty
            )
        got = _ACCEPTS[fn] = (names, required)
    return got


def call_with_params(fn, primitive, args, params):
    """``fn(*args, **params)`` with ``params`` normalised and cut to what ``fn`` names."""
    params = normalize_params(primitive, params)
    names, required = _accepted(fn)
    if names is not None:
        missing = sorted(required - params.keys())
        if missing:
            raise TypeError(
                f"the rule {fn.__module__}.{fn.__qualname__} for primitive "
                f"'{primitive.name}' reads the parameter(s) {missing}, which this JAX "
                f"({jax.__version__}) does not give that primitive (it gives "
                f"{sorted(params)}). Update funcgrad/_jax_compat.normalize_params for it."
            )
        params = {k: v for k, v in params.items() if k in names}
    return fn(*args, **params)


# --- compat: parameters of nested-jaxpr primitives ---
# scan: 0.10.2 has num_consts/num_carry and a ClosedJaxpr body.  0.12 replaced the two counts
#   by ft_in/ft_out, flat trees of (consts, carry, xs) and (carry, ys) whose unpack() gives
#   the three groups; its body is a Jaxpr.  normalize_params adds num_consts/num_carry back.
# Jaxpr vs ClosedJaxpr: 0.10.2 puts ClosedJaxprs in jit/cond/while/scan/custom_*_call params;
#   0.12 puts Jaxprs that carry their own consts (.consts and .jaxpr exist on both), so rules
#   read ``x.jaxpr``/``x.consts``, which works on both.
def normalize_params(primitive, params):
    """The params of ``primitive`` as funcgrad's rules read them (0.10.2's names)."""
    if "ft_in" in params and "num_consts" not in params:
        consts, carry, _ = params["ft_in"].unpack()
        params = {**params, "num_consts": len(consts), "num_carry": len(carry)}
    return params


def eqn_params(eqn):
    """An equation's params, normalised (for code that walks jaxprs, e.g. diagnostics)."""
    return normalize_params(eqn.primitive, eqn.params)


def scan_counts(params):
    """(num_consts, num_carry) of a scan equation's params, on every supported JAX."""
    params = normalize_params(None, params)
    return params["num_consts"], params["num_carry"]


# --- compat: evaluating one equation ---
# get_bind_params turns an equation's params back into bind's keywords (it differs from the
# params for call-like primitives), and eqn.ctx.manager re-enters the context the equation
# was traced under (e.g. its mesh).  Both are attributes of jax.extend.core's Primitive and
# JaxprEqn on 0.10.2 and 0.12.
def bind_params(eqn):
    """The keywords ``eqn.primitive.bind`` takes to re-run ``eqn``."""
    return eqn.primitive.get_bind_params(eqn.params)


def bind_eqn(eqn, invals):
    """Evaluate one equation, attributing anything it traces to the user's source line."""
    params = bind_params(eqn)
    with eqn_context(eqn), eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **params)
    return out if eqn.primitive.multiple_results else [out]


# --- compat: where an equation runs ---
# jax's own jaxpr evaluation runs each equation under its traceback and under the name stack
# it was traced in, appended to the current one (a NameStack's `+`, and user_context's
# name_stack keyword, on 0.10.2 and 0.12); funcgrad does the same wherever it runs an
# equation or walks into its body, so what it emits carries the vmap that batched it
# (`vmap()` is the transform jax.vmap pushes on both releases) and a second walk over
# funcgrad's own output sees it. A nested trace (a scan body traced again) starts a fresh
# name stack, so whether a vmap is around is also kept in a context variable of funcgrad's.
_UNDER_VMAP = contextvars.ContextVar("funcgrad_under_vmap", default=False)


def _names_vmap(name_stack) -> bool:
    return "vmap(" in str(name_stack)


@contextlib.contextmanager
def eqn_context(eqn):
    """Run what ``eqn`` traces under its user's line and its (accumulated) name stack."""
    name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
    token = _UNDER_VMAP.set(_UNDER_VMAP.get() or _names_vmap(eqn.source_info.name_stack))
    try:
        with source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack):
            yield
    finally:
        _UNDER_VMAP.reset(token)


def maybe_batched() -> bool:
    """Whether a jax.vmap may have batched the equation being walked (inside
    ``eqn_context``): its name stack or an enclosing equation's names one (a scope the user
    named so counts too: the test errs towards yes). A vmap around funcgrad itself
    (per-example gradients, ``jax.vmap(funcgrad.grad(loss))``) batches what funcgrad emits,
    not the program it walks, and does not count."""
    return _UNDER_VMAP.get()


# --- compat: custom_jvp / custom_vjp thunks ---
# custom_jvp_call's jvp_jaxpr_fun and custom_vjp_call's fwd_jaxpr_thunk/bwd are JAX
# WrappedFuns: call_wrapped(*zeros_or_active) traces them.  On 0.10.2 the jaxpr they return
# has the closed-over constants as constvars (values in the returned consts); on 0.12 the
# constants are the jaxpr's leading invars (values still returned).  hoisted_consts moves
# them to constvars on 0.12, so both look like 0.10.2.  out_trees() -> (out tree, residual
# tree, input_fwds) on both; input_fwds[k] is the operand index (constants counted) of an
# input that residual k forwards, or None when it is computed.
def _hoisted(jaxpr, consts, n_args):
    n_lead = len(jaxpr.invars) - n_args
    if n_lead == 0:
        return jaxpr, list(consts)
    if n_lead != len(consts) or jaxpr.constvars:
        raise NotImplementedError(
            f"funcgrad does not know this JAX's ({jax.__version__}) custom-derivative jaxpr "
            f"layout: {len(jaxpr.invars)} inputs and {len(jaxpr.constvars)} constvars for "
            f"{n_args} arguments and {len(consts)} constants. Please report it."
        )
    fields = dict(constvars=list(jaxpr.invars[:n_lead]), invars=jaxpr.invars[n_lead:])
    if hasattr(jaxpr, "consts"):  # 0.12: a constvar is an input with a value attached, so
        fields["consts"] = list(consts)  # without the values replace() keeps them invars
    moved = jaxpr.replace(**fields)
    if len(moved.constvars) != n_lead:
        raise NotImplementedError(
            f"funcgrad could not make the {n_lead} leading inputs of a custom-derivative jaxpr "
            f"constants on this JAX ({jax.__version__}). Please report it."
        )
    return moved, list(consts)


def custom_jvp_jaxpr(jvp_jaxpr_fun, zeros, n_args):
    """The custom_jvp rule traced with symbolic-zero flags ``zeros``:
    (jaxpr over primals+tangents with constvars, consts, out_zeros)."""
    jaxpr, consts, out_zeros = jvp_jaxpr_fun.call_wrapped(*zeros)
    jaxpr, consts = _hoisted(jaxpr, consts, n_args)
    return jaxpr, consts, out_zeros


# Traces that funcgrad ran to completion (see ``end_trace``): a tracer of one is stale.
_ENDED_TRACES = weakref.WeakSet()


def trace_of(values):
    """The trace of the first tracer among ``values`` (None if none is a tracer)."""
    for v in values:
        if isinstance(v, jax.core.Tracer):
            return getattr(v, "_trace", None)
    return None


def end_trace(trace) -> None:
    """Mark ``trace`` (from ``trace_of``) as ended once its jaxpr has been produced."""
    if trace is not None:
        _ENDED_TRACES.add(trace)


def stale_tracers(values) -> bool:
    """Whether any of ``values`` is a tracer of a trace that has ended (a leaked tracer).

    Such a value is a closure of a rule traced once and kept (a custom_jvp rule closing over
    a ``nondiff_argnums`` array on JAX 0.10): using it in a live trace leaks it, which JAX
    reports only when an outer ``jit`` runs (``UnexpectedTracerError``). JAX invalidates
    some ended traces itself (``is_valid``); funcgrad marks the ones it ran (``end_trace``)."""
    for v in values:
        if not isinstance(v, jax.core.Tracer):
            continue
        trace = getattr(v, "_trace", None)
        valid = getattr(trace, "is_valid", None)
        if trace in _ENDED_TRACES or (valid is not None and not valid()):
            return True
    return False


def custom_vjp_fwd(fwd_jaxpr_thunk, active, primals):
    """Run the user's fwd on ``primals``: its flat outputs (residuals computed, then outputs)."""
    jaxpr, consts = fwd_jaxpr_thunk.call_wrapped(*active)
    jaxpr, consts = _hoisted(jaxpr, consts, len(primals))
    return jcore.jaxpr_as_fun(jcore.ClosedJaxpr(jaxpr, consts))(*primals)


def custom_vjp_input_fwds(out_trees, n_res):
    """Per residual: the operand index (constants counted) it forwards, or None."""
    trees = out_trees()
    return list(trees[2]) if len(trees) > 2 else [None] * n_res


def custom_vjp_bwd(bwd, res, cts):
    """Run the user's bwd (flattened) on residuals and output cotangents: one cotangent per
    primal input, None where the bwd answered a (symbolic) zero.

    0.10.2's flattened bwd returns a flat list of cotangents; 0.12's returns a pair
    (cotangents, logs), logs being None unless the rule was registered with logs.  A symbolic
    zero is JAX's Zero object on both (it has an aval and no dtype)."""
    out = bwd.call_wrapped(*res, *cts)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], list):
        out = out[0]
    return [c if hasattr(c, "dtype") else None for c in out]


# --- compat: remat policies ---
# A policy answers per equation.  The standard policies answer a bool on 0.10.2 and 0.12;
# offload policies answer an Offloadable(src, dst) object, and JAX's own policy types
# (Saveable/SaveableType/Recompute) are only nameable through jax._src, so they are matched by
# class name.  Offloaded values are kept on the device here (funcgrad does not offload).
_SAVE_DECISIONS = frozenset({"Saveable", "SaveableType", "Offloadable"})


def policy_saves(policy, eqn) -> bool:
    """Does remat ``policy`` save the outputs of ``eqn`` (rather than recompute them)?"""
    if policy is None:
        return False
    decision = policy(eqn.primitive, *[v.aval for v in eqn.invars], **eqn.params)
    if isinstance(decision, bool):
        return decision
    return type(decision).__name__ in _SAVE_DECISIONS


# --- compat: linear_solve parameters ---
# linear_solve's const_lengths and jaxprs params are namedtuples with fields matvec, vecmat,
# solve, transpose_solve on 0.10.2 and 0.12; the transpose swaps matvec<->vecmat and
# solve<->transpose_solve.
def transposed_linear_solve_params(const_lengths, jaxprs):
    """(const_lengths, jaxprs) of the transposed solve A^T x = b."""
    n = const_lengths
    lengths = n._replace(
        matvec=n.vecmat, vecmat=n.matvec, solve=n.transpose_solve, transpose_solve=n.solve
    )
    swapped = jaxprs._replace(
        matvec=jaxprs.vecmat,
        vecmat=jaxprs.matvec,
        solve=jaxprs.transpose_solve,
        transpose_solve=jaxprs.solve,
    )
    return lengths, swapped


# --- compat: varying manual axes (shard_map with check_vma) ---
# Inside shard_map, avals record the mesh axes a value varies over.  0.10.2 and 0.12 keep
# them as aval.manual_axis_type.varying (absent outside shard_map, and on values without
# check_vma); lax.pcast(x, axes, to="varying") makes a value varying on both.
def varying_axes(aval) -> frozenset:
    """Mesh axes over which a value of type ``aval`` is varying (empty outside shard_map)."""
    mat = getattr(aval, "manual_axis_type", None)
    vma = getattr(mat, "varying", None)
    return frozenset(vma) if vma else frozenset()


def pvary(x, axes):
    """Make ``x`` varying over the mesh ``axes`` (given in a fixed order)."""
    return jax.lax.pcast(x, tuple(axes), to="varying") if axes else x


def zeros_like_aval(aval):
    """Zeros of ``aval``'s type, including (inside shard_map) the axes it varies over."""
    zeros = jax.numpy.zeros(aval.shape, aval.dtype)
    mat = getattr(aval, "manual_axis_type", None)
    vma = getattr(mat, "varying", None)
    return pvary(zeros, tuple(vma)) if vma else zeros


# --- compat: primitives that exist only in some releases ---
# New in 0.12 and absent in 0.10.2, so their rules are registered only where they exist:
#   polynomial        lax.polynomial (Horner, sum_k a_k x^k); jax.nn, lax.erf, jnp.polyval
#   log2              jnp.log2 (0.10.2 writes log(x) / log(2))
#   one_minus_square  1 - x^2, in JAX's own tanh derivative (funcgrad over jax.grad)
POLYNOMIAL_P = getattr(_primitives, "polynomial_p", None)
LOG2_P = getattr(_primitives, "log2_p", None)
ONE_MINUS_SQUARE_P = getattr(_primitives, "one_minus_square_p", None)


# --- compat: cholesky's cotangent convention ---
# JAX differentiates cholesky_p "as given" (no symmetrising; jnp.linalg symmetrises before the
# primitive).  On 0.10.2 the input's cotangent is the full matrix A_bar; on 0.12 it is
# folded onto the Hermitian lower triangle the factorisation reads:
# tril(A_bar, -1) + tril(A_bar^H, -1) + Re(diag A_bar), upper triangle zero.  0.11.x is not
# checked here: the flag follows 0.12's convention from 0.12 on.
CHOLESKY_FOLDS_COTANGENT = jax.__version_info__ >= (0, 12)


# --- compat: weak types ---
# A weakly typed value (a Python scalar's type, ``~float32[]``) is made with the
# ``convert_element_type`` primitive's ``weak_type=True``; ``jax.lax.convert_element_type``
# always makes a strong type. JAX 0.10.2 and 0.12.0.1 both take exactly the parameters
# ``new_dtype``, ``weak_type`` and ``sharding`` (None keeps the operand's sharding).
def as_weak(x):
    """``x`` with the same value and dtype, weakly typed (as JAX types a Python scalar)."""
    aval = jax.typeof(x)
    if getattr(aval, "weak_type", False):
        return x
    return _primitives.convert_element_type_p.bind(
        x, new_dtype=np.dtype(aval.dtype), weak_type=True, sharding=None
    )


# --- compat: cheap XLA compile options (the fuzzer's compiles) ---
# The fuzzer compiles one new program per case, so XLA's compile time dominates it. These
# options cut the CPU backend's compile time about 8x on JAX 0.10.2 without changing results
# beyond rounding (no fast math). JAX 0.12's XLA rejects ``xla_cpu_use_fusion_emitters``
# ("No such compile option"); unknown options are dropped once, by probing a tiny compile.
_FAST_COMPILE_WANTED = {
    "xla_cpu_use_fusion_emitters": False,
    "xla_backend_optimization_level": 0,
    "xla_cpu_parallel_codegen_split_count": 1,
}
_fast_compile_accepted: dict | None = None


def fast_compile_options() -> dict:
    """The subset of the cheap-compile options this JAX's XLA accepts (probed once)."""
    global _fast_compile_accepted
    if _fast_compile_accepted is None:
        lowered = jax.jit(jax.numpy.negative).lower(np.zeros((), np.float32))
        accepted = {}
        for key, value in _FAST_COMPILE_WANTED.items():
            try:
                lowered.compile(compiler_options={**accepted, key: value})
            except Exception:  # noqa: BLE001  (an option this XLA does not know)
                continue
            accepted[key] = value
        _fast_compile_accepted = accepted
    return dict(_fast_compile_accepted)
