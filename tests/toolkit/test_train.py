"""funcgrad.train: funcgrad steps equal jax steps, exact resume, atomic checkpoints, refusals."""

import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.core import Primitive
from jax.interpreters import ad, mlir

import funcgrad
from funcgrad import nn, train
from funcgrad.train import _checkpoint

F64 = jnp.float64
STEPS, EVERY = 40, 10


def make_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int32) + (x[:, 3] > 1).astype(np.int32)
    return {"x": x, "y": y}


def init_params(hidden=8, seed=1):
    return nn.init_mlp(jax.random.PRNGKey(seed), [4, hidden, 3], dtype=F64)


def mlp_loss(params, batch, key):
    """MLP with dropout on the hidden layer: uses the key each step, none at evaluation."""
    h = jax.nn.relu(nn.dense(params[0], batch["x"]))
    h = nn.dropout(key, h, 0.2, training=key is not None)
    logits = nn.dense(params[1], h)
    return nn.softmax_cross_entropy(logits, batch["y"]), {
        "accuracy": nn.accuracy(logits, batch["y"])
    }


def bn_loss(params, state, batch, key):
    """A stateful model: batch norm whose running statistics are the model state."""
    h = nn.dense(params["dense"], batch["x"])
    h, state = nn.batch_norm(params["bn"], state, h, training=key is not None)
    logits = nn.dense(params["out"], jax.nn.relu(h))
    return nn.softmax_cross_entropy(logits, batch["y"]), ({}, state)


def init_bn(seed=1):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    bn_params, bn_state = nn.init_batch_norm(8, dtype=F64)
    # No bias before batch norm: its gradient is exactly zero, and Adam would amplify the
    # rounding noise of a zero gradient into visible (meaningless) differences.
    params = {
        "dense": nn.init_dense(k1, 4, 8, bias=False, dtype=F64),
        "bn": bn_params,
        "out": nn.init_dense(k2, 8, 3, dtype=F64),
    }
    return params, bn_state


def run_fit(out_dir=None, **kw):
    kw.setdefault("params", init_params())
    args = dict(
        steps=STEPS,
        batch_size=16,
        seed=3,
        eval_data=make_data(32, seed=9),
        out_dir=out_dir,
        checkpoint_every=EVERY,
        log_every=5,
        progress=False,
        verbose=False,
        check_gradients=False,
    )
    args.update(kw)
    params = args.pop("params")
    return train.fit(mlp_loss, params, optax.adam(0.05), make_data(), **args)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, to compare interrupted-and-resumed runs with."""
    return run_fit(str(tmp_path_factory.mktemp("reference")))


# ---- funcgrad against jax.value_and_grad ---------------------------------------------------


@pytest.mark.parametrize("stateful", [False, True], ids=["dropout", "batch_norm_state"])
def test_jitted_funcgrad_run_equals_jax_run_step_for_step(stateful):
    opt = optax.adam(0.05)
    loss, (params, state) = (bn_loss, init_bn()) if stateful else (mlp_loss, (init_params(), None))
    steps = {
        vg: train.make_train_step(loss, opt, stateful=stateful, value_and_grad=vg)
        for vg in (funcgrad.value_and_grad, jax.value_and_grad)
    }
    states = {
        vg: train.init_train_state(params, opt, key=jax.random.PRNGKey(0), model_state=state)
        for vg in steps
    }
    data = make_data()
    for i in range(12):
        batch = {k: v[(i % 4) * 16 : (i % 4 + 1) * 16] for k, v in data.items()}
        out = {vg: steps[vg](states[vg], batch) for vg in steps}
        states = {vg: out[vg][0] for vg in steps}
        ours, ref = out[funcgrad.value_and_grad], out[jax.value_and_grad]
        np.testing.assert_allclose(ours[1], ref[1], rtol=1e-12)
        for a, b in zip(jax.tree.leaves(ours[0]), jax.tree.leaves(ref[0]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=f"step {i + 1}")
    assert int(states[funcgrad.value_and_grad].step) == 12
    moved = jax.tree.leaves(states[funcgrad.value_and_grad].params)[0] - jax.tree.leaves(params)[0]
    assert float(jnp.max(jnp.abs(moved))) > 1e-3  # the parameters really trained


def test_step_donates_state_but_not_the_callers_params():
    params = init_params()
    ts = train.init_train_state(params, optax.sgd(0.1), key=jax.random.PRNGKey(0))
    step = train.make_train_step(mlp_loss, optax.sgd(0.1))
    new_ts, _, _ = step(ts, {k: v[:16] for k, v in make_data().items()})
    assert jax.tree.leaves(ts.params)[0].is_deleted()  # donated
    assert not jax.tree.leaves(params)[0].is_deleted()  # the caller's copy survives
    assert int(new_ts.step) == 1


# ---- resume ---------------------------------------------------------------------------------


class Crash(Exception):
    pass


def crash_at(step):
    def callback(done, ts):
        if done == step:
            raise Crash(f"simulated crash after step {done}")

    return callback


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path, reference):
    out = str(tmp_path)
    with pytest.raises(Crash):
        run_fit(out, callback=crash_at(27))
    saved, _ = train.load_checkpoint(
        os.path.join(out, train.CHECKPOINT_NAME), reference.train_state
    )
    assert int(saved.step) == 20
    resumed = run_fit(out)
    assert resumed.resumed_from == 20 and resumed.step == STEPS
    assert_trees_equal(resumed.train_state, reference.train_state)
    steps = [r["step"] for r in train.read_metrics(resumed.metrics_path) if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # no duplicated records
    assert resumed.final_eval == pytest.approx(reference.final_eval, rel=1e-12)


def test_torn_checkpoint_write_keeps_the_last_good_one(tmp_path, reference, monkeypatch):
    out = str(tmp_path)
    real_write, calls = _checkpoint._write_npz, []

    def torn_write(f, arrays):
        calls.append(1)
        if len(calls) == 2:  # the save at step 20 dies half-way through writing
            f.write(b"PK\x03\x04 half a checkpoint")
            raise Crash("simulated crash while writing the checkpoint")
        real_write(f, arrays)

    monkeypatch.setattr(_checkpoint, "_write_npz", torn_write)
    with pytest.raises(Crash):
        run_fit(out)
    monkeypatch.setattr(_checkpoint, "_write_npz", real_write)
    saved, _ = train.load_checkpoint(
        os.path.join(out, train.CHECKPOINT_NAME), reference.train_state
    )
    assert int(saved.step) == 10
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl"]  # no temp left
    # A process killed mid-write (no cleanup at all) leaves its temporary file behind:
    with open(os.path.join(out, ".tmp-killed.npz"), "wb") as f:
        f.write(b"PK\x03\x04 torn")
    resumed = run_fit(out)
    assert resumed.resumed_from == 10
    assert_trees_equal(resumed.train_state, reference.train_state)


def test_unreadable_checkpoint_is_refused_clearly(tmp_path):
    with open(tmp_path / "checkpoint.npz", "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(train.CheckpointError, match=r"cannot read checkpoint .*checkpoint\.npz"):
        run_fit(str(tmp_path))


def test_resume_with_a_different_model_shape_is_refused(tmp_path):
    out = str(tmp_path)
    run_fit(out, steps=5)
    before = Path(out, "checkpoint.npz").read_bytes()
    message = (
        r"refusing to resume from .*checkpoint\.npz: it was written by a different model"
        r"(.|\n)*\.params\[0\]\['w'\]: float64\[4, 8\] in the checkpoint, "
        r"float64\[4, 16\] in this run"
    )
    with pytest.raises(train.CheckpointError, match=message):
        run_fit(out, steps=10, params=init_params(hidden=16))
    assert Path(out, "checkpoint.npz").read_bytes() == before  # untouched
    with pytest.raises(train.CheckpointError, match=r"written with seed=3, this run has seed=4"):
        run_fit(out, steps=10, seed=4)


# ---- refusals -------------------------------------------------------------------------------


def test_nan_loss_is_refused_with_step_and_last_good_checkpoint(tmp_path):
    data = make_data()
    data["x"][5 * 8 + 3, 2] = np.nan  # example 43: in the 6th batch of an unshuffled epoch
    with pytest.raises(train.NonFiniteLossError) as info:
        train.fit(
            mlp_loss,
            init_params(),
            optax.adam(0.05),
            data,
            steps=20,
            batch_size=8,
            shuffle=False,
            out_dir=str(tmp_path),
            checkpoint_every=2,
            log_every=4,
            progress=False,
            verbose=False,
            check_gradients=False,
        )
    path = os.path.join(str(tmp_path), "checkpoint.npz")
    assert re.search(r"the training loss is nan at step 6 ", str(info.value))
    assert f"Last good checkpoint: {path} (step 4)" in str(info.value)
    saved, _ = train.load_checkpoint(
        path, train.init_train_state(init_params(), optax.adam(0.05), key=jax.random.PRNGKey(0))
    )
    assert int(saved.step) == 4


# A primitive whose funcgrad rule is deliberately wrong (3x instead of 2x), registered only
# for this test, to show the pre-flight check stopping a run.
wrong_square_p = Primitive("toolkit_test_wrong_square")
wrong_square_p.def_impl(lambda x: x * x)
wrong_square_p.def_abstract_eval(lambda x: x)
ad.defjvp(wrong_square_p, lambda t, x: 2.0 * x * t)
mlir.register_lowering(wrong_square_p, mlir.lower_fun(lambda x: x * x, multiple_results=False))


@funcgrad.register_vjp(wrong_square_p)
def wrong_square_vjp(g, ans, x):
    return (3.0 * g * x,)


def wrong_loss(params, batch, key):
    del key
    pred = nn.dense(params, batch["x"])
    return jnp.mean(wrong_square_p.bind(pred - batch["y"]))


def test_preflight_check_stops_a_wrong_gradient_with_the_table(capsys):
    data = {"x": make_data()["x"], "y": np.zeros((64, 1))}
    params = nn.init_dense(jax.random.PRNGKey(0), 4, 1, dtype=F64)
    with pytest.raises(funcgrad.GradientMismatchError) as info:
        train.fit(wrong_loss, params, optax.sgd(0.1), data, steps=3, batch_size=16, progress=False)
    text = str(info.value)
    assert "disagrees with jax.grad on the first batch" in text
    assert re.search(r"args\[0\]\['w'\] +\(4, 1\) .* MISMATCH", text)
    assert "check_gradients=False skips this check" in text
    assert "device cpu" in capsys.readouterr().out.lower()
    # The flag skips it: the (wrong) run trains.
    result = train.fit(
        wrong_loss,
        params,
        optax.sgd(0.1),
        data,
        steps=3,
        batch_size=16,
        progress=False,
        verbose=False,
        check_gradients=False,
    )
    assert result.step == 3


def test_preflight_table_is_printed_for_a_correct_model(capsys):
    run_fit(None, steps=2, verbose=True, check_gradients=True)
    out = capsys.readouterr().out
    assert "pre-flight gradient check" in out
    assert re.search(r"\.?\[0\]\['w'\] +\(4, 8\) +float64 .* ok", out)
    assert "check_grads: all leaves agree (4 leaves)" in out


def test_fit_writes_metrics_and_evaluates_without_dropout(reference):
    records = train.read_metrics(reference.metrics_path)
    train_recs = [r for r in records if r["split"] == "train"]
    eval_recs = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train_recs] == list(range(5, STEPS + 1, 5))
    assert {"loss", "accuracy", "steps_per_sec", "epoch"} <= set(train_recs[-1])
    assert eval_recs[-1]["step"] == STEPS and 0.0 <= eval_recs[-1]["accuracy"] <= 1.0
    # key=None at evaluation: dropout is off, so evaluation is deterministic and reproducible.
    evaluate = train.make_eval_step(mlp_loss)
    loss, metrics = evaluate(reference.params, None, make_data(32, seed=9))
    assert float(loss) == pytest.approx(reference.final_eval["loss"], rel=1e-12)
    assert train_recs[-1]["loss"] < train_recs[0]["loss"]
