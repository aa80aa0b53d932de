"""Shared plumbing of the experiment scripts: command line, results folder, JSON, plots, data.

Every script in ``experiments/`` has the same three options::

    python experiments/<name>.py --help
    python experiments/<name>.py --quick          # seconds: the test suite's smoke test
    python experiments/<name>.py --out DIR        # default results/<name>/

and writes ``DIR/results.json`` plus PNG plots. Gradients are always funcgrad's; ``jax.grad``
appears only where an experiment compares against it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent


def parse_args(
    name: str,
    description: str,
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The common command line: ``--quick``, ``--out DIR`` and the script's own options.

    Args:
        name: the experiment's name; the default output folder is ``results/<name>``.
        description: shown by ``--help``.
        argv: the arguments (default ``sys.argv[1:]``).
        add_arguments: adds the script's own options to the parser.

    Returns:
        The parsed namespace; ``args.out`` is a ``pathlib.Path`` that exists.

    Example:
        >>> args = parse_args("demo", "A demo.", ["--quick", "--out", "/tmp/demo"])
        >>> args.quick, str(args.out)
        (True, '/tmp/demo')
    """
    parser = argparse.ArgumentParser(
        prog=f"python experiments/{name}.py",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="a seconds-long smoke run (what the tests run)"
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("results") / name,
        help="folder for results.json and the PNG plots",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def _jsonable(value):
    """numpy / JAX scalars and arrays as plain Python numbers and lists; NaN/Inf as strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; "nan" / "inf" keep the file valid
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


def write_json(path: os.PathLike, data: dict) -> pathlib.Path:
    """Write ``data`` as indented JSON (numpy values converted), atomically; returns the path."""
    path = pathlib.Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save_figure(fig, path: os.PathLike) -> pathlib.Path:
    """Save ``fig`` as a PNG, close it, and return the path."""
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pathlib.Path(path)


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain-text table with right-aligned columns (floats with 4 significant digits).

    Example:
        >>> print(format_table(["a", "b"], [[1, 0.5], [22, 0.25]]))
         a     b
        --  ----
         1   0.5
        22  0.25
    """
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def machine_note() -> dict:
    """Where and under what load a run happened: JAX device, CPU count, load average."""
    import jax

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min": [round(v, 2) for v in load],
        "jax_version": jax.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _mnist1d_data_module():
    """The installed ``mnist1d.data`` module.

    ``experiments/mnist1d.py`` has the package's name, and ``python experiments/mnist1d.py``
    puts ``experiments/`` first on ``sys.path``, so a plain ``import mnist1d`` would find the
    script. Import with that folder (and any stale module of the script's name) out of the way.
    """
    stale = sys.modules.get("mnist1d")
    if stale is not None and not hasattr(stale, "__path__"):  # a module, not the package
        del sys.modules["mnist1d"]
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != EXPERIMENTS_DIR]
    try:
        return importlib.import_module("mnist1d.data")
    finally:
        sys.path[:] = saved


def load_mnist1d(
    num_samples: int = 5000, seed: int = 42, shuffle_seq: bool = False
) -> dict[str, np.ndarray]:
    """MNIST-1D built locally by the ``mnist1d`` package (``make_dataset``; nothing downloads).

    The paper's data is ``num_samples=5000`` with seed 42: 4000 train and 1000 test signals of
    length 40, standardised to mean 0 and standard deviation 1.

    Args:
        num_samples: total examples (80% train, 20% test); fewer build faster.
        seed: the generator's seed.
        shuffle_seq: the package's spatially shuffled variant: the same signals, their 40
            positions permuted by one permutation (drawn after the signals), train and test.

    Returns:
        ``{"x": float32 (N_train, 40), "y": int32 (N_train,), "x_test": ..., "y_test": ...}``.
    """
    data_module = _mnist1d_data_module()
    args = data_module.get_dataset_args()
    args.num_samples, args.seed, args.shuffle_seq = int(num_samples), int(seed), bool(shuffle_seq)
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator
    try:
        data = data_module.make_dataset(args)
    finally:
        np.random.set_state(state)
    return {
        "x": np.asarray(data["x"], np.float32),
        "y": np.asarray(data["y"], np.int32),
        "x_test": np.asarray(data["x_test"], np.float32),
        "y_test": np.asarray(data["y_test"], np.int32),
    }
