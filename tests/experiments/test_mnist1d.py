"""mnist1d --quick: every model and variant trains, offline, and results.json has the table.

The smoke run skips the pre-flight gradient check (it compiles every model twice more);
``test_preflight_check_prints_the_table`` runs that path on the logistic model.
"""

import numpy as np
import pytest

from ._util import assert_png, load, run_quick_once

VARIANTS = ["logistic", "mlp", "cnn", "gru"]
VARIANTS += [f"{v}_shuffled" for v in VARIANTS]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_quick_once("mnist1d", tmp_path_factory, "--no-progress", "--skip-grad-check")


def test_results_table(run):
    data, out, stdout = run
    for name in VARIANTS:
        acc = data[name]
        assert isinstance(acc, float) and 0.0 <= acc <= 1.0, (name, acc)
        assert len(data["per_seed"][name]) == 2
        assert acc == pytest.approx(np.mean(data["per_seed"][name]))
        assert acc > 0.15, f"{name} did not learn beyond chance (0.1): {acc}"
        losses = np.asarray(data["curves"][name]["train_loss"])
        assert np.all(losses[-1] < losses[0]), name
    assert data["gradient_check_vs_jax_grad"] == {}  # skipped
    assert "within 2 pts" in stdout
    for name in ("learning_curves.png", "accuracy_vs_paper.png"):
        assert_png(out / name)


def test_shuffled_variant_is_one_fixed_permutation(run):
    data, _, _ = run
    perm = data["config"]["shuffle_permutation"]
    assert sorted(perm) == list(range(40)) and perm != list(range(40))


def test_recover_permutation_rejects_inconsistent_test_split():
    m1d = load("mnist1d")
    rng = np.random.default_rng(0)
    data = {
        "x": rng.normal(size=(50, 40)),
        "x_test": rng.normal(size=(10, 40)),
        "y": np.arange(50),
        "y_test": np.arange(10),
    }
    perm = rng.permutation(40)
    good = {**data, "x": data["x"][:, perm], "x_test": data["x_test"][:, perm]}
    assert np.array_equal(m1d.recover_permutation(data, good), perm)
    bad = {**good, "x_test": data["x_test"][:, rng.permutation(40)]}
    with pytest.raises(ValueError, match="train and test alike"):
        m1d.recover_permutation(data, bad)


def test_batch_order_is_epochs_of_permutations():
    m1d = load("mnist1d")
    order = m1d.batch_order(n=250, batch_size=100, steps=5, seed=3)
    assert order.shape == (5, 100)
    for epoch in (order[:2], order[2:4]):  # 2 batches per epoch, 50 examples dropped
        assert len(set(epoch.ravel().tolist())) == 200


def test_preflight_check_prints_the_table(capsys):
    m1d = load("mnist1d")
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(200, 40)).astype(np.float32), "y": rng.integers(0, 10, 200)}
    runner = m1d.make_runner("logistic", m1d.optimizer(1e-2, 10, "constant"))
    assert m1d.preflight("logistic", runner, data, seeds=[0, 1], batch_size=100)
    out = capsys.readouterr().out
    assert "logistic: funcgrad vs jax.grad" in out and "check_grads: all leaves agree" in out
