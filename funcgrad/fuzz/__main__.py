"""``python -m funcgrad.fuzz --programs N --seed S``: fuzz funcgrad against jax.vjp.

Prints a progress line every ``--every`` programs (count, rate, outcomes) and, for each
mismatch or funcgrad error, the shrunk program as a standalone reproduction. Exit status 1
when any program disagreed.
"""

from __future__ import annotations

import argparse
import collections
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m funcgrad.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--programs", type=int, default=200, help="how many programs to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="index of the first program")
    ap.add_argument("--ops", type=int, default=8, help="steps per program (before nesting)")
    ap.add_argument("--every", type=int, default=100, help="progress line every N programs")
    ap.add_argument("--eager", action="store_true", help="run op by op instead of one jit")
    ap.add_argument("--no-shrink", action="store_true", help="report findings unshrunk")
    opts = ap.parse_args(argv)

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from . import generate, run

    counts = collections.Counter()
    skips = collections.Counter()
    seen = collections.Counter()  # finding signature -> count; only the first is shrunk
    t0 = time.perf_counter()
    for index in range(opts.start, opts.start + opts.programs):
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
                report(program, out, opts, index)
        done = index - opts.start + 1
        if done % opts.every == 0 or done == opts.programs:
            dt = time.perf_counter() - t0
            print(
                f"[{done} programs, {dt:.0f} s, {done / dt:.1f}/s] "
                + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                flush=True,
            )
    if skips:
        print("skipped (reference could not run or was not finite):")
        for reason, n in skips.most_common(15):
            print(f"  {n:6d}  {reason}")
    return 1 if counts["mismatch"] or counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
