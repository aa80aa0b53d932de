"""``python -m funcgrad.fuzz --programs N --seed S``: fuzz funcgrad against jax.vjp.

``--minutes M`` runs until the time is up (and at most ``--programs``, when given). Prints a
progress line every ``--every`` programs or ``--every-seconds`` (count, outcomes, rate), for
each mismatch or funcgrad error the shrunk program as a standalone reproduction, and at the end
one summary line (seed, programs, time, result) to quote in a report. Exit status 1 when any
program disagreed.

``--break NAME[:FACTOR]`` checks the judge instead of funcgrad: the VJP rule of the primitive
NAME returns FACTOR (1.1) times its cotangents, so the run should FAIL; findings are listed
one line each, unshrunk, and a ``within ...`` count in the summary's ``rejudged=`` is a wrong
result that a re-judgement let through (``build failed`` and ``judged op by op`` only say
how a case was built).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import sys
import time

import jax


def report(program, out, opts, index) -> None:
    from . import minimise, reproduction

    small = program if opts.no_shrink else minimise(program, opts.seed, index, out.status)
    print(f"\n=== {out.status} in program {index} (seed {opts.seed}): {out.detail}")
    print(f"shrunk to {len(small.lines)} of {len(program.lines)} lines; reproduction:\n")
    print(reproduction(small, opts.seed, index), flush=True)


def progress(counts, done, dt) -> str:
    outcomes = ", ".join(f"{k}={counts[k]}" for k in ("ok", "mismatch", "error", "skip"))
    return f"[{done} programs, {dt:.0f} s, {done / max(dt, 1e-9):.2f}/s] {outcomes}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m funcgrad.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--programs", type=int, default=None, help="how many programs to run (200 by default)"
    )
    ap.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="index of the first program")
    ap.add_argument("--ops", type=int, default=8, help="steps per program (before nesting)")
    ap.add_argument("--every", type=int, default=100, help="progress line every N programs")
    ap.add_argument("--every-seconds", type=float, default=60.0, help="... or every S seconds")
    ap.add_argument("--eager", action="store_true", help="run op by op instead of one jit")
    ap.add_argument("--no-shrink", action="store_true", help="report findings unshrunk")
    ap.add_argument(
        "--break",
        dest="broken",
        metavar="NAME[:FACTOR]",
        default=None,
        help="make the rule of primitive NAME wrong (cotangents times FACTOR, 1.1) to check "
        "that the judgement catches it",
    )
    opts = ap.parse_args(argv)

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from . import broken_rule

    with contextlib.ExitStack() as stack:
        if opts.broken:
            name, _, factor = opts.broken.partition(":")
            try:
                factor = float(factor or 1.1)
            except ValueError:
                ap.error(f"--break {opts.broken!r}: FACTOR must be a number, e.g. sin:1.1")
            try:
                stack.enter_context(broken_rule(name, factor))
            except ValueError as e:
                ap.error(str(e))
        return _loop(opts)


def _loop(opts) -> int:
    from . import REJUDGED, generate, run

    if opts.programs is None:
        opts.programs = 200 if opts.minutes is None else 2**62
    deadline = None if opts.minutes is None else time.perf_counter() + 60 * opts.minutes
    counts = collections.Counter()
    skips = collections.Counter()
    seen = collections.Counter()  # finding signature -> count; only the first is shrunk
    t0 = last = time.perf_counter()
    done = 0
    for index in range(opts.start, opts.start + opts.programs):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        program = generate(opts.seed, index, opts.ops)
        out = run(program, opts.seed, index, eager=opts.eager)
        counts[out.status] += 1
        if out.status == "skip":
            skips[out.detail[:90]] += 1
        elif out.status != "ok":
            signature = (
                out.status + " " + re.sub(r"[0-9.e+-]+", "#", out.detail.split("\n")[0])[:120]
            )
            seen[signature] += 1
            if seen[signature] > 1:
                print(
                    f"=== {out.status} in program {index} (again): {out.detail[:160]}", flush=True
                )
            else:
                try:
                    if opts.broken:  # expected: one line each, unshrunk
                        print(f"=== {out.status} in program {index}: {out.detail[:160]}")
                    else:
                        report(program, out, opts, index)
                except Exception as e:  # noqa: BLE001  (a long run outlives one bad shrink)
                    print(f"=== {out.status} in program {index}: {out.detail}", flush=True)
                    print(f"(shrinking failed: {type(e).__name__}: {e})", flush=True)
        done += 1
        if done % 100 == 0:  # each case leaves ~4 MB in JAX's trace and compile caches
            jax.clear_caches()
        now = time.perf_counter()
        if done % opts.every == 0 or now - last >= opts.every_seconds:
            print(progress(counts, done, now - t0), flush=True)
            last = now
    dt = time.perf_counter() - t0
    if done % opts.every:
        print(progress(counts, done, dt), flush=True)
    if skips:
        print("skipped (reference could not run or was not finite):")
        for reason, n in skips.most_common(15):
            print(f"  {n:6d}  {reason}")
    failed = counts["mismatch"] or counts["error"]
    print(
        f"fuzz summary: seed={opts.seed} programs={done} (indices {opts.start}.."
        f"{opts.start + done - 1}) ops={opts.ops} time={dt:.0f}s rate={done / max(dt, 1e-9):.2f}/s "
        f"result={'FAIL' if failed else 'PASS'} "
        + " ".join(f"{k}={counts[k]}" for k in ("ok", "mismatch", "error", "skip"))
        + f" distinct_findings={len(seen)}"
        + (f" broken={opts.broken}" if opts.broken else "")
        + " rejudged="
        + (",".join(f"{k}:{v}" for k, v in sorted(REJUDGED.items())) or "0"),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
