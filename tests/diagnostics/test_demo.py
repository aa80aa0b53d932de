"""Smoke test of experiments/diagnostics_demo.py --quick (every diagnostic, small)."""

import importlib.util
import os

import pytest

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "diagnostics_demo.py")


def test_demo_quick_writes_pictures_and_reports(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("diagnostics_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    res = demo.main(["--quick", "--out", str(tmp_path)])
    for name in ("graph_difference_of_squares.svg", "graph_two_layer.png", "grad_flow.png"):
        assert (tmp_path / name).stat().st_size > 5000
    assert "funcgrad's VJP rule for 'tanh'" in res["blame"]
    assert "funcgrad's rule is wrong" in res["check"] and "ok (kink)" in res["kink"]
    assert "d2_safe = jnp.where(d2 > 0, d2, 1.0)" in res["nans"]
    assert "'argmax' at" in res["zero"] and "UNUSED" in res["zero"]
    assert len(res["flow"]) == 5
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    assert "--quick" in capsys.readouterr().out
