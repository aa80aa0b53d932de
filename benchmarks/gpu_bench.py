"""The benchmark suite's GPU subset, inside a time budget; tables as JSON and markdown.

    python -m benchmarks.gpu_bench --out gpu_check_out --deadline-s 240 [--update-doc PATH]

Runs ``suite.run_workload`` (the same check-then-time machinery as ``python -m benchmarks``) on
the MLP, CNN and transformer at full size, in float32 and bfloat16, for funcgrad and
``jax.grad`` under ``jit``, PyTorch eager and ``torch.compile`` (each peer in a process of its
own, on CUDA when torch sees it). Before each workload it checks the time left: a workload that
would start with less time to go than the longest one so far took (at least ``--reserve-s``) is
recorded as skipped, with the reason, so the whole run ends inside its budget; each peer process
is killed after at most the time left. After every workload it rewrites ``gpu_results.json`` and
``gpu_tables.md``, so a run cut short still leaves its tables. With ``--update-doc PATH`` the
markdown replaces the text between the ``gpu-check`` marker comments in PATH, but only when
JAX's backend is a GPU: a CPU dry run never overwrites the docs' GPU section.

Example:
    >>> payload = {"machine": {"device": "H200"}, "matmul_peak_flops": {}, "records": []}
    >>> section(payload).startswith("Measured by `benchmarks/gpu_check.sh` on H200")
    True
"""

from __future__ import annotations

import argparse
import pathlib
import re
import time

import jax

from . import measure, report, suite
from .__main__ import machine
from .workloads import WORKLOADS

GPU_WORKLOADS = ("mlp", "cnn", "transformer")
GPU_DTYPES = ("float32", "bfloat16")
GPU_IMPLS = ("funcgrad jit", "jax.grad jit", "torch eager", "torch.compile")
# float32 is full float32 in JAX (not TF32 on a GPU); NVIDIA_TF32_OVERRIDE=0 (gpu_check.sh) does
# the same for cuBLAS/cuDNN in torch. bfloat16 runs at JAX's default.
PRECISION = {"float32": "highest", "bfloat16": "default"}
BEGIN = "<!-- gpu-check:begin (benchmarks/gpu_check.sh --update-docs writes this part) -->"
END = "<!-- gpu-check:end -->"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_bench", description=__doc__)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("gpu_check_out"))
    ap.add_argument("--workloads", default=",".join(GPU_WORKLOADS))
    ap.add_argument("--dtypes", default=",".join(GPU_DTYPES))
    ap.add_argument("--impls", default=",".join(GPU_IMPLS))
    ap.add_argument("--deadline-s", type=float, default=240.0, help="whole run, seconds")
    ap.add_argument("--reserve-s", type=float, default=25.0, help="least time to start one")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timing per impl")
    ap.add_argument("--rounds", type=int, default=50, help="most timed calls per impl")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (skips torch.compile)")
    ap.add_argument("--update-doc", type=pathlib.Path, default=None)
    args = ap.parse_args(argv)
    for name, allowed in (("workloads", WORKLOADS), ("impls", suite.IMPLS)):
        bad = [x for x in getattr(args, name).split(",") if x not in allowed]
        if bad:
            ap.error(f"unknown {name} {bad}; choose from {', '.join(allowed)}")
    if suite.REFERENCE not in args.impls.split(","):
        ap.error(f"--impls must include the reference {suite.REFERENCE!r}: the others are "
                 "checked against it")  # fmt: skip
    return args


def section(payload: dict) -> str:
    """The markdown for the docs' GPU section: machine, settings, the two tables."""
    m = payload["machine"]
    impls = payload.get("impls", list(GPU_IMPLS))
    lines = [
        f"Measured by `benchmarks/gpu_check.sh` on {m.get('device', '?')} "
        f"(backend {m.get('backend', '?')}, JAX {m.get('jax', '?')}, Python {m.get('python', '?')}"
        f", torch {payload.get('torch', 'absent')}), {m.get('date', '?')}; "
        f"float32 matmuls in full float32 (TF32 off) for every implementation.",
        "",
        "Matmul peak measured: "
        + ", ".join(f"{d} {p / 1e9:,.0f} GFLOP/s" for d, p in payload["matmul_peak_flops"].items()),
        "",
        "Median step time as a ratio to `jax.grad` under `jit` (lower is faster):",
        "",
        report.summary_table(payload["records"], impls),
        "",
        "funcgrad's compiled program against jax.grad's:",
        "",
        report.parity_table(payload["records"]),
    ]
    skipped = payload.get("skipped", [])
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped)]
    reasons = {}  # why an implementation has no time, once per distinct reason
    for r in payload["records"]:
        for impl, entry in r["impls"].items():
            if "skipped" in entry:
                reasons.setdefault((impl, entry["skipped"]), []).append(
                    f"{r['workload']} {r['dtype']}"
                )
    if reasons:
        lines += ["", "Not timed:"]
        lines += [f"- {impl} ({', '.join(where)}): {why}" for (impl, why), where in reasons.items()]
    return "\n".join(lines) + "\n"


def update_doc(path: pathlib.Path, text: str) -> None:
    """Replace what lies between the gpu-check markers in ``path`` with ``text``."""
    doc = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(doc):
        raise SystemExit(f"[gpu_bench] {path} has no '{BEGIN}' ... '{END}' markers to fill in")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}{END}", doc, count=1))


def _torch_version() -> str:
    reason = suite.peers.unavailable("torch")
    if reason:
        return "absent"
    import torch

    return torch.__version__


def _write(out: pathlib.Path, payload: dict) -> None:
    report.write_json(out / "gpu_results.json", payload)
    (out / "gpu_tables.md").write_text(section(payload))


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.monotonic()
    impls = tuple(args.impls.split(","))
    dtypes = args.dtypes.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info}", flush=True)
    n = 256 if args.quick else (8192 if info["backend"] == "gpu" else 2048)
    peaks = {}
    for d in dtypes:
        with jax.default_matmul_precision(PRECISION[d]):
            peaks[d] = measure.matmul_peak(d, n)
    print("matmul peak: " + ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items()))
    payload = {
        "machine": info,
        "torch": _torch_version(),
        "quick": args.quick,
        "impls": list(impls),
        "matmul_peak_flops": peaks,
        "records": [],
        "skipped": [],
    }
    longest = args.reserve_s  # the longest a workload has taken so far, at least reserve_s
    for name in args.workloads.split(","):
        wl = WORKLOADS[name]
        for dtype in dtypes:
            left = args.deadline_s - (time.monotonic() - start)
            if left < longest:
                note = (
                    f"{name} {dtype}: {left:.0f} s of the {args.deadline_s:.0f} s left, and a "
                    f"workload has taken up to {longest:.0f} s"
                )
                print(f"== skipped {note}", flush=True)
                payload["skipped"].append(note)
                continue
            suite.PEER_TIMEOUT_S = max(10, int(left))  # a hung torch.compile cannot overrun
            t0 = time.monotonic()
            with jax.default_matmul_precision(PRECISION[dtype]):
                rec = suite.run_workload(wl, dtype, args.quick, impls, args.budget, args.rounds)
            rec["matmul_precision"] = PRECISION[dtype]
            rec["seconds"] = round(time.monotonic() - t0, 1)
            longest = max(longest, rec["seconds"])
            payload["records"].append(rec)
            print(report.workload_table(rec, peaks[dtype]), flush=True)
            _write(args.out, payload)
    _write(args.out, payload)
    text = section(payload)
    print("\n" + text)
    print(f"wrote {args.out / 'gpu_results.json'} and {args.out / 'gpu_tables.md'}")
    if args.update_doc is not None:
        if info["backend"] == "gpu":
            update_doc(args.update_doc, text)
            print(f"updated the GPU section of {args.update_doc}")
        else:
            print(f"not updating {args.update_doc}: backend is {info['backend']!r}, not a GPU")
    return payload


if __name__ == "__main__":
    main()
