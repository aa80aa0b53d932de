"""The VJP table: primitive -> hand-written rule, plus the explicit non-differentiable list.

Rule contract (see funcgrad/rules/README.md):

    rule(g, ans, *primals, **params) -> tuple[cotangent | None, ...]

``g`` is the output cotangent (a list, possibly holding ``None``, for multiple-result
primitives), ``ans`` the primal output, ``primals`` the input values (literals included),
``params`` the equation's parameters under their jaxpr names.  One entry per input;
``None`` means "no cotangent" (a symbolic zero).

A rule registered with ``forward=`` (nested jaxprs: scan, cond, custom_jvp, ...) keeps its
own residuals: the forward walk calls ``outs, res = forward(active, *primals, **params)``
where ``active`` says which inputs need a cotangent, and the backward walk then passes
``res`` in the ``ans`` slot of the rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jax.extend.core import Primitive

from . import _jax_compat as compat

Rule = Callable[..., tuple[Any, ...]]


@dataclasses.dataclass(frozen=True)
class Entry:
    rule: Rule
    forward: Callable[..., tuple[Any, Any]] | None = None


VJP_RULES: dict[Primitive, Entry] = {}
# Primitives with no derivative (comparisons, rounding, integer ops, ...): their outputs carry
# no cotangent, so nothing flows back through them.  Listed explicitly; an unlisted,
# unregistered primitive is an error, never a silent zero.
NONDIFF: set[Primitive] = set()
# Primitives that JAX does not export under jax.extend.core.primitives are matched by name.
_BY_NAME: dict[str, Entry] = {}
_NONDIFF_BY_NAME: set[str] = set()


def register_vjp(primitive: Primitive | str, *, forward=None) -> Callable[[Rule], Rule]:
    """Register ``rule`` as the VJP of ``primitive`` (a Primitive object, or its name).

    Example::

        @funcgrad.register_vjp(my_prim)
        def my_prim_vjp(g, ans, x, *, scale):
            return (g * scale,)
    """

    def decorate(rule: Rule) -> Rule:
        if not callable(rule):
            raise TypeError(f"register_vjp expected a callable rule, got {rule!r}")
        entry = Entry(rule, forward)
        if isinstance(primitive, str):
            _BY_NAME[primitive] = entry
        elif isinstance(primitive, Primitive):
            VJP_RULES[primitive] = entry
        else:
            raise TypeError(
                f"register_vjp expected a jax.extend.core.Primitive or its name, "
                f"got {type(primitive).__name__}: {primitive!r}"
            )
        return rule

    return decorate


def register_nondiff(*primitives: Primitive | str) -> None:
    """Declare primitives whose outputs carry no derivative (e.g. comparisons, argmax)."""
    for prim in primitives:
        if isinstance(prim, str):
            _NONDIFF_BY_NAME.add(prim)
        else:
            NONDIFF.add(prim)


def call_rule(entry: Entry, primitive: Primitive, g, ans, primals, params):
    """Call ``entry``'s rule as the engine does: params normalised for this JAX and cut to
    those the rule names (a param a JAX release adds never breaks a rule)."""
    return compat.call_with_params(entry.rule, primitive, (g, ans, *primals), params)


def call_forward(entry: Entry, primitive: Primitive, active, primals, params):
    """Call ``entry``'s own forward (nested-jaxpr rules), params adapted as for the rule."""
    return compat.call_with_params(entry.forward, primitive, (active, *primals), params)


def lookup(primitive: Primitive) -> Entry | None:
    entry = VJP_RULES.get(primitive)
    return entry if entry is not None else _BY_NAME.get(primitive.name)


def is_nondiff(primitive: Primitive) -> bool:
    return primitive in NONDIFF or primitive.name in _NONDIFF_BY_NAME


def registered_primitives() -> list[str]:
    """Names of every primitive with a rule (for coverage meta-tests and docs)."""
    return sorted({p.name for p in VJP_RULES} | set(_BY_NAME))


def nondiff_primitives() -> list[str]:
    return sorted({p.name for p in NONDIFF} | _NONDIFF_BY_NAME)


# Primitives JAX registers that funcgrad deliberately has no rule for, each with the reason a
# user who reaches one is given (tests/test_upgrade_warning.py checks that every primitive the
# installed JAX registers is a rule, non-differentiable, or here).
REFUSED: dict[str, str] = {}


def _refuse(reason: str, *names: str) -> None:
    for name in names:
        REFUSED[name] = reason


_refuse(
    "jax.experimental.sparse formats are not supported; densify (x.todense()) first",
    *("bcoo_dot_general", "bcoo_dot_general_sampled", "bcoo_extract", "bcoo_fromdense"),
    *("bcoo_sort_indices", "bcoo_spdot_general", "bcoo_sum_duplicates", "bcoo_todense"),
    *("bcoo_transpose", "bcsr_dot_general", "bcsr_extract", "bcsr_fromdense", "bcsr_todense"),
    *("coo_fromdense", "coo_matmat", "coo_matvec", "coo_spmm", "coo_spmv", "coo_todense"),
    *("csr_fromdense", "csr_matmat", "csr_matvec", "csr_spmm", "csr_spmv", "csr_todense"),
    *("todense", "spsolve", "broadcast_to"),
)
_refuse(
    "Pallas/Mosaic kernel primitive; give the kernel a jax.custom_vjp",
    *("pallas_call", "program_id", "num_programs", "masked_load", "masked_swap", "reciprocal"),
    *("semaphore_read", "semaphore_signal", "semaphore_wait", "run_scoped", "run_state"),
    *("core_map", "multiple_of", "delay", "get_global", "with_memory_space_constraint"),
)
_refuse(
    "mutable array refs and JAX state are not supported",
    *("get", "swap", "addupdate", "new_ref", "empty_ref", "free_ref", "freeze"),
    *("accum_grad_in_ref", "box_get", "box_set", "new_box", "new_log", "log_extend"),
    "log_read",
)
_refuse(
    "opaque host or foreign code has no derivative funcgrad can know; wrap it in a jax.custom_vjp",
    "pure_callback",
    "io_callback",
    "ffi_call",
    "custom_partitioning",
    "composite",
)
_refuse(
    "internal to JAX's own transformations (autodiff, export, shape polymorphism, remat "
    "scheduling); never in a traced user program",
    *("create_linear", "linear_call", "custom_jvp_call_jaxpr", "remat_opt"),
    *("call_hi_primitive", "call_hi_primitive_linearized", "dce_sink", "tie", "unreachable"),
    *("call_exported", "shape_assertion", "dimension_size", "dim_as_value", "platform_index"),
    *("jaxpr_call", "call", "custom_vmap_call", "empty", "empty2", "zeros_like"),
    *("from_edtype", "to_edtype", "check", "stage", "xla_metadata_call", "xla_metadata_value"),
)
if not compat.CLOSED_CALL_IS_EVAL_JAXPR:  # on 0.12 it is closed_call, which has a rule
    _refuse("internal to JAX's own evaluation; never in a traced user program", "eval_jaxpr")
_refuse(
    "takes and returns only integers or PRNG keys, so it is never on a differentiated path",
    *("iota_2x32_shape", "threefry4x32", "philox2x32", "philox4x32", "lu_pivots_to_permutation"),
)
_refuse(
    "GPU-only fused kernel (cuDNN); the XLA implementation of the same function is covered",
    *("dot_product_attention_fwd", "dot_product_attention_bwd", "cudnn_fusion", "scaled_dot"),
    *("dot_product_attention_fwd_wrapper", "dot_product_attention_bwd_wrapper"),
    *("dot_product_attention_fp8_fwd", "dot_product_attention_fp8_bwd", "scaled_matmul"),
    *("dot_product_attention_fp8_fwd_wrapper", "dot_product_attention_fp8_bwd_wrapper"),
    "scaled_matmul_wrapper",
)
_refuse(
    "asynchronous (start/done) or point-to-point form of a collective, or an unreduced-"
    "sharding cast; differentiate the synchronous collective instead",
    *("all_gather_start", "all_gather_done", "all_to_all_start", "all_to_all_done"),
    *("ppermute_start", "ppermute_done", "psum_start", "psum_done", "psum_invariant_start"),
    *("reduce_scatter_start", "reduce_scatter_done", "pbroadcast_start", "pbroadcast_done"),
    *("unreduced_psum", "unreduced_psum_start", "unreduced_pmax", "unreduced_pmin"),
    *("unreduced_reduce_scatter", "unreduced_reduce_scatter_start", "all_gather_reduced"),
    *("all_gather_reduced_start", "reduced_vary_cast", "reduced_vary_cast_p", "preduced"),
    *("vary_unreduced_cast", "vary_unreduced_cast_p", "precv", "psend", "pbroadcast"),
    *("pbroadcast_dynamic", "ragged_all_to_all", "mpmd_map"),
)
_refuse(
    "sharding, layout or host-transfer plumbing funcgrad has no rule for yet",
    *("layout_constraint", "global_array_to_host_local_array", "relayout", "inspect_sharding"),
    *("host_local_array_to_global_array", "pin", "unpin"),
)
_refuse(
    "rare linear-algebra primitive; no rule yet",
    *("hessenberg", "householder_product", "schur", "tridiagonal", "geqrf", "geqp3", "ormqr"),
    *("cholesky_update", "symmetric_product"),
)
_refuse(
    "JAX has no derivative for it either",
    "igamma_grad_a",
    "select_and_scatter",
    "random_gamma_grad",
)
_refuse(
    "generic windowed reduction with a user computation; jax.vjp has no rule for it either "
    "(pooling uses reduce_window_sum/max/min, which are covered)",
    "reduce_window",
)
_refuse(
    "JAX differentiates only some of its operands; not covered yet",
    "regularized_incomplete_beta",
    "zeta",
)
