"""numeric_vs_backprop --quick: backprop is exact and cheap, finite differences are neither."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ._util import assert_png, load, run_quick_once


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    data, out, _ = run_quick_once("numeric_vs_backprop", tmp_path_factory)
    for name in ("cost.png", "accuracy.png"):
        assert_png(out / name)
    return data["rows"]


def test_sizes_and_forward_pass_counts(rows):
    assert [r["n_params"] for r in rows] == [11, 101, 1001]
    for r in rows:
        n = r["n_params"]
        assert r["forward_passes"] == {"backprop": 1, "forward_fd": n + 1, "central_fd": 2 * n}


def test_backprop_matches_jax_grad_and_beats_finite_differences(rows):
    for r in rows:
        assert r["backprop_rel_error"] < 1e-5
        assert r["central_fd_rel_error"] < r["forward_fd_rel_error"]
        assert r["backprop_rel_error"] < r["central_fd_rel_error"]
    assert rows[-1]["forward_fd_rel_error"] > 1e-4  # float32 differences lose digits


def test_work_counts(rows):
    """XLA's flop counts: backprop costs a few forward passes, whatever n is."""
    for r in rows:
        assert 1.0 < r["backprop_flops"] / r["forward_flops"] < 5.0
    ratios = [r["central_fd_flops"] / r["backprop_flops"] for r in rows]
    assert ratios == sorted(ratios) and ratios[-1] > 100


def test_chunked_finite_differences_cover_every_parameter():
    """A chunk size that does not divide n: the padded last chunk must not leak in."""
    nvb = load("numeric_vs_backprop")
    weights = jnp.arange(1.0, 8.0)

    def f(theta):
        return jnp.sum(weights * theta**2)

    theta = jnp.linspace(-1.0, 1.0, 7)
    want = 2 * weights * theta
    for central in (False, True):
        got = jax.jit(nvb.finite_differences(f, 7, 1e-4, central, chunk=3))(theta)
        np.testing.assert_allclose(got, want, atol=1e-3 if not central else 1e-6)
