"""seed_examples --quick: every funcgrad number equals the closed form, recomputed here."""

import numpy as np
import pytest

from ._util import assert_png, run_quick_once


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    data, out, stdout = run_quick_once("seed_examples", tmp_path_factory)
    assert_png(out / "learning_rates.png")
    assert "every example matches its closed form" in stdout
    return {ex["title"]: ex for ex in data["examples"]}


def close(got, want):
    np.testing.assert_allclose(
        np.asarray(got, float), np.asarray(want, float), rtol=1e-5, atol=1e-6
    )


def test_chain_rule_examples(results):
    gear = results["gear ratios"]["funcgrad"]
    close([gear["dy/du"], gear["du/dx"], gear["dy/dx"]], [3.0, 2.0, 6.0])
    ex = results["y = (3x + 1)^2"]
    close(ex["funcgrad"]["dy/dx"], 18 * np.asarray(ex["inputs"]["x"]) + 6)
    ex = results["y = (x + 2)^2 + 5"]
    close(ex["funcgrad"]["dy/dx"], 2 * np.asarray(ex["inputs"]["x"]) + 4)


def test_branches_sum(results):
    ex = results["f(x, y) = (x + y)(x - y)"]
    x, y, g = ex["inputs"]["x"], ex["inputs"]["y"], ex["funcgrad"]
    close([g["df/dx"], g["df/dy"]], [2 * x, -2 * y])
    close([g["branch (x + y)"], g["branch (x - y)"]], [x - y, x + y])


def test_weighted_sum_partials(results):
    ex = results["y = (w1 x1 + w2 x2)^2"]
    w1, w2, x1, x2 = (ex["inputs"][k] for k in ("w1", "w2", "x1", "x2"))
    s = w1 * x1 + w2 * x2
    g = ex["funcgrad"]
    close(
        [g["dy/dw1"], g["dy/dw2"], g["dy/dx1"], g["dy/dx2"]],
        [2 * s * x1, 2 * s * x2, 2 * s * w1, 2 * s * w2],
    )


def test_dense_layer(results):
    ex = results["dense layer z = W x + b"]
    w, b, x, t = (np.asarray(ex["inputs"][k]) for k in ("W", "b", "x", "t"))
    delta = w @ x + b - t
    close(ex["funcgrad"]["dL/dW"], np.outer(delta, x))
    close(ex["funcgrad"]["dL/db"], delta)
    close(ex["funcgrad"]["dL/dx"], w.T @ delta)


def test_relu_and_sigmoid_cross_entropy(results):
    ex = results["ReLU passes or blocks"]
    z, up = np.asarray(ex["inputs"]["z"]), np.asarray(ex["inputs"]["dL/da"])
    close(ex["funcgrad"]["dL/dz"], np.where(z > 0, up, 0.0))
    ex = results["sigmoid + binary cross-entropy"]
    z, y = np.asarray(ex["inputs"]["z"]), np.asarray(ex["inputs"]["y"])
    close(ex["funcgrad"]["dL/dz"], 1 / (1 + np.exp(-z)) - y)


def test_learning_rates(results):
    ex = results["linear regression by gradient descent"]
    x, y = np.asarray(ex["inputs"]["x"]), np.asarray(ex["inputs"]["y"])
    close(ex["funcgrad"]["hessian"], 2 * np.array([[np.mean(x**2), np.mean(x)], [np.mean(x), 1.0]]))
    design = np.stack([x, np.ones_like(x)], 1)
    best = np.mean((design @ np.linalg.lstsq(design, y, rcond=None)[0] - y) ** 2)
    curves = ex["loss_curves"]
    assert curves["too large"][-1] > 100 * curves["too large"][0]  # diverges
    assert curves["right"][-1] == pytest.approx(best, rel=1e-3)  # converges to the optimum
    assert best * 3 < curves["too small"][-1] < curves["too small"][0]  # still descending
