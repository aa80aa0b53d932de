"""The benchmark suite runs, and funcgrad's compiled programs are no larger than jax.grad's.

FLOPs and temporary memory come from XLA's analyses of the compiled program: exact and
independent of machine load, so they are asserted; step times never are.
"""

import json

import jax
import jax.numpy as jnp
import pytest
from jax import lax

import funcgrad
from benchmarks import peer_worker
from benchmarks.__main__ import main
from benchmarks.measure import compiled_stats
from benchmarks.workloads import WORKLOADS


def test_quick_mode_writes_table_json_and_plot(tmp_path, capsys):
    impls = "funcgrad jit,jax.grad jit,funcgrad eager,jax.grad eager"
    main(
        [
            "--quick",
            "--out",
            str(tmp_path),
            "--workloads",
            "mlp,chain",
            "--dtypes",
            "float32",
            "--impls",
            impls,
            "--rounds",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert "median step time / jax.grad under jit" in out and "| chain | float32 |" in out
    payload = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "ratios.png").stat().st_size > 1000
    assert [r["workload"] for r in payload["records"]] == ["mlp", "chain"]
    for rec in payload["records"]:
        assert set(rec["impls"]) == set(impls.split(","))
        for name, entry in rec["impls"].items():
            assert entry["ok"], (rec["workload"], name, entry)
            assert entry["median_s"] > 0 and entry["n"] == 2
        assert rec["compiled"]["funcgrad"]["flops"] > 0


def test_peer_is_checked_and_timed_in_its_own_process(tmp_path):
    pytest.importorskip("autograd")
    args = ["--quick", "--out", str(tmp_path), "--workloads", "mlp", "--dtypes", "float32"]
    payload = main([*args, "--impls", "jax.grad jit,autograd", "--rounds", "2"])
    entry = payload["records"][0]["impls"]["autograd"]
    assert entry["ok"] and entry["grad_rel_err"] < 1e-4, entry
    assert entry["median_s"] > 0 and entry["n"] == 2 and entry["first_call_s"] > 0


def test_peer_worker_does_not_time_wrong_gradients(tmp_path):
    pytest.importorskip("autograd")
    loss, params, batch, sizes = WORKLOADS["mlp"].make("float32", quick=True)
    value, grads = jax.value_and_grad(loss)(params, *batch)
    case = tmp_path / "case.npz"
    for scale, ok in ((1.0, True), (2.0, False)):
        wrong = dict(grads, w1=grads["w1"] * scale)
        peer_worker.write_case(case, params, batch, sizes, (float(value), wrong))
        entry = peer_worker.run(case, "mlp", "autograd", "float32", 2e-3, 2, 0.05)
        assert entry["ok"] is ok and ("median_s" in entry) is ok, entry
    assert entry["grad_rel_err"] > 0.4 and entry["skipped"].startswith("not timed")


def test_unknown_workload_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["--quick", "--workloads", "mlp,lstm"])
    assert "unknown workloads ['lstm']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,dtype",
    [(name, "float32") for name in WORKLOADS] + [("transformer", "bfloat16")],
)
def test_compiled_program_no_larger_than_jax(name, dtype):
    # bfloat16 at the benchmark's full size: at toy sizes XLA's buffer choices differ by a
    # few hundred bytes either way, which says nothing about the backward pass.
    loss, params, batch, _ = WORKLOADS[name].make(dtype, quick=dtype == "float32")
    ours = compiled_stats(funcgrad.value_and_grad(loss), params, *batch)
    jaxs = compiled_stats(jax.value_and_grad(loss), params, *batch)
    assert ours["flops"] <= jaxs["flops"], (ours, jaxs)
    assert ours["temp_bytes"] <= jaxs["temp_bytes"], (ours, jaxs)


def _layers(ws, x, remat):
    def body(h, w):
        for _ in range(4):
            h = jnp.tanh(h @ w)
        return h, None

    h, _ = lax.scan(jax.checkpoint(body) if remat else body, x, ws)
    return jnp.sum(h**2)


def test_checkpoint_lowers_compiled_temporary_memory():
    ws, x = jnp.full((16, 64, 64), 0.01, jnp.float32), jnp.ones((512, 64), jnp.float32)
    plain = compiled_stats(funcgrad.grad(lambda w, x: _layers(w, x, False)), ws, x)
    remat = compiled_stats(funcgrad.grad(lambda w, x: _layers(w, x, True)), ws, x)
    activation = 512 * 64 * 4
    # Without remat each of 16 steps keeps its 4 inner activations; with it only its input.
    assert plain["temp_bytes"] >= 16 * 4 * activation
    assert remat["temp_bytes"] < plain["temp_bytes"] / 3


def test_long_scan_stores_each_step_residual_once():
    steps, n = 1000, 16

    def loss(w, xs):
        h, _ = lax.scan(lambda h, x: (jnp.tanh(h @ w + x), None), jnp.zeros((n,), jnp.float32), xs)
        return jnp.sum(h)

    w, xs = jnp.eye(n, dtype=jnp.float32) * 0.5, jnp.ones((steps, n), jnp.float32)
    ours = compiled_stats(funcgrad.grad(loss), w, xs)["temp_bytes"]
    jaxs = compiled_stats(jax.grad(loss), w, xs)["temp_bytes"]
    per_step = steps * n * 4  # one float32[16] per step
    # Two residuals per step (the matmul's input h and tanh's output), each stacked once; the
    # loop-invariant w (1 KiB) is not stacked 1,000 times.
    assert ours <= 2 * per_step + 1024, ours
    assert ours <= jaxs
