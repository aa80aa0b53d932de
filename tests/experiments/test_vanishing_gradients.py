"""vanishing_gradients --quick: the plain sigmoid network's early layers get almost nothing."""

import numpy as np
import pytest

from ._util import assert_png, run_quick_once


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    data, out, _ = run_quick_once("vanishing_gradients", tmp_path_factory)
    for name in (
        "init_profiles.png",
        "training.png",
        "grad_flow_sigmoid_plain.png",
        "grad_flow_sigmoid_residual_layernorm.png",
    ):
        assert_png(out / name)
    return data


def test_twelve_networks_trained(results):
    nets = results["networks"]
    assert len(nets) == 12
    depth, steps = results["config"]["depth"], results["config"]["steps"]
    for name, net in nets.items():
        assert len(net["init_layer_norms"]) == depth + 2, name
        assert len(net["train_loss_every_step"]) == steps, name
        assert np.all(np.isfinite(net["train_loss_every_step"])), name


def test_plain_sigmoid_gradient_vanishes(results):
    net = results["networks"]["sigmoid/plain"]
    assert net["init_ratio_first_to_last"] < 1e-3
    hidden = np.asarray(net["init_layer_norms"][1:-1])
    assert np.all(np.diff(hidden) > 0), f"not shrinking layer by layer towards the input: {hidden}"


def test_residual_connections_keep_the_gradient(results):
    nets = results["networks"]
    plain = nets["sigmoid/plain"]["init_ratio_first_to_last"]
    for name, net in nets.items():
        if name.split("/")[1].startswith("residual"):
            assert net["init_ratio_first_to_last"] > 1e-3, name
            assert net["init_ratio_first_to_last"] > 1e3 * plain, name
