"""Collective VJP rules on 8 simulated CPU devices, each checked against ``jax.grad``.

Not collected by the main test run (the name does not start with ``test_``): launched by
``tests/distributed/test_distributed.py`` in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before JAX starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend import core as jcore
from jax.sharding import AxisType, Mesh
from jax.sharding import PartitionSpec as P

import funcgrad
from funcgrad import _registry

if jax.device_count() != 8:
    raise RuntimeError(
        f"these cases need 8 devices, JAX sees {jax.device_count()}. Run them through "
        f"tests/distributed/test_distributed.py, or with "
        f"XLA_FLAGS=--xla_force_host_platform_device_count=8 in the environment."
    )

_DEVICES = np.asarray(jax.devices())
MESHES = {
    "1d": Mesh(_DEVICES, ("i",), axis_types=(AxisType.Auto,)),
    "2d": Mesh(_DEVICES.reshape(4, 2), ("i", "j"), axis_types=(AxisType.Auto,) * 2),
}
CYCLE = [(k, (k + 1) % 8) for k in range(8)]
SHIFT = [(k, k + 1) for k in range(7)]  # device 0 receives nothing, device 7 sends nothing


@dataclasses.dataclass(frozen=True)
class Case:
    """A shard_map program ``fn(x, w)``; ``prims[check_vma]``: the primitive it must contain."""

    id: str
    fn: Callable[..., Any]
    prims: dict
    out_specs: Any = P("i")
    in_specs: tuple = (P("i"), P())
    mesh: str = "1d"
    shapes: tuple = ((16, 8), (1, 8))
    # The reference when jax.vjp cannot be used on ``fn``: a program per check_vma mode computing
    # the same function, or "jacfwd" (the transpose of JAX's forward-mode Jacobian of fn).
    ref: Any = None
    axis_names: frozenset = frozenset()
    ties: bool = False  # small integers: many equal values across devices


BOTH = {True: None, False: None}


def _both(name):
    return {True: name, False: name}


def _gather_extremum(reduce, pre, to):
    def f(x, w):
        return reduce(lax.all_gather(pre(x), "i", to=to), axis=0) * w

    return f


def _identity(x):
    return x


# pmax/pmin have no JAX derivative: the reference reduces an all_gather with jnp.max/min
# (whose VJP shares ties equally), typed: the invariant gather; untyped: the varying one.
GATHER_MAX = {
    True: _gather_extremum(jnp.max, _identity, "invarying"),
    False: _gather_extremum(jnp.max, _identity, "varying"),
}
GATHER_MIN = {
    True: _gather_extremum(jnp.min, jnp.sin, "invarying"),
    False: _gather_extremum(jnp.min, jnp.sin, "varying"),
}


CASES = [
    # psum of a device-varying value: typed -> psum_invariant (VJP: pvary, g on every device)
    Case(
        "psum_varying",
        lambda x, w: lax.psum(jnp.sin(x) * w, "i"),
        {True: "psum_invariant", False: "psum"},
        out_specs=P(),
    ),
    # psum of an invariant value: typed -> pvary + psum_invariant (VJP: N * g)
    Case(
        "psum_invariant_operand",
        lambda x, w: x * lax.psum(jnp.cos(w), "i"),
        {True: "pvary", False: "psum"},
    ),
    Case(
        "psum_positional_axis",
        lambda x, w: lax.psum(jnp.sin(x) * w, ("i", 0)),
        {False: "psum"},
        out_specs=P(),
    ),
    Case(
        "pmean",
        lambda x, w: lax.pmean(x * w, "i"),
        {True: "psum_invariant", False: "psum"},
        out_specs=P(),
    ),
    Case(
        "psum_two_axes",
        lambda x, w: lax.psum(jnp.sin(x) * w, ("i", "j")),
        {True: "psum_invariant", False: "psum"},
        out_specs=P(),
        in_specs=(P("i", "j"), P()),
        mesh="2d",
        shapes=((16, 8), (1, 4)),
    ),
    Case(
        "psum_one_of_two_axes",
        lambda x, w: lax.psum(jnp.sin(x) * w, "j"),
        {True: "psum_invariant", False: "psum"},
        out_specs=P("i"),
        in_specs=(P("i", "j"), P()),
        mesh="2d",
        shapes=((16, 8), (1, 4)),
    ),
    Case(
        "psum_partial_manual",
        lambda x, w: lax.psum(jnp.sin(x) * w, "i"),
        {True: "psum_invariant", False: "psum"},
        out_specs=P(),
        mesh="2d",
        axis_names=frozenset({"i"}),
    ),
    Case(
        "pmax_ties",
        lambda x, w: lax.pmax(x, "i") * w,
        _both("pmax"),
        out_specs=P(),
        ref=GATHER_MAX,
        ties=True,
    ),
    Case(
        "pmin",
        lambda x, w: lax.pmin(jnp.sin(x), "i") * w,
        _both("pmin"),
        out_specs=P(),
        ref=GATHER_MIN,
    ),
    Case("all_gather_stack", lambda x, w: lax.all_gather(jnp.sin(x) * w, "i"), _both("all_gather")),
    Case(
        "all_gather_tiled_axis1",
        lambda x, w: lax.all_gather(x * w, "i", axis=1, tiled=True),
        _both("all_gather"),
    ),
    Case(
        "all_gather_invariant",
        lambda x, w: lax.all_gather(x * w, "i", tiled=True, to="invarying"),
        {True: "all_gather_invariant"},
        out_specs=P(),
    ),
    # Untyped all_gather_invariant: jax.grad returns 1/8 of the gradient there (JAX 0.10.2).
    # JAX 0.12 writes a plain all_gather for it without check_vma, so the row checks that.
    Case(
        "all_gather_invariant_untyped",
        lambda x, w: lax.all_gather(x * w, "i", tiled=True, to="invarying"),
        {False: "all_gather_invariant" if jax.__version_info__ < (0, 12) else "all_gather"},
        out_specs=P(),
        ref="jacfwd",
    ),
    Case(
        "reduce_scatter_tiled",
        lambda x, w: lax.psum_scatter(jnp.sin(x) * w, "i", scatter_dimension=1, tiled=True),
        _both("reduce_scatter"),
    ),
    Case(
        "reduce_scatter_untiled",
        lambda x, w: lax.psum_scatter((jnp.sin(x) * w).T, "i", scatter_dimension=0),
        _both("reduce_scatter"),
    ),
    Case(
        "ppermute_cycle", lambda x, w: lax.ppermute(jnp.sin(x) * w, "i", CYCLE), _both("ppermute")
    ),
    Case(
        "ppermute_shift", lambda x, w: lax.ppermute(jnp.sin(x) * w, "i", SHIFT), _both("ppermute")
    ),
    Case(
        "all_to_all_tiled",
        lambda x, w: lax.all_to_all(x * w, "i", 1, 0, tiled=True),
        _both("all_to_all"),
    ),
    # Untiled all_to_all: jax.vjp fails there (JAX 0.10.2 transposes to the wrong shape).
    Case(
        "all_to_all_untiled",
        lambda x, w: lax.all_to_all(jnp.sin(x) * w, "i", 1, 0),
        _both("all_to_all"),
        ref="jacfwd",
    ),
    Case("axis_index", lambda x, w: jnp.sin(x) * w * lax.axis_index("i"), _both("axis_index")),
]


def _primitive_names(jaxpr) -> set[str]:
    """Every primitive in a jaxpr, nested jaxprs (shard_map bodies, jit) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            inner = param.jaxpr if isinstance(param, jcore.ClosedJaxpr) else param
            if isinstance(inner, jcore.Jaxpr):
                names |= _primitive_names(inner)
    return names


def _arg(rng, shape, ties):
    if ties:
        return jnp.asarray(rng.integers(0, 3, size=shape), jnp.float64)
    return jnp.asarray(rng.normal(size=shape))


def _program(case, fn, check_vma):
    mesh = MESHES[case.mesh]
    return jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=case.in_specs,
        out_specs=case.out_specs,
        axis_names=set(case.axis_names or mesh.axis_names),
        check_vma=check_vma,
    )


PARAMS = [
    pytest.param(c, v, id=f"{c.id}-{'vma' if v else 'novma'}") for c in CASES for v in c.prims
]


def _reference_vjp(case, check_vma, f, args, ct):
    if case.ref == "jacfwd":
        jac = jax.jacfwd(f, argnums=tuple(range(len(args))))(*args)
        return tuple(jnp.tensordot(ct, j, axes=ct.ndim) for j in jac)
    ref = _program(case, case.ref[check_vma], check_vma) if case.ref else f
    return jax.vjp(ref, *args)[1](ct)


@pytest.mark.parametrize("case,check_vma", PARAMS)
def test_collective_vjp_matches_jax(case, check_vma):
    """funcgrad.vjp with a random cotangent == jax.vjp, on the same shard_map program."""
    rng = np.random.default_rng(abs(hash(case.id)) % 2**32)
    args = [_arg(rng, s, case.ties) for s in case.shapes]
    f = _program(case, case.fn, check_vma)
    assert case.prims[check_vma] in _primitive_names(jax.make_jaxpr(f)(*args).jaxpr)
    out = jax.eval_shape(f, *args)
    ct = jnp.asarray(rng.normal(size=out.shape))
    ours = jax.jit(lambda *a: funcgrad.vjp(f, *a)[1](ct))(*args)
    theirs = jax.jit(lambda *a: _reference_vjp(case, check_vma, f, a, ct))(*args)
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"input {k}")


def test_psum_replicated_versus_per_device_semantics():
    """The cases that make psum's transpose subtle, against their closed forms.

    y = sum_d x_d * w over 8 devices: a per-device x_d gets w (no sum), the replicated w
    gets sum_d x_d (a sum), and psum(w) of a replicated w has derivative 8, in both modes.
    """
    mesh = MESHES["1d"]
    x, w = jnp.arange(8.0) + 1.0, jnp.asarray(0.5)
    for check_vma in (True, False):
        f = jax.shard_map(
            lambda x, w: lax.psum(x * w, "i") + lax.psum(w, "i"),
            mesh=mesh,
            in_specs=(P("i"), P()),
            out_specs=P(),
            check_vma=check_vma,
        )
        gx, gw = jax.jit(funcgrad.grad(lambda x, w, f=f: f(x, w)[0], (0, 1)))(x, w)
        np.testing.assert_allclose(gx, jnp.full(8, 0.5), err_msg=f"check_vma={check_vma}")
        np.testing.assert_allclose(gw, jnp.sum(x) + 8.0, err_msg=f"check_vma={check_vma}")


def test_unused_output_integer_input_and_nesting():
    """Outputs without a cotangent, an integer input, jit inside and outside shard_map."""
    mesh = MESHES["1d"]

    @jax.jit
    def inner(x, w):
        return jnp.tanh(x * w)

    def body(x, w, k):
        h = inner(x, w) * k.astype(x.dtype)
        return (
            lax.psum(jnp.sum(h**2), "i"),
            lax.all_gather(h, "i", tiled=True, to="invarying"),
            k + 1,
        )

    for check_vma in (True, False):
        f = jax.shard_map(
            body,
            mesh=mesh,
            in_specs=(P("i"), P(), P("i")),
            out_specs=(P(), P(), P("i")),
            check_vma=check_vma,
        )

        def loss(x, w, k, f=f):
            return f(x, w, k)[0]

        rng = np.random.default_rng(1)
        x, w = jnp.asarray(rng.normal(size=(16, 3))), jnp.asarray(rng.normal(size=(1, 3)))
        k = jnp.arange(16, dtype=jnp.int32).reshape(16, 1)
        ours = jax.jit(funcgrad.grad(loss, (0, 1)))(x, w, k)
        theirs = jax.jit(jax.grad(loss, (0, 1)))(x, w, k)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_second_order_through_shard_map():
    """funcgrad's backward pass (itself a shard_map) is differentiated again by funcgrad."""
    mesh = MESHES["1d"]
    f = jax.shard_map(
        lambda x, w: lax.psum(jnp.sum(jnp.sin(x * w) ** 2), "i"),
        mesh=mesh,
        in_specs=(P("i"), P()),
        out_specs=P(),
    )
    x, w = jnp.linspace(-1.0, 1.0, 16), jnp.asarray(0.7)

    def gw(w, grad):
        return grad(f, 1)(x, w)

    ours = jax.jit(funcgrad.grad(lambda w: gw(w, funcgrad.grad)))(w)
    theirs = jax.jit(jax.grad(lambda w: gw(w, jax.grad)))(w)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_collective_without_rule_raises_naming_it():
    """pbroadcast has no rule (nor a CPU lowering): a clear error, never a zero gradient."""
    f = jax.shard_map(
        lambda x: lax.pbroadcast(jnp.sin(x), "i", 2),
        mesh=MESHES["1d"],
        in_specs=P("i"),
        out_specs=P("i"),
        check_vma=False,
    )
    with pytest.raises(funcgrad.MissingRuleError, match="'pbroadcast'") as info:
        jax.jit(funcgrad.grad(lambda x: jnp.sum(f(x))))(jnp.ones(16))
    assert "register_vjp" in str(info.value)


def test_every_collective_rule_has_a_case():
    """A rule added to funcgrad/rules/collectives.py without a test row fails here."""
    module = "funcgrad.rules.collectives"
    by_obj = {k.name for k, e in _registry.VJP_RULES.items() if e.rule.__module__ == module}
    by_name = {k for k, e in _registry._BY_NAME.items() if e.rule.__module__ == module}
    tested = {name for c in CASES for name in c.prims.values()}
    # shard_map, sharding_constraint and reshard are tested in _multidevice_training.py.
    tested |= {"shard_map", "sharding_constraint", "reshard"}
    assert (by_obj | by_name) - tested == set()


@pytest.mark.parametrize("check_vma", [True, False])
def test_scan_and_cond_inside_shard_map(check_vma):
    """Loops and branches in the body; with check_vma the carry is made device-varying."""

    def body(x, w):
        def step(c, xi):
            c = jnp.tanh(c * w + xi)
            c = lax.cond(jnp.sum(xi) > 0, lambda c: c * 2.0, jnp.sin, c)
            return c, c

        init = jnp.zeros(3)
        if check_vma:
            init = lax.pcast(init, ("i",), to="varying")
        _, ys = lax.scan(step, init, x)
        return lax.psum(jnp.sum(ys**2), "i")

    f = jax.shard_map(
        body, mesh=MESHES["1d"], in_specs=(P("i"), P()), out_specs=P(), check_vma=check_vma
    )
    x, w = jnp.linspace(-1.0, 1.0, 48).reshape(16, 3), jnp.asarray(0.3)
    ours = jax.jit(funcgrad.grad(f, (0, 1)))(x, w)
    for a, b in zip(ours, jax.jit(jax.grad(f, (0, 1)))(x, w), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
