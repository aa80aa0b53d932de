"""The main job (python -m funcgrad / funcgrad-run) in its quick mode, and its options."""

import json
import os

import pytest

from funcgrad import __main__ as main_job


def test_main_job_quick_mode_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("mnist1d")
    out = str(tmp_path / "run")
    assert main_job.main(["--quick", "--steps", "60", "--out", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "check_grads: all leaves agree (8 leaves)" in printed  # the pre-flight check ran
    assert "device cpu" in printed.lower()
    for name in ("results.json", "learning_curves.png", "metrics.jsonl", "checkpoint.npz"):
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 0
        assert os.path.abspath(path) in printed  # told the user where it went
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["steps"] == 60 and results["quick"] is True
    assert 0.2 < results["test_accuracy"] <= 1.0  # well above chance (0.1) after 60 steps
    with open(os.path.join(out, "learning_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_main_job_defaults_are_the_paper_setup():
    args = main_job.parse_args([])
    assert (args.quick, args.steps, args.batch_size, args.lr) == (False, None, 100, 1e-2)
    assert not args.skip_grad_check and not args.resume
    assert main_job.parse_args(["--skip-grad-check"]).skip_grad_check
