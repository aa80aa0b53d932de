"""Data- and tensor-parallel training steps with funcgrad gradients on 8 simulated devices.

Launched by ``tests/distributed/test_distributed.py`` (see ``_multidevice_cases.py``).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import funcgrad
from funcgrad.parallel import (
    data_parallel_mesh,
    place_on_mesh,
    replicate,
    shard_batch,
    shard_tree,
)

if jax.device_count() != 8:
    raise RuntimeError(f"these cases need 8 devices, JAX sees {jax.device_count()}.")

D, H, HEADS, T = 16, 64, 4, 6  # model width, hidden width, attention heads, sequence length
TP_MESH = Mesh(
    np.asarray(jax.devices()).reshape(2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2
)


# ---------------------------------------------------------------- models (pure functions)


def init_mlp(key):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (D, H), jnp.float64) / np.sqrt(D),
        "b1": jnp.zeros((H,), jnp.float64),
        "w2": jax.random.normal(k2, (H, D), jnp.float64) / np.sqrt(H),
        "b2": jnp.zeros((D,), jnp.float64),
    }


MLP_SPECS = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None), "b2": P()}


def mlp(params, x):
    """x: (B, D) -> (B, D)."""
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return h @ params["w2"] + params["b2"][None, :]


def mlp_loss(params, batch):
    return jnp.mean((mlp(params, batch["x"]) - batch["y"]) ** 2)


def init_block(key):
    ks = jax.random.split(key, 6)
    n = lambda k, s: jax.random.normal(k, s, jnp.float64) / np.sqrt(s[0])  # noqa: E731
    return {
        "ln1": jnp.ones((D,), jnp.float64),
        "ln2": jnp.ones((D,), jnp.float64),
        "wq": n(ks[0], (D, D)),
        "wk": n(ks[1], (D, D)),
        "wv": n(ks[2], (D, D)),
        "wo": n(ks[3], (D, D)),
        "w1": n(ks[4], (D, H)),
        "w2": n(ks[5], (H, D)),
    }


# Megatron layout: heads and the hidden layer split along 'model', the rest replicated.
BLOCK_SPECS = {
    "ln1": P(),
    "ln2": P(),
    "wq": P(None, "model"),
    "wk": P(None, "model"),
    "wv": P(None, "model"),
    "wo": P("model", None),
    "w1": P(None, "model"),
    "w2": P("model", None),
}


def _layer_norm(x, scale):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * scale[None, None, :]


def _heads(x, w):
    """(B, T, D) @ (D, D) -> (B, T, HEADS, D // HEADS), heads constrained to 'model'."""
    b, t, _ = x.shape
    y = (x @ w).reshape(b, t, HEADS, D // HEADS)
    return lax.with_sharding_constraint(y, NamedSharding(TP_MESH, P("data", None, "model")))


def block(params, x):
    """A pre-norm causal transformer block. x: (B, T, D) -> (B, T, D)."""
    b, t, _ = x.shape
    h = _layer_norm(x, params["ln1"])
    q, k, v = (_heads(h, params[n]) for n in ("wq", "wk", "wv"))
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(D // HEADS)
    causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
    attn = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
    o = jnp.einsum("bhts,bshd->bthd", attn, v).reshape(b, t, D)
    x = x + o @ params["wo"]
    h = _layer_norm(x, params["ln2"])
    return x + jnp.tanh(h @ params["w1"]) @ params["w2"]


def block_loss(params, batch):
    return jnp.mean((block(params, batch["x"]) - batch["y"]) ** 2)


def _batch(key, shape):
    kx, ky = jax.random.split(key)
    return {
        "x": jax.random.normal(kx, shape, jnp.float64),
        "y": jax.random.normal(ky, shape, jnp.float64),
    }


# ---------------------------------------------------------------- helpers


def _train_step(loss, grad_transform, opt):
    @jax.jit
    def step(params, state, batch):
        value, grads = grad_transform(loss)(params, batch)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value, grads

    return step


def _assert_trees_close(a, b, rtol=1e-10, atol=1e-12, what=""):
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_allclose(
            x, y, rtol=rtol, atol=atol, err_msg=f"{what}{jax.tree_util.keystr(path)}"
        )


def _collectives(hlo: str) -> dict:
    ops = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
    return {op: len(re.findall(rf" {op}(?:-start)?\(", hlo)) for op in ops}


def _run_steps(loss, params, batches, n_steps=3):
    """n steps with funcgrad and with jax.grad from the same start: each run's compiled step
    and its trajectory of (loss, grads, params)."""
    opt = optax.adam(1e-2)
    runs = []
    for transform in (funcgrad.value_and_grad, jax.value_and_grad):
        state = opt.init(params)
        step = _train_step(loss, transform, opt).lower(params, state, batches[0]).compile()
        p, traj = params, []
        for k in range(n_steps):
            p, state, value, grads = step(p, state, batches[k])
            traj.append((value, grads, p))
        runs.append((step, traj))
    return runs


def _check_tensor_parallel(loss, params, specs, batch_shape, full_shapes):
    params = shard_tree(params, TP_MESH, specs)
    keys = jax.random.split(jax.random.key(1), 3)
    batches = [shard_batch(_batch(k, batch_shape), TP_MESH) for k in keys]
    (compiled, ours), (theirs_compiled, theirs) = _run_steps(loss, params, batches)
    for k, ((v1, g1, p1), (v2, g2, p2)) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(v1, v2, rtol=1e-12, err_msg=f"loss at step {k}")
        _assert_trees_close(g1, g2, what=f"grad step {k} ")
        _assert_trees_close(p1, p2, what=f"params step {k} ")
    for name, spec in specs.items():  # gradients come out laid out like their weights
        grad = ours[0][1][name]
        assert grad.sharding.is_equivalent_to(NamedSharding(TP_MESH, spec), grad.ndim), name
    hlo = compiled.as_text()
    assert _collectives(hlo)["all-reduce"] > 0, _collectives(hlo)
    assert _collectives(hlo) == _collectives(theirs_compiled.as_text())
    for shape in full_shapes:  # a sharded weight never appears whole on one device
        assert f"f64[{','.join(map(str, shape))}]" not in hlo, shape
    full_bytes = sum(x.size * 8 for x in jax.tree.leaves(params))
    local_bytes = sum(x.addressable_shards[0].data.size * 8 for x in jax.tree.leaves(params))
    args_bytes = compiled.memory_analysis().argument_size_in_bytes
    # params + adam's two moments + step count + the batch shard, all per device
    assert args_bytes < 3 * local_bytes + 8 * np.prod(batch_shape) + 1024, (args_bytes, local_bytes)
    assert 3 * local_bytes < full_bytes * 3 / 2


# ---------------------------------------------------------------- tests


def test_data_parallel_jit_matches_single_device():
    """Batch sharded over 8 devices, parameters replicated: same value and gradients as on
    one device, and XLA inserts the gradient all-reduce into funcgrad's backward pass."""
    mesh = data_parallel_mesh()
    params = init_mlp(jax.random.key(0))
    batch = _batch(jax.random.key(2), (32, D))
    step = jax.jit(funcgrad.value_and_grad(mlp_loss))
    v1, g1 = step(params, batch)  # one device
    sharded = (replicate(params, mesh), shard_batch(batch, mesh))
    v8, g8 = step(*sharded)
    np.testing.assert_allclose(v8, v1, rtol=1e-12)
    _assert_trees_close(g8, g1, rtol=1e-11)
    _assert_trees_close(g8, jax.jit(jax.grad(mlp_loss))(*sharded), rtol=1e-11)
    assert g8["w1"].sharding.is_fully_replicated
    ours = _collectives(step.lower(*sharded).compile().as_text())
    theirs = _collectives(jax.jit(jax.value_and_grad(mlp_loss)).lower(*sharded).compile().as_text())
    assert ours["all-reduce"] > 0
    assert ours == theirs  # partitioned exactly like jax.grad's program


def test_tensor_parallel_mlp_matches_jax_grad_step_for_step():
    _check_tensor_parallel(
        mlp_loss, init_mlp(jax.random.key(0)), MLP_SPECS, (8, D), [(D, H), (H, D)]
    )


def test_transformer_block_tensor_parallel_matches_jax_grad_step_for_step():
    params = init_block(jax.random.key(3))
    jaxpr = jax.make_jaxpr(funcgrad.grad(block_loss))(params, _batch(jax.random.key(4), (4, T, D)))
    n_constraints = sum(e.primitive.name == "sharding_constraint" for e in jaxpr.jaxpr.eqns)
    assert n_constraints == 6  # three in the forward pass, kept on their three cotangents
    _check_tensor_parallel(block_loss, params, BLOCK_SPECS, (4, T, D), [(D, H), (H, D)])


def test_sharding_constraint_rule_keeps_constraint_on_cotangent():
    sharding = NamedSharding(TP_MESH, P("data", "model"))

    def loss(w, x):
        return jnp.sum(jnp.sin(lax.with_sharding_constraint(x * w, sharding)) ** 2)

    w, x = jnp.linspace(0.1, 1.0, 8)[None, :], jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)
    eqns = [
        e
        for e in jax.make_jaxpr(funcgrad.grad(loss, (0, 1)))(w, x).jaxpr.eqns
        if e.primitive.name == "sharding_constraint"
    ]
    assert len(eqns) == 2 and eqns[0].params == eqns[1].params
    for a, b in zip(
        jax.jit(funcgrad.grad(loss, (0, 1)))(w, x), jax.grad(loss, (0, 1))(w, x), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_reshard_on_explicit_mesh():
    """jax.make_mesh's default axes are Explicit; reshard's cotangent goes back home."""
    mesh = jax.make_mesh((8,), ("i",), axis_types=(AxisType.Explicit,))
    x = jax.device_put(jnp.linspace(-1.0, 1.0, 32).reshape(16, 2), NamedSharding(mesh, P("i")))
    w = jax.device_put(jnp.asarray([[0.5, -0.3]]), NamedSharding(mesh, P()))

    def loss(w, x):
        return jnp.sum(jnp.sin(jax.sharding.reshard(x * w, P())))

    with jax.set_mesh(mesh):
        ours = jax.jit(funcgrad.grad(loss, (0, 1)))(w, x)
        theirs = jax.jit(jax.grad(loss, (0, 1)))(w, x)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
        assert a.sharding.spec == b.sharding.spec
    assert ours[1].sharding.spec == P("i", None)


def _shard_map_step(loss, mesh, grad_transform, per_device_params):
    """Hand-written data parallelism: local value and gradient, then pmean across devices."""

    def local(params, batch):
        if per_device_params:  # a per-device copy, so the local gradient is not summed
            params = jax.tree.map(lambda w: lax.pcast(w, "data", to="varying"), params)
        value, grads = grad_transform(loss)(params, batch)
        return lax.pmean(value, "data"), jax.tree.map(lambda g: lax.pmean(g, "data"), grads)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P(), P())))


def test_shard_map_data_parallel_step_matches_jit_step():
    mesh = data_parallel_mesh()
    params = replicate(init_mlp(jax.random.key(0)), mesh)
    batch = shard_batch(_batch(jax.random.key(5), (32, D)), mesh)
    v_jit, g_jit = jax.jit(funcgrad.value_and_grad(mlp_loss))(params, batch)
    v_sm, g_sm = _shard_map_step(mlp_loss, mesh, funcgrad.value_and_grad, True)(params, batch)
    np.testing.assert_allclose(v_sm, v_jit, rtol=1e-12)
    _assert_trees_close(g_sm, g_jit, rtol=1e-11)
    # Replicated (invariant) parameters: pvary's transpose already sums the local gradients
    # over the 8 devices, so a further pmean leaves 8x the mean gradient -- as with jax.grad.
    _, g_inv = _shard_map_step(mlp_loss, mesh, funcgrad.value_and_grad, False)(params, batch)
    _, g_inv_jax = _shard_map_step(mlp_loss, mesh, jax.value_and_grad, False)(params, batch)
    _assert_trees_close(g_inv, g_inv_jax, rtol=1e-11)
    _assert_trees_close(g_inv, jax.tree.map(lambda g: 8 * g, g_jit), rtol=1e-11)


def test_parallel_helpers():
    mesh = data_parallel_mesh(4)
    assert mesh.shape == {"data": 4}
    with pytest.raises(ValueError, match=r"leading dimension must be divisible by the 4"):
        shard_batch({"x": jnp.ones((10, 2))}, mesh)
    with pytest.raises(ValueError, match=r"not 'batch'"):
        shard_batch(jnp.ones((8, 2)), mesh, axis="batch")
    with pytest.raises(ValueError, match=r"num_devices must be an int in 1..8"):
        data_parallel_mesh(9)
    sharded = shard_tree({"w": jnp.ones((4, 8))}, TP_MESH, {"w": P(None, "model")})
    placed = place_on_mesh({"w": sharded["w"], "b": jnp.ones(3)}, TP_MESH)
    assert placed["w"].sharding.spec == P(None, "model")
    assert placed["b"].sharding.is_fully_replicated and placed["b"].sharding.mesh == TP_MESH


def test_fit_with_a_mesh_shards_batches_and_matches_one_device():
    """funcgrad.train.fit(mesh=...) trains data-parallel to the same parameters."""
    import optax

    from funcgrad import nn, train
    from funcgrad.parallel import data_parallel_mesh

    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((96, 5)), "y": rng.integers(0, 3, 96)}
    params = nn.init_mlp(jax.random.key(0), [5, 16, 3])

    def loss(p, batch, key):
        del key
        logits = nn.mlp(p, batch["x"])
        return nn.softmax_cross_entropy(logits, batch["y"]), {
            "accuracy": nn.accuracy(logits, batch["y"])
        }

    kw = dict(steps=12, batch_size=16, progress=False, verbose=False, eval_data=data)
    single = train.fit(loss, params, optax.adam(1e-2), data, **kw)
    mesh = data_parallel_mesh(8)
    sharded = train.fit(loss, params, optax.adam(1e-2), data, mesh=mesh, **kw)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # float32: summation order
    assert len(jax.tree.leaves(sharded.params)[0].sharding.device_set) == 8
    with pytest.raises(ValueError, match="batch_size=12 does not split evenly over the 8"):
        train.fit(loss, params, optax.adam(1e-2), data, mesh=mesh, **{**kw, "batch_size": 12})
