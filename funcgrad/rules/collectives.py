"""Rules for collectives, varying-manual-axes casts, shard_map and sharding annotations.

Inside ``shard_map`` every value lives once per device. With ``check_vma=True`` (the default)
each value's type says over which mesh axes it *varies* (``f32[2]{V:i}``) and JAX writes the
casts between the two kinds of value into the jaxpr:

    pvary           invariant -> varying copy on every device     VJP: psum of the cotangents
    psum_invariant  varying   -> invariant sum                    VJP: pvary (each device gets g)

so ``psum`` of a varying ``x`` is ``psum_invariant x`` (gradient: ``g`` on every device), and
``psum`` of an invariant ``x`` is ``psum_invariant (pvary x)`` (gradient: ``N * g``).  With
``check_vma=False`` values carry no such type, ``psum`` is the untyped ``psum`` primitive, and
its cotangent is summed again (every device's copy of the result received its own cotangent);
the ``shard_map`` rule then divides the cotangent of an output that does not mention an axis
by that axis' size, so a replicated output is counted once.  Both conventions are JAX's: the
tests compare each rule with ``jax.grad`` of the same program on 8 devices, in both modes.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import primitives as p
from jax.sharding import PartitionSpec as P

from .. import _jax_compat as compat
from .._backward import Residual, backward, differentiable, forward, instantiate
from .._backward import is_var as _is_var
from .._registry import register_nondiff, register_vjp

register_nondiff(p.axis_index_p)


def varying_axes(x) -> frozenset:
    """Mesh axes over which ``x`` is typed as varying (empty outside shard_map/check_vma)."""
    return compat.varying_axes(jax.typeof(x))


def _names(axes) -> tuple:
    """The named (non-positional) axes of a collective's ``axes``/``axis_name`` param."""
    axes = axes if isinstance(axes, (tuple, list)) else (axes,)
    return tuple(a for a in axes if not isinstance(a, int))


def _pvary(g, axes):
    """Make ``g`` varying over ``axes`` (a no-op where it already is, or without check_vma)."""
    missing = tuple(a for a in _names(axes) if a not in varying_axes(g))
    return compat.pvary(g, missing)


# ---------------------------------------------------------------- reductions across devices


@register_vjp(p.psum_p)
def psum_vjp(g, ans, x, *, axes, axis_index_groups):
    """Untyped psum (check_vma=False): each device's copy of the sum got its own cotangent,
    so the cotangent is summed again; positional axes broadcast back like reduce_sum."""
    del ans
    positional = tuple(a for a in axes if isinstance(a, int))
    if positional:
        kept = [d for d in range(jnp.ndim(x)) if d not in positional]
        g = lax.broadcast_in_dim(g, jnp.shape(x), kept)
    named = _names(axes)
    if named:
        g = p.psum_p.bind(g, axes=named, axis_index_groups=axis_index_groups)
    return (g,)


@register_vjp(compat.PSUM_INVARIANT)
def psum_invariant_vjp(g, ans, x, *, axes):
    """x varying -> one invariant sum: every device's x_d gets the same cotangent g."""
    del ans, x
    return (_pvary(g, axes),)


@register_vjp(compat.PVARY)
def pvary_vjp(g, ans, x, *, axes):
    """x invariant -> one copy per device: x's cotangent is the sum over the copies."""
    del ans, x
    return (lax.psum(g, axes),)


def _pextremum_vjp(g, ans, x, *, axes, axis_index_groups):
    """g flows to the devices holding the extremum; ties share it equally (as reduce_max)."""
    untyped = tuple(a for a in _names(axes) if a not in varying_axes(x))
    if untyped:  # check_vma=False: every device's copy of the result got a cotangent
        g = p.psum_p.bind(g, axes=untyped, axis_index_groups=axis_index_groups)
    hit = (x == ans).astype(g.dtype)
    count = lax.psum(hit, _names(axes), axis_index_groups=axis_index_groups)
    return (g * hit / count,)


register_vjp(p.pmax_p)(_pextremum_vjp)
register_vjp(p.pmin_p)(_pextremum_vjp)


# ---------------------------------------------------------------- gather / scatter / permute


@register_vjp(p.all_gather_p)
def all_gather_vjp(
    g, ans, x, *, all_gather_dimension, axis_name, axis_index_groups, axis_size, tiled
):
    """Every device's gathered copy holds x_d at block d: x_d's cotangent is the sum over
    devices of block d of their cotangents, i.e. a reduce-scatter."""
    del ans, x, axis_size
    ct = lax.psum_scatter(
        _pvary(g, axis_name),
        axis_name,
        scatter_dimension=all_gather_dimension,
        axis_index_groups=axis_index_groups,
        tiled=tiled,
    )
    return (ct,)


@register_vjp(compat.ALL_GATHER_INVARIANT)
def all_gather_invariant_vjp(g, ans, x, *, all_gather_dimension, axis_name, axis_size, tiled):
    """One invariant gathered array: x_d's cotangent is block d of g (no communication).

    Without check_vma every device's copy of the result received its own cotangent, so
    they are summed first (``jax.grad`` omits that sum and returns 1/N of the gradient)."""
    del ans, axis_size
    untyped = tuple(a for a in _names(axis_name) if a not in varying_axes(x))
    if untyped:
        g = p.psum_p.bind(g, axes=untyped, axis_index_groups=None)
    size = jnp.shape(x)[all_gather_dimension] if tiled else 1
    start = lax.axis_index(axis_name) * size
    block = lax.dynamic_slice_in_dim(g, start, size, axis=all_gather_dimension)
    return (block if tiled else lax.squeeze(block, (all_gather_dimension,)),)


@register_vjp(compat.REDUCE_SCATTER)
def reduce_scatter_vjp(
    g, ans, x, *, scatter_dimension, axis_name, axis_index_groups, axis_size, tiled
):
    """Device d keeps block d of the sum: every x_e's block d gets device d's cotangent."""
    del ans, x, axis_size
    ct = lax.all_gather(
        g, axis_name, axis=scatter_dimension, axis_index_groups=axis_index_groups, tiled=tiled
    )
    return (ct,)


@register_vjp(p.ppermute_p)
def ppermute_vjp(g, ans, x, *, axis_name, perm):
    """Sending x from s to d is undone by sending the cotangent from d back to s."""
    del ans, x
    return (lax.ppermute(g, axis_name, perm=[(dst, src) for src, dst in perm]),)


@register_vjp(p.all_to_all_p)
def all_to_all_vjp(g, ans, x, *, split_axis, concat_axis, axis_name, axis_index_groups, tiled):
    """all_to_all is a permutation of blocks; its inverse swaps split and concat axes."""
    del ans, x
    ct = p.all_to_all_p.bind(
        g,
        split_axis=concat_axis,
        concat_axis=split_axis,
        axis_name=axis_name,
        axis_index_groups=axis_index_groups,
        tiled=tiled,
    )
    return (ct,)


# ---------------------------------------------------------------- sharding annotations


@register_vjp(p.sharding_constraint_p)
def sharding_constraint_vjp(g, ans, x, **params):
    """The identity on values; the cotangent keeps the same constraint (same sharding,
    layout, unconstrained dims), so XLA lays out the backward pass like the forward."""
    del ans, x
    return (p.sharding_constraint_p.bind(g, **params),)


@register_vjp(compat.RESHARD)
def reshard_vjp(g, ans, x, *, dst_sharding, concrete_mesh):
    """Identity on values: the cotangent goes back to the input's sharding."""
    del ans, dst_sharding, concrete_mesh
    src = jax.typeof(x).sharding
    with jax.sharding.use_abstract_mesh(src.mesh):
        return (jax.sharding.reshard(g, src),)


# ---------------------------------------------------------------- shard_map


def _manual_axes(mesh, newly_manual_axes) -> tuple:
    return tuple(a for a in mesh.axis_names if a in newly_manual_axes)


def _mentioned(spec) -> set:
    names = set()
    for part in spec:
        if part is not None:
            names.update(part if isinstance(part, tuple) else (part,))
    return names


def _unmentioned(mesh, manual, spec) -> tuple:
    return tuple(a for a in manual if a not in _mentioned(spec))


def _res_key(axes) -> str:
    return ",".join(axes)


def _res_specs(manual) -> dict:
    """One group of residuals per set of axes they vary over: P(those axes) on a new axis 0."""
    subsets = (c for n in range(len(manual) + 1) for c in itertools.combinations(manual, n))
    return {_res_key(s): (P(s) if s else P()) for s in subsets}


def _needed(jaxpr, tape):
    """The tape restricted to what the backward walk reads: inputs and outputs of every
    equation that will receive a cotangent (and nested rules' own residuals).

    Not the engine's liveness (funcgrad/_liveness.py), on purpose: that hands a rule a
    shape-and-dtype stand-in for a value it does not read, and collective rules read the
    *type* of values they do not read (which mesh axes ``x`` varies over decides whether
    ``all_gather_invariant``'s cotangent is summed again); with the stand-in, that
    gradient comes out 8 times too large on 8 devices (tests/distributed, check_vma=True).
    """
    keep = set()
    for i, eqn in enumerate(jaxpr.eqns):
        if any(_is_var(v) and v in tape.active for v in eqn.outvars):
            keep.update(v for v in eqn.invars if _is_var(v))
            if i not in tape.residuals:
                keep.update(v for v in eqn.outvars if _is_var(v))
    env = {v: tape.env[v] for v in keep}
    return type(tape)(env, tape.active, tape.residuals)


def _shard_map_forward(
    active, *args, jaxpr, mesh, in_specs, out_specs, check_vma, newly_manual_axes
):
    """Run funcgrad's forward walk over the body under the same shard_map. The residuals
    leave it per device, grouped by the axes they vary over (so they keep their type)."""
    if jaxpr.constvars:
        raise NotImplementedError(
            f"funcgrad's shard_map rule expects a body without constvars, got "
            f"{len(jaxpr.constvars)}; please report this with the program that produced it."
        )
    manual = _manual_axes(mesh, newly_manual_axes)
    specs = _res_specs(manual)
    store = {}

    def body(*xs):
        outs, tape = forward(jaxpr, (), xs, active)
        leaves, store["treedef"] = jax.tree.flatten(_needed(jaxpr, tape))
        groups = {k: [] for k in specs}
        where = []
        for leaf in leaves:
            axes = tuple(a for a in manual if a in varying_axes(leaf)) if check_vma else manual
            where.append((_res_key(axes), len(groups[_res_key(axes)])))
            groups[_res_key(axes)].append(jnp.expand_dims(leaf, 0))
        store["where"] = tuple(where)
        return tuple(outs), groups

    run = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=tuple(in_specs),
        out_specs=(tuple(out_specs), specs),
        axis_names=set(newly_manual_axes),
        check_vma=check_vma,
    )
    outs, groups = run(*args)
    static = (store["treedef"], store["where"], tuple(active))
    return list(outs), Residual(static, groups)


@register_vjp(compat.SHARD_MAP, forward=_shard_map_forward)
def shard_map_vjp(g, res, *args, jaxpr, mesh, in_specs, out_specs, check_vma, newly_manual_axes):
    """The backward walk over the body, itself run under shard_map: output cotangents come in
    with the outputs' specs, input cotangents leave with the inputs' specs."""
    del args
    treedef, where, active = res.static
    manual = _manual_axes(mesh, newly_manual_axes)
    present = [k for k, c in enumerate(g) if c is not None]
    cts = []
    for k in present:
        c = g[k]
        if not check_vma:  # an untyped output not mentioning an axis is one replicated value
            c = c / math.prod(mesh.shape[a] for a in _unmentioned(mesh, manual, out_specs[k]))
        cts.append(c)
    wanted = [
        i
        for i, (a, v) in enumerate(zip(active, jaxpr.invars, strict=True))
        if a and differentiable(v.aval)
    ]
    if not wanted:
        return (None,) * len(in_specs)

    def body(groups, cts):
        leaves = [groups[key][j][0] for key, j in where]
        tape = jax.tree.unflatten(treedef, leaves)
        cts_out = [None] * len(jaxpr.outvars)
        for k, c in zip(present, cts, strict=True):
            cts_out[k] = c
        cts_in = backward(jaxpr, tape, cts_out)
        outs = []
        for i in wanted:
            c = instantiate(cts_in[i], jaxpr.invars[i].aval)
            unmentioned = _unmentioned(mesh, manual, in_specs[i])
            if not check_vma and unmentioned:  # untyped replicated input: sum its copies
                c = lax.psum(c, unmentioned)
            outs.append(c)
        return tuple(outs)

    run = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(_res_specs(manual), tuple(out_specs[k] for k in present)),
        out_specs=tuple(in_specs[i] for i in wanted),
        axis_names=set(newly_manual_axes),
        check_vma=check_vma,
    )
    ct_wanted = iter(run(res.arrays, tuple(cts)))
    return tuple(next(ct_wanted) if i in wanted else None for i in range(len(in_specs)))
