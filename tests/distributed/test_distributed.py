"""Runs the multi-device cases on 8 simulated CPU devices, in a process of their own.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX creates its CPU
backend, so the cases cannot share this process (which keeps its single device). The
subprocess runs ``_multidevice_cases.py`` and ``_multidevice_training.py`` with pytest; its
report is shown in full when anything fails.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASE_FILES = ["_multidevice_cases.py", "_multidevice_training.py"]
DEVICE_FLAG = "--xla_force_host_platform_device_count=8"


def multidevice_env() -> dict:
    """This process's environment plus 8 host devices (other XLA flags are kept)."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join([*flags, DEVICE_FLAG])
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("PYTEST_ADDOPTS", None)  # e.g. -n 2 from the outer run: one process is enough
    return env


def test_multidevice_suite():
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-rfE",
        *(str(HERE / f) for f in CASE_FILES),
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=multidevice_env(), capture_output=True, text=True, timeout=600
    )
    report = proc.stdout[-20000:] + proc.stderr[-5000:]
    assert proc.returncode == 0, f"multi-device cases failed ({' '.join(cmd)}):\n{report}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, report


def test_data_parallel_experiment_quick(tmp_path):
    """experiments/data_parallel.py --quick on 1 and 8 simulated devices: same loss curve."""
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "data_parallel.py"),
        "--quick",
        "--devices",
        "1,8",
        "--steps",
        "8",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=multidevice_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert [r["devices"] for r in result["runs"]] == [1, 8]
    for run in result["runs"]:
        assert len(run["losses"]) == 8 and run["step_time_median_s"] > 0
        assert run["max_abs_loss_diff_vs_first"] < 1e-5, run  # float32 summation order only
        assert run["max_abs_loss_diff_vs_jax_grad"] < 1e-5, run
    assert (tmp_path / "loss_curves.png").stat().st_size > 10_000
