"""Run an experiment script as a user would (a fresh Python, ``--quick``), or import it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

try:
    import fcntl
except ImportError:  # Windows: no flock; each xdist worker then runs its own copy
    fcntl = None

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_NETWORK = {  # any download attempt through requests / urllib fails fast
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


def run_quick(name: str, tmp_path: pathlib.Path, *extra: str) -> tuple[dict, pathlib.Path, str]:
    """``python experiments/<name>.py --quick --out OUT *extra`` in an empty working folder.

    Returns:
        ``(results.json as a dict, OUT, stdout)``. Fails with the script's output if it
        exits non-zero or leaves anything in its working folder.
    """
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, **NO_NETWORK, "JAX_PLATFORMS": "cpu", "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--quick", "--out", str(out), *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{name} --quick exited with {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    assert not list(cwd.iterdir()), f"{name} wrote into its working folder: {list(cwd.iterdir())}"
    return json.loads((out / "results.json").read_text()), out, proc.stdout


def run_quick_once(name: str, tmp_path_factory, *extra: str) -> tuple[dict, pathlib.Path, str]:
    """``run_quick`` once per test session, shared by every pytest-xdist worker.

    xdist deals a module's tests to both workers, so a module-scoped fixture runs once per
    worker: each experiment twice. The first worker to get here runs it, holding a lock in
    the session's shared temporary folder; the others wait and read its results.json, plots
    and stdout (kept in ``stdout.txt``).
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's own
    folder = base / f"experiment-{name}"
    with open(base / f"experiment-{name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "stdout.txt").exists():
            folder.mkdir(exist_ok=True)
            _, _, stdout = run_quick(name, folder, *extra)
            (folder / "stdout.txt").write_text(stdout)
    out = folder / "out"
    return json.loads((out / "results.json").read_text()), out, (folder / "stdout.txt").read_text()


def assert_png(path: pathlib.Path) -> None:
    assert path.is_file(), f"missing plot {path}"
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert path.stat().st_size > 5000, f"{path} is suspiciously small ({path.stat().st_size} B)"


@contextlib.contextmanager
def _experiments_on_path():
    """``experiments/`` on sys.path only while importing (its mnist1d.py must not shadow the
    mnist1d package for the rest of the session)."""
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        yield
    finally:
        sys.path.remove(str(EXPERIMENTS))


def load(name: str):
    """Import ``experiments/<name>.py`` as module ``experiments_<name>``."""
    module_name = f"experiments_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with _experiments_on_path():
        spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module
