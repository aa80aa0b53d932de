"""What this machine offers the GPU check: the JAX device, and which optional packages import.

    python -m benchmarks.gpu_env --out gpu_check_out/env.json [--expect gpu|cpu]

Prints the Python and JAX versions, ``jax.devices()``, and for each package the GPU check may
use (torch with CUDA, pytest, pytest-xdist, optax, equinox, and the ones a GPU image often lacks:
tqdm, matplotlib, hypothesis, flax, mnist1d, autograd) its version or why it cannot be imported.
Writes the same as JSON, which ``gpu_check.sh`` reads to decide what to run and what to skip.
With ``--expect gpu`` it exits 3, saying why, when JAX's default backend is not a GPU (a CPU-only
jaxlib, a missing CUDA plugin, a driver too old), so a GPU session does not quietly time a CPU.

Example:
    >>> package("no_such_package_here")["ok"]
    False
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import platform
import sys

OPTIONAL = (
    "pytest",
    "xdist",
    "optax",
    "equinox",
    "torch",
    "triton",
    "tqdm",
    "matplotlib",
    "hypothesis",
    "flax",
    "mnist1d",
    "autograd",
)


def package(name: str) -> dict:
    """{"ok": True, "version": ...} if ``name`` imports, else {"ok": False, "why": ...}."""
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # ImportError, or a broken install raising anything at import
        return {"ok": False, "why": f"{type(e).__name__}: {e}"[:200]}
    return {"ok": True, "version": str(getattr(mod, "__version__", "?"))}


def torch_device() -> dict:
    """Whether torch sees CUDA, and the device name; {} when torch is absent."""
    try:
        import torch
    except Exception:
        return {}
    cuda = bool(torch.cuda.is_available())
    return {
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch_cuda_version": str(torch.version.cuda),
    }


def probe() -> dict:
    import jax

    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": getattr(devices[0], "device_kind", str(devices[0])),
        "packages": {name: package(name) for name in OPTIONAL},
        "torch_device": torch_device(),
    }


def describe(info: dict) -> str:
    lines = [
        f"Python {info['python']} on {info['platform']}",
        f"JAX {info['jax']}: backend {info['backend']}, devices {info['devices']}",
    ]
    for name, p in info["packages"].items():
        lines.append(f"  {name:11s} " + (p["version"] if p["ok"] else f"absent ({p['why']})"))
    if info["torch_device"]:
        td = info["torch_device"]
        lines.append(f"torch device: {td['device']} (CUDA {td['torch_cuda_version']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_env", description=__doc__)
    ap.add_argument("--out", type=pathlib.Path, required=True, help="where to write the JSON")
    ap.add_argument("--expect", choices=("gpu", "cpu"), default=None)
    args = ap.parse_args(argv)
    info = probe()
    print(describe(info), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=1))
    if args.expect == "gpu" and info["backend"] != "gpu":
        print(
            f"[gpu_check] expected a GPU but JAX's default backend is {info['backend']!r} "
            f"(devices {info['devices']}): install JAX's CUDA build (pip install "
            "'funcgrad[cuda]'), check nvidia-smi, or pass --cpu for a dry run on the CPU.",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
