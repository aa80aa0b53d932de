"""Collect a ``gpu_check.sh`` run into ``summary.md`` and ``summary.json`` in its folder.

    python -m benchmarks.gpu_summary gpu_check_out

Reads ``env.json`` (the device and packages), ``steps.tsv`` (each step's exit status, seconds
and limit), the pytest line that ends each test step's log ("12 passed, 1 failed in 3.4s"), the
failed test ids, and ``gpu_tables.md`` (the benchmark tables), and writes them as one page.

Example:
    >>> pytest_outcome("==== 3 failed, 120 passed in 41.20s ====")
    {'failed': 3, 'passed': 120}
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def pytest_outcome(line: str) -> dict:
    """{"passed": n, "failed": n, ...} from pytest's final summary line."""
    return {
        kind.rstrip("s") if kind == "errors" else kind: int(n) for n, kind in OUTCOME.findall(line)
    }


def read_steps(out: pathlib.Path) -> list[dict]:
    steps = []
    path = out / "steps.tsv"
    for row in path.read_text().splitlines() if path.exists() else []:
        name, rc, secs, limit = row.split("\t")
        steps.append({"step": name, "exit": int(rc), "seconds": int(secs), "limit_s": int(limit)})
    for s in steps:
        s["result"] = "passed" if s["exit"] == 0 else "failed"
        if s["exit"] in (124, 137):  # by the step's limit, or by the test runner's deadline
            s["result"] = f"cut short (limit {s['limit_s']} s)"
        log = out / f"{s['step']}.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        ends = [ln for ln in lines if re.search(r"\d+ (passed|failed)", ln) and " in " in ln]
        if ends:
            s["tests"] = pytest_outcome(ends[-1])
            s["failures"] = [
                ln.split(" ", 1)[1] for ln in lines if ln.startswith(("FAILED ", "ERROR "))
            ]
    return steps


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m benchmarks.gpu_summary OUT_DIR")
    out = pathlib.Path(argv[0])
    env_path, tables_path = out / "env.json", out / "gpu_tables.md"
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    steps = read_steps(out)
    summary = {"env": env, "steps": steps}
    lines = ["# funcgrad GPU check", ""]
    if env:
        lines.append(
            f"JAX {env['jax']} (backend {env['backend']}: {', '.join(env['devices'])}), "
            f"Python {env['python']}, {env['platform']}"
        )
        absent = [n for n, p in env["packages"].items() if not p["ok"]]
        lines += ["", "Absent packages: " + (", ".join(absent) or "none"), ""]
    lines += ["| step | result | seconds (limit) | tests |", "|---|---|---|---|"]
    for s in steps:
        tests = ", ".join(f"{n} {k}" for k, n in s.get("tests", {}).items()) or "-"
        lines.append(f"| {s['step']} | {s['result']} | {s['seconds']} ({s['limit_s']}) | {tests} |")
    for s in steps:
        if s.get("failures"):
            lines += ["", f"Failed in {s['step']}:", *(f"- `{f}`" for f in s["failures"])]
    if tables_path.exists():
        lines += ["", "## Benchmarks", "", tables_path.read_text()]
    else:
        lines += ["", "No benchmark tables: the bench step did not write gpu_tables.md."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
