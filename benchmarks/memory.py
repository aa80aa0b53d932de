"""Memory planning benchmark: XLA's compiled temp memory, FLOPs and step time of gradients.

    python -m benchmarks.memory [--quick] [--json FILE] [--reps N] [--only MODEL:DTYPE,...]

For a 12-layer transformer (d 512, seq 256, batch 8) and the 50-layer residual MLP (width 256,
batch 128), in float32 and bfloat16, in one run: ``jax.grad``; ``jax.grad`` with
``jax.checkpoint`` around each block (``nothing_saveable`` and ``dots_saveable``, the manual
practice); ``funcgrad.grad`` with ``remat=None``, ``remat="auto"`` and
``remat=funcgrad.Budget(half of jax.grad's temp)``. Memory and FLOPs are XLA's own figures
(``memory_analysis().temp_size_in_bytes``, ``cost_analysis()["flops"]``) of the jitted step;
times are medians of interleaved runs of the compiled steps. Then, in float32, the largest
batch whose compiled step fits ``--limit`` bytes of temp memory (1 GiB) for ``jax.grad``, the
manual checkpoint and funcgrad auto (the answer is compiled and checked to fit; temp memory
is affine in the batch, so the next batch up is not compiled). ``--quick`` (a smoke run)
uses small models, float32 only and a small limit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

import funcgrad

from .memory_workloads import MODELS

MIB = 2**20
POLICIES = jax.checkpoint_policies


def _programs(loss, blocks):
    return {
        "jax.grad": jax.grad(loss),
        "jax.grad + checkpoint/block (nothing_saveable)": jax.grad(
            blocks(lambda f: jax.checkpoint(f, policy=POLICIES.nothing_saveable))
        ),
        "jax.grad + checkpoint/block (dots_saveable)": jax.grad(
            blocks(lambda f: jax.checkpoint(f, policy=POLICIES.dots_saveable))
        ),
        "funcgrad remat=None": funcgrad.grad(loss),
        'funcgrad remat="auto"': funcgrad.grad(loss, remat="auto"),
    }


def _compile(f, params, batch):
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(params, *batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    temp = int(compiled.memory_analysis().temp_size_in_bytes)
    return compiled, temp, float(cost.get("flops", 0.0)), time.perf_counter() - t0


def _time(compiled, params, batch, reps):
    """Interleaved timing: one run of each program per round; (median, minimum) per program.
    On a shared machine the minimum is the robust figure (load only ever adds time)."""
    times = {name: [] for name in compiled}
    for c in compiled.values():
        jax.block_until_ready(c(params, *batch))  # warm-up
    for _ in range(reps):
        for name, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(params, *batch))
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(ts), min(ts)) for name, ts in times.items()}


def measure(model, dtype, quick, reps):
    loss, params, batch, blocks = MODELS[model](dtype, quick)
    programs = _programs(loss, blocks)
    rows, compiled = {}, {}
    for name, f in programs.items():
        c, temp, flops, secs = _compile(f, params, batch)
        compiled[name] = c
        rows[name] = {"temp": temp, "flops": flops, "compile_s": secs}
        print(f"  {model} {dtype} {name}: temp {temp / MIB:.1f} MiB ({secs:.0f} s)", flush=True)
    # Half of jax.grad's figure; a smoke run (--quick) asks for all of it, which a plan meets
    # at once (searching every plan of the tiny models for half took half the run's time).
    share = 1 if quick else 2
    budget = rows["jax.grad"]["temp"] // share
    name = f"funcgrad Budget({budget / MIB:.1f} MiB = jax.grad{'/2' if share == 2 else ''})"
    try:
        f = funcgrad.grad(loss, remat=funcgrad.Budget(budget))
        c, temp, flops, secs = _compile(f, params, batch)
        compiled[name] = c
        rows[name] = {"temp": temp, "flops": flops, "compile_s": secs, "budget": budget}
    except funcgrad.FuncgradError as err:
        rows[name] = {"error": str(err), "budget": budget}
    print(f"  {model} {dtype} {name}: {rows[name].get('temp', 'no plan fits')}", flush=True)
    for k, (median, fastest) in _time(compiled, params, batch, reps).items():
        rows[k]["step_s"], rows[k]["step_min_s"] = median, fastest
    return rows


def _temp_at(model, which, batch, quick):
    loss, params, data, blocks = MODELS[model]("float32", quick, batch=batch)
    return _compile(_programs(loss, blocks)[which], params, data)[1]


def largest_batch(model, which, limit, quick, base_batch, base_temp):
    """The largest batch whose compiled step fits ``limit``, from at most three compiles.

    Temp memory is affine in the batch: extrapolate from the measured base batch, compile
    there, refit the line through the two points, and confirm the answer by compiling it.
    Returns ``(batch, its compiled temp)``.
    """
    b1 = max(1, int(limit * base_batch / max(base_temp, 1)))
    t1 = _temp_at(model, which, b1, quick)
    slope = (t1 - base_temp) / (b1 - base_batch) if b1 != base_batch else t1 / b1
    slope = slope if slope > 0 else t1 / b1
    b = max(1, int(b1 + (limit - t1) / slope))
    t = _temp_at(model, which, b, quick) if b != b1 else t1
    for _ in range(3):  # the line was optimistic: step down along it
        if t <= limit or b == 1:
            break
        b = max(1, b - max(1, int((t - limit) / slope) + 1))
        t = _temp_at(model, which, b, quick)
    return b, t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small models (a smoke run)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="temp bytes for the batch search")
    ap.add_argument(
        "--only",
        help="comma-separated 'model:dtype' tables to measure (e.g. resmlp50:float32); "
        "no batch search",
    )
    args = ap.parse_args(argv)
    reps = args.reps or 3
    limit = args.limit or (64 * 1024 if args.quick else 2**30)
    results = {"backend": jax.default_backend(), "jax": jax.__version__, "quick": args.quick}
    results["table"], results["largest_batch"] = {}, {"limit": limit, "batches": {}}
    # Each result is saved as soon as it is measured.
    steps = [("table", "transformer12", "float32"), ("table", "resmlp50", "float32")]
    steps += [("batch", "resmlp50", None)]
    if not args.quick:
        steps += [("table", "resmlp50", "bfloat16"), ("batch", "transformer12", None)]
        steps += [("table", "transformer12", "bfloat16")]
    else:
        steps += [("batch", "transformer12", None)]
    if args.only:
        steps = [("table", *item.split(":")) for item in args.only.split(",")]
        unknown = [m for _, m, d in steps if m not in MODELS or d not in ("float32", "bfloat16")]
        if unknown:
            ap.error(f"--only takes model:dtype with model in {sorted(MODELS)}, got {args.only}")
    for kind, model, dtype in steps:
        if kind == "table":
            rows = measure(model, dtype, args.quick, reps)
            results["table"][f"{model} {dtype}"] = rows
            for name, r in rows.items():
                print(f"  = {model} {dtype} {name}: {json.dumps(r)}", flush=True)
        else:
            _batch_search(results, model, limit, args.quick)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)
    print(report(results))
    return results


def _batch_search(results, model, limit, quick):
    base = MODELS[model]("float32", quick)[2][0].shape[0]
    for which in (
        "jax.grad",
        "jax.grad + checkpoint/block (nothing_saveable)",
        'funcgrad remat="auto"',
    ):
        base_temp = results["table"][f"{model} float32"][which]["temp"]
        b, t = largest_batch(model, which, limit, quick, base, base_temp)
        results["largest_batch"]["batches"][f"{model} | {which}"] = b
        print(f"  largest batch {model} {which}: {b} ({t / MIB:.1f} MiB)", flush=True)


def report(results) -> str:
    lines = [
        f"backend {results['backend']}, JAX {results['jax']}"
        + (" (quick)" if results["quick"] else ""),
        "",
        "| model | program | XLA temp (MiB) | vs jax.grad | GFLOP | step (ms), min / median "
        "| vs jax.grad (min) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model, rows in results["table"].items():
        ref = rows["jax.grad"]
        for name, r in rows.items():
            if "error" in r:
                lines.append(f"| {model} | {name} | no plan fits | | | | |")
                continue
            lines.append(
                f"| {model} | {name} | {r['temp'] / MIB:.1f} | {r['temp'] / ref['temp']:.2f}x | "
                f"{r['flops'] / 1e9:.2f} | {r['step_min_s'] * 1e3:.1f} / {r['step_s'] * 1e3:.1f} | "
                f"{r['step_min_s'] / ref['step_min_s']:.2f}x |"
            )
    lb = results["largest_batch"]
    fits = f"Largest batch whose compiled float32 step fits {lb['limit'] / MIB:g} MiB temp:"
    lines += ["", fits, ""]
    lines += ["| model | program | batch |", "|---|---|---:|"]
    for key, b in lb["batches"].items():
        model, which = key.split(" | ")
        lines.append(f"| {model} | {which} | {b} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
