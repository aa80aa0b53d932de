"""Run pytest on some test files in parallel, inside a deadline, with or without pytest-xdist.

    python -m benchmarks.gpu_tests --jobs 4 --deadline-s 150 --junit-prefix OUT/rules tests/rules

With ``--jobs 1`` this is one plain pytest process; else, with pytest-xdist importable, one
``pytest -n JOBS``. Without it (GPU images often lack
it) the test files are dealt round-robin into JOBS groups, each run by a pytest process of its
own, all at once; a GPU has room for several (``XLA_PYTHON_CLIENT_PREALLOCATE=false``). Each
process's output goes to ``PREFIX-K.log``. At the deadline the ones still running are killed and
reported. The last lines printed combine them: every ``FAILED``/``ERROR`` line, then one pytest-
style summary line ("812 passed, 2 failed in 95.1s"), which ``gpu_summary`` reads.
Exit status: 0 when all passed, 1 when a test failed, 124 (as ``timeout``) when cut short.

Example:
    >>> [len(g) for g in deal(["a", "b", "c", "d", "e"], 2)]
    [3, 2]
    >>> partial(["[gw0] [ 1%] PASSED tests/t.py::a", "tests/t.py::b FAILED  [ 2%]"])
    {'passed': 1, 'failed': 1}
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

from .gpu_summary import pytest_outcome

PYTEST = ["-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider"]  # -v: a test per line, so
# a process killed at the deadline still shows what passed and failed before it
STATUS = re.compile(r"(?:^|\s)(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?:\s|$)")


def deal(files: list, jobs: int) -> list[list]:
    """``files`` dealt round-robin into at most ``jobs`` non-empty groups."""
    groups = [files[k::jobs] for k in range(jobs)]
    return [g for g in groups if g]


def partial(lines: list[str]) -> dict:
    """Counts from ``-v``'s per-test lines, for a process that never printed its summary."""
    counts = {}
    for ln in lines:
        m = STATUS.search(ln)
        if m and "::" in ln:
            kind = {"ERROR": "error"}.get(m.group(1), m.group(1).lower())
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def collect(logs: list[pathlib.Path]) -> tuple[dict, list[str]]:
    """Summed outcome counts and the FAILED/ERROR lines of some pytest ``-v -rfE`` logs.

    A log that ends with pytest's summary line counts from it; one that does not (its process
    was killed) counts its per-test lines, and its failures are taken from them.
    """
    totals, failures = {}, []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()
        failures += [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
        ends = [ln for ln in lines if " in " in ln and pytest_outcome(ln)]
        if not ends:
            failures += [
                "FAILED " + next(w for w in ln.split() if "::" in w)
                for ln in lines
                if "::" in ln and " FAILED" in ln
            ]
        for kind, n in (pytest_outcome(ends[-1]) if ends else partial(lines)).items():
            totals[kind] = totals.get(kind, 0) + n
    return totals, failures


def test_files(paths: list[str]) -> list[str]:
    files = []
    for p in map(pathlib.Path, paths):
        files += sorted(str(f) for f in p.rglob("test_*.py")) if p.is_dir() else [str(p)]
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_tests", description=__doc__)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--deadline-s", type=float, default=150.0)
    ap.add_argument("--junit-prefix", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    prefix = args.junit_prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if args.jobs == 1:
        groups, extra = [args.paths], []
        print("[gpu_tests] one pytest process", flush=True)
    elif importlib.util.find_spec("xdist") is not None:
        groups = [args.paths]
        extra = ["-n", str(args.jobs)]
        print(f"[gpu_tests] pytest-xdist present: one pytest -n {args.jobs}", flush=True)
    else:
        groups = deal(test_files(args.paths), args.jobs)
        extra = []
        print(f"[gpu_tests] no pytest-xdist: {len(groups)} pytest processes at once", flush=True)
    procs = []
    for k, group in enumerate(groups):
        log = open(f"{prefix}-{k}.log", "w")  # noqa: SIM115 (closed below)
        cmd = [sys.executable, *PYTEST, *extra, f"--junitxml={prefix}-{k}.xml", *group]
        # a session of its own, so a kill at the deadline takes xdist's workers with it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log, group))
    cut = []
    for proc, log, group in procs:
        try:
            proc.wait(timeout=max(1.0, args.deadline_s - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            cut.append(group)
        log.close()
    totals, failures = collect([pathlib.Path(f"{prefix}-{k}.log") for k in range(len(groups))])
    for group in cut:
        print(f"[gpu_tests] cut short at the {args.deadline_s:.0f} s deadline: {' '.join(group)}")
    print("\n".join(failures))
    counts = ", ".join(f"{n} {kind}" for kind, n in totals.items()) or "no tests finished"
    print(f"{counts} in {time.monotonic() - t0:.1f}s" + (" (cut short)" if cut else ""))
    if cut:
        return 124  # as ``timeout`` does: gpu_check.sh and gpu_summary report "cut short"
    ok = not totals.get("failed") and not totals.get("error")
    return 0 if ok and all(p.returncode == 0 for p, _, _ in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
