"""Memory planning (remat="auto" / funcgrad.Budget): same gradients, less memory per XLA.

Every memory claim here is XLA's compiled figure (``memory_analysis().temp_size_in_bytes``),
never the planner's own estimate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import funcgrad
from benchmarks.workloads import WORKLOADS, layer_norm
from funcgrad import _memory, _remat

ZOO = ["mlp", "cnn", "transformer", "resmlp"]  # the GRU (a scan) is tested below


def _xla_temp(f, *args) -> int:
    return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


def _tree_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _tree_close(a, b, rel=1e-10):
    """Equal up to rounding: where the plan regroups sums (vmap, second order)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert np.max(np.abs(x - y)) <= rel * np.max(np.abs(y)), np.max(np.abs(x - y))


def _deep_ln(layers=4, batch=512, width=128, dtype=jnp.float32):
    """Residual layers of layer norm, matmul and gelu: much cheap elementwise work to skip."""
    rng = np.random.default_rng(0)
    params = [jnp.asarray(rng.standard_normal((width, width)) / width**0.5, dtype)] * layers
    params = [p * (1 + 0.01 * k) for k, p in enumerate(params)]
    x = jnp.asarray(rng.standard_normal((batch, width)), dtype)

    def loss(params, x):
        h = x
        for w in params:
            h = h + jax.nn.gelu(layer_norm(h) @ w, approximate=False)
        return jnp.mean(jnp.square(layer_norm(h)))

    return loss, params, x


@pytest.mark.parametrize("name", ZOO)
def test_auto_plan_gradients_bit_identical_float64(name):
    loss, params, batch, _ = WORKLOADS[name].make("float64", True)
    ref = jax.jit(funcgrad.grad(loss))(params, *batch)
    ours = jax.jit(funcgrad.grad(loss, remat="auto"))(params, *batch)
    _tree_equal(ours, ref)


def test_auto_plan_recomputes_something_on_the_zoo():
    """The bit-identical tests above are not vacuous: the plan wraps recomputing segments."""
    loss, params, batch, _ = WORKLOADS["transformer"].make("float64", True)
    flat, tree = jax.tree.flatten(params)
    closed = jax.make_jaxpr(lambda *l: [loss(jax.tree.unflatten(tree, l), *batch)])(*flat)
    info = _remat.prepare(closed, 1)
    segs = _remat.segments_of(info, _remat.plan_auto(info))
    assert segs and any(s.recompute for s in segs)
    rewritten = _remat.rewrite(info, _remat.plan_auto(info))
    assert "custom_vjp_call" in {e.primitive.name for e in rewritten.jaxpr.eqns}


def test_auto_saves_memory_per_xla():
    loss, params, x = _deep_ln()
    none = _xla_temp(funcgrad.grad(loss), params, x)
    auto = _xla_temp(funcgrad.grad(loss, remat="auto"), params, x)
    reference = _xla_temp(jax.grad(loss), params, x)
    assert auto <= 0.75 * min(none, reference), (auto, none, reference)
    np.testing.assert_allclose(
        jax.jit(funcgrad.grad(loss, remat="auto"))(params, x),
        jax.jit(funcgrad.grad(loss))(params, x),
        rtol=1e-5,
        atol=1e-6,
    )


def test_recomputation_is_tied_to_the_cotangent():
    """Without the tie to the cotangent XLA:CPU schedules the recomputation early (or merges
    it with the forward pass) and the plan saves nothing: guard the mechanism itself."""
    loss, params, x = _deep_ln()
    auto = _xla_temp(funcgrad.grad(loss, remat="auto"), params, x)
    original = _remat._tie
    try:
        _remat._tie = lambda res, gs: lax.optimization_barrier((res, gs))
        untied = _xla_temp(funcgrad.grad(loss, remat="auto"), params, x)
    finally:
        _remat._tie = original
    assert auto <= untied, (auto, untied)
    if jax.__version_info__ < (0, 12):  # XLA:CPU there drops barriers before scheduling;
        assert auto < untied, (auto, untied)  # on 0.12 the barrier alone already holds
    assert auto < _xla_temp(funcgrad.grad(loss), params, x)


def test_budget_honoured_per_xla_and_gradients_unchanged():
    loss, params, x = _deep_ln()
    none = _xla_temp(funcgrad.grad(loss), params, x)
    auto = _xla_temp(funcgrad.grad(loss, remat="auto"), params, x)
    assert auto < none
    budget = funcgrad.Budget((none + auto) // 2)
    g = funcgrad.grad(loss, remat=budget)
    assert _xla_temp(g, params, x) <= budget.bytes
    np.testing.assert_allclose(
        jax.jit(g)(params, x), jax.jit(funcgrad.grad(loss))(params, x), rtol=1e-5, atol=1e-6
    )


def _budget_figures(monkeypatch, loss, params, x):
    """XLA's figure for every candidate plan, as ``Budget`` itself compiles them under the
    user's jit (``x`` a tracer, only ``argnums`` differentiated): read off one search that
    no plan can meet, so the suite compiles each candidate once."""
    names, temps = [], []
    candidates, compiled_cost = _memory.candidates, _memory.compiled_cost

    def named(info):
        for name, plan in candidates(info):
            names.append(name)
            yield name, plan

    def cost(*args, **kwargs):
        temps.append(compiled_cost(*args, **kwargs)[0])
        return temps[-1], 0.0

    with monkeypatch.context() as m:
        m.setattr(_memory, "candidates", named)
        m.setattr(_memory, "compiled_cost", cost)
        with pytest.raises(funcgrad.FuncgradError, match="no memory plan fits"):
            jax.jit(funcgrad.grad(loss, remat=funcgrad.Budget(1)))(params, x)
    assert len(names) == len(temps) > 2, (names, temps)
    return dict(zip(names, temps, strict=True))


def test_budget_recomputes_whole_blocks_when_auto_is_not_enough(monkeypatch):
    loss, params, x = _deep_ln(layers=8)
    temps = _budget_figures(monkeypatch, loss, params, x)
    # XLA schedules the user's jit of the auto plan a few percent apart from the planner's own
    # compile of it (either way, by machine: 5.83 vs 6.11 MB here, 6.08 vs 5.84 MB on CI), so
    # the budget lies below both figures of auto, and only whole blocks can meet it.
    auto = min(temps["auto"], _xla_temp(funcgrad.grad(loss, remat="auto"), params, x))
    best = min(t for name, t in temps.items() if name.startswith("blocks"))
    assert best < auto, temps
    budget = best + (auto - best) // 2
    g = funcgrad.grad(loss, remat=funcgrad.Budget(budget))
    assert _xla_temp(g, params, x) <= budget
    np.testing.assert_allclose(
        jax.jit(g)(params, x), jax.jit(funcgrad.grad(loss))(params, x), rtol=1e-5, atol=1e-6
    )


def test_budget_plans_for_the_gradients_asked_for(monkeypatch):
    """Budget compiles candidates that differentiate only argnums: a gradient nobody asked
    for (here of ``x``, a matmul and its buffers) would inflate every figure."""
    seen = []
    original = _memory.compiled_cost

    def spy(closed, n_out, active=None):
        seen.append(list(active))
        return original(closed, n_out, active)

    monkeypatch.setattr(_memory, "compiled_cost", spy)
    w, x = jnp.ones((8, 8)), jnp.ones((4, 8))
    g = funcgrad.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w)), remat=funcgrad.Budget(2**30))(w, x)
    np.testing.assert_allclose(g, jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w)))(w, x))
    assert seen and all(a == [True, False] for a in seen), seen
    closed = jax.make_jaxpr(lambda w, x: [jnp.sum(jnp.tanh(x @ w))])(w, x)
    assert original(closed, 1, [True, False])[1] < original(closed, 1)[1]  # one matmul fewer


def test_unmeetable_budget_names_the_smallest_figure():
    loss, params, x = _deep_ln(layers=2, batch=64)
    with pytest.raises(funcgrad.FuncgradError, match=r"smallest compiled figure reached was \d+"):
        funcgrad.grad(loss, remat=funcgrad.Budget(1))(params, x)


@pytest.mark.parametrize("bad", ["fast", 3, funcgrad.grad])
def test_bad_remat_value_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="remat must be None, 'auto' or funcgrad.Budget"):
        funcgrad.grad(jnp.sum, remat=bad)(jnp.ones(3))


@pytest.mark.parametrize("bad", [-1, 0, 1.5, True])
def test_bad_budget_is_a_clear_error(bad):
    with pytest.raises((TypeError, ValueError), match="Budget"):
        funcgrad.Budget(bad)


def test_user_checkpoint_keeps_its_semantics():
    """A user's jax.checkpoint stays a checkpoint: recomputed in the backward pass."""
    loss, params, x = _deep_ln(layers=3, batch=64, dtype=jnp.float64)

    def ckpt_loss(params, x):
        return jax.checkpoint(loss, policy=jax.checkpoint_policies.nothing_saveable)(params, x)

    ours = jax.jit(funcgrad.grad(ckpt_loss, remat="auto"))(params, x)
    _tree_equal(ours, jax.jit(funcgrad.grad(ckpt_loss))(params, x))
    jaxpr = jax.make_jaxpr(funcgrad.grad(ckpt_loss, remat="auto", eager_compile=False))(params, x)
    # gelu's erfc (float64): 3 in the forward, 3 more where the checkpoint recomputes them.
    assert str(jaxpr).count("= erfc ") == 2 * 3
    plain = jax.make_jaxpr(funcgrad.grad(loss, remat="auto", eager_compile=False))(params, x)
    assert str(plain).count("= erfc ") == 3 + 3  # auto recomputes gelu too, once


def test_scan_body_planned_gradients_agree_to_rounding():
    """Inside a scan body the plan regroups the sums of cotangent contributions to the carry,
    so the GRU's float64 gradients agree to rounding (1e-17 here), not bit for bit."""
    loss, params, batch, _ = WORKLOADS["gru"].make("float64", True)
    ours = jax.jit(funcgrad.grad(loss, remat="auto"))(params, *batch)
    ref = jax.jit(funcgrad.grad(loss))(params, *batch)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_scan_body_is_planned_per_step_per_xla():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((64, 64)) / 8, jnp.float32)
    xs = jnp.asarray(rng.standard_normal((16, 256, 64)), jnp.float32)

    def loss(w, xs):
        def body(h, x):
            h = h + jax.nn.gelu(layer_norm(h + x) @ w, approximate=False)
            return h, jnp.sum(h)

        h, ys = lax.scan(body, jnp.zeros((256, 64), jnp.float32), xs)
        return jnp.mean(ys) + jnp.mean(h**2)

    none = _xla_temp(funcgrad.grad(loss), w, xs)
    auto = _xla_temp(funcgrad.grad(loss, remat="auto"), w, xs)
    assert auto <= 0.6 * none, (auto, none)
    np.testing.assert_allclose(
        jax.jit(funcgrad.grad(loss, remat="auto"))(w, xs),
        jax.jit(funcgrad.grad(loss))(w, xs),
        rtol=1e-4,
        atol=1e-5,
    )


def test_no_plan_where_it_would_keep_as_much():
    """The residual MLP keeps one matmul output and one stream value per layer either way:
    auto leaves the program as it is (XLA's fusion then does better than segments)."""
    loss, params, batch, _ = WORKLOADS["resmlp"].make("float32", True)
    flat, tree = jax.tree.flatten(params)
    closed = jax.make_jaxpr(lambda *l: [loss(jax.tree.unflatten(tree, l), *batch)])(*flat)
    info = _remat.prepare(closed, 1)
    assert _remat.auto_or_none(info) is None
    kept, needed = _remat.kept_bytes(info, _remat.plan_auto(info))
    assert kept > 0.8 * needed


def test_grad_of_grad():
    loss, params, x = _deep_ln(layers=2, batch=16, width=8, dtype=jnp.float64)

    def g_norm(remat):
        return lambda p: sum(jnp.sum(g**2) for g in funcgrad.grad(loss, remat=remat)(p, x))

    ours = jax.jit(funcgrad.grad(g_norm("auto")))(params)
    _tree_close(ours, jax.jit(funcgrad.grad(g_norm(None)))(params))
    _tree_close(ours, jax.grad(g_norm(None))(params), rel=1e-8)  # jax.grad of funcgrad


def test_vmap_jit_vjp_and_value_and_grad():
    loss, params, x = _deep_ln(layers=2, batch=8, width=8, dtype=jnp.float64)
    xs = jnp.stack([x, 2 * x, -x])
    per = jax.jit(jax.vmap(funcgrad.grad(loss, remat="auto"), in_axes=(None, 0)))(params, xs)
    ref = jax.jit(jax.vmap(funcgrad.grad(loss), in_axes=(None, 0)))(params, xs)
    _tree_close(per, ref)
    v, g = funcgrad.value_and_grad(loss, remat="auto")(params, x)
    v0, g0 = funcgrad.value_and_grad(loss)(params, x)
    _tree_close((v, g), (v0, g0))
    out, pull = funcgrad.vjp(lambda p: loss(p, x) * jnp.ones(3), params, remat="auto")
    ct = jnp.asarray([1.0, -2.0, 0.5])
    _tree_close(pull(ct), funcgrad.vjp(lambda p: loss(p, x) * jnp.ones(3), params)[1](ct))


def test_integer_and_unused_inputs_cross_segments():
    def loss(p, tokens):
        h = p["e"][tokens]
        for w in p["ws"]:
            h = jnp.tanh(h @ w) * (tokens[..., None] > 1)
        return jnp.sum(h**2)

    rng = np.random.default_rng(1)
    p = {"e": jnp.asarray(rng.standard_normal((5, 4))), "ws": [jnp.eye(4) * 0.5] * 3}
    tokens = jnp.asarray(rng.integers(0, 5, (3, 2)), jnp.int32)
    _tree_equal(funcgrad.grad(loss, remat="auto")(p, tokens), funcgrad.grad(loss)(p, tokens))


def test_memory_report_table():
    loss, params, x = _deep_ln(layers=2, batch=64)
    report = funcgrad.memory_report(loss, params, x, remat="auto")
    text = str(report)
    assert "jax.grad" in text and "funcgrad remat=auto" in text
    assert "test_remat.py" in text  # rows are the user's source lines
    kept = sum(r[1] for r in report.rows)
    recomputed = sum(r[2] for r in report.rows)
    assert kept > 0 and recomputed > 0
    temps = {k: v[0] for k, v in report.xla.items()}
    assert temps["funcgrad remat=auto"] < temps["funcgrad remat=None"]


MULTIDEVICE_CASES = r"""
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import funcgrad
from benchmarks.workloads import layer_norm

jax.config.update("jax_enable_x64", True)
assert jax.device_count() == 8, jax.device_count()
mesh = Mesh(np.asarray(jax.devices()), ("i",))
rng = np.random.default_rng(0)
ws = [jnp.asarray(rng.standard_normal((64, 64)) / 8, jnp.float32) for _ in range(3)]
x = jnp.asarray(rng.standard_normal((8 * 256, 64)), jnp.float32)

def loss(ws, x):
    h = x
    for w in ws:
        h = h + jax.nn.gelu(layer_norm(h) @ w, approximate=False)
    return jnp.mean(jnp.square(layer_norm(h)))

def temp(f, *a):
    return jax.jit(f).lower(*a).compile().memory_analysis().temp_size_in_bytes

# 1. funcgrad inside shard_map: each device plans its own shard (per-device bytes).
def dp(remat):
    def body(ws, x):
        return [lax.pmean(g, "i") for g in funcgrad.grad(loss, remat=remat)(ws, x)]
    return jax.shard_map(body, mesh=mesh, in_specs=(P(), P("i")), out_specs=P(), check_vma=False)

a, b = jax.jit(dp("auto"))(ws, x), jax.jit(dp(None))(ws, x)
for u, v in zip(a, b):
    np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-12)  # float32: XLA may fuse differently
t_auto, t_none = temp(dp("auto"), ws, x), temp(dp(None), ws, x)
assert t_auto < 0.8 * t_none, (t_auto, t_none)

# 2. a shard_map inside the differentiated function is kept whole (its own rule).
sm = jax.shard_map(lambda w, x: lax.pmean(loss([w], x), "i"), mesh=mesh,
                   in_specs=(P(), P("i")), out_specs=P())
f = lambda ws, x: sm(ws[0], x) + loss(ws[1:], x)
for u, v in zip(jax.jit(funcgrad.grad(f, remat="auto"))(ws, x), jax.jit(funcgrad.grad(f))(ws, x)):
    np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-12)

# 3. sharded arrays under jit: XLA's per-device temp shrinks too.
xs = jax.device_put(x, NamedSharding(mesh, P("i")))
ours, ref = jax.jit(funcgrad.grad(loss, remat="auto"))(ws, xs), jax.jit(funcgrad.grad(loss))(ws, xs)
for u, v in zip(ours, ref):
    np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
t_auto, t_none = temp(funcgrad.grad(loss, remat="auto"), ws, xs), temp(funcgrad.grad(loss), ws, xs)
assert t_auto < 0.8 * t_none, (t_auto, t_none)
print("remat multidevice ok", flush=True)
"""


def test_shard_map_and_sharded_arrays_on_8_devices():
    import pathlib
    import subprocess
    import sys

    from tests.distributed.test_distributed import multidevice_env

    root = pathlib.Path(__file__).resolve().parents[1]
    env = multidevice_env()
    env["PYTHONPATH"] = f"{root}:{env.get('PYTHONPATH', '')}"
    proc = subprocess.run(
        [sys.executable, "-c", MULTIDEVICE_CASES],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "remat multidevice ok" in proc.stdout, (
        proc.stdout[-5000:] + proc.stderr[-5000:]
    )


def test_eager_remat_compiles_once_and_reads_fresh_values():
    """The plan is made once per program structure and reused with each call's constants:
    an eager training loop compiles once (it recompiled at every step), and a captured
    constant or input changed between calls is read at that call."""
    loss, params, x = _deep_ln(layers=2, batch=64, dtype=jnp.float64)
    captured = {"c": jnp.asarray(1.0)}

    def loss2(p, x):
        return loss(p, x) * captured["c"]

    g = funcgrad.grad(loss2, remat="auto")
    before = funcgrad.eager_stats()
    for k in range(4):
        captured["c"] = jnp.asarray(1.0 + k)
        _tree_close(g(params, x * (1 + k)), jax.grad(loss2)(params, x * (1 + k)), rel=1e-9)
    after = funcgrad.eager_stats()
    assert after["compiled"] - before["compiled"] == 1, (before, after)
    assert after["reused"] - before["reused"] == 3, (before, after)
