"""The experiment scripts of this folder answer --help with the shared options (no training)."""

import subprocess
import sys

import pytest

from ._util import EXPERIMENTS

SCRIPTS = ["mnist1d", "numeric_vs_backprop", "seed_examples", "vanishing_gradients"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for option in ("--quick", "--out", f"results/{name}"):
        assert option in proc.stdout, f"{name} --help does not mention {option}:\n{proc.stdout}"
