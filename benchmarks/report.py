"""Turn benchmark records into a terminal table, a JSON file and a PNG plot.

Example:
    >>> print(ratio_row({"impls": {"jax.grad jit": {"median_s": 2.0},
    ...                            "funcgrad jit": {"median_s": 1.0}}}, ["funcgrad jit"]))
    ['0.50']
"""

from __future__ import annotations

import json
import pathlib

REFERENCE = "jax.grad jit"


def _ms(s):
    return f"{1e3 * s:.3g}"


def ratio_row(record, impls) -> list[str]:
    """Median time of each implementation divided by jax.grad under jit ('-' if not timed)."""
    ref = record["impls"].get(REFERENCE, {}).get("median_s")
    row = []
    for impl in impls:
        t = record["impls"].get(impl, {}).get("median_s")
        row.append(f"{t / ref:.2f}" if t is not None and ref else "-")
    return row


def workload_table(record, peak: float | None) -> str:
    """One workload: every implementation's times, first call, FLOP/s share and check error."""
    flops = record["compiled"]["jax"]["flops"]
    lines = [
        f"== {record['title']} [{record['dtype']}] {record['sizes']}",
        f"{'implementation':16s} {'median ms':>10s} {'p25-p75 ms':>16s} {'x jax.jit':>9s} "
        f"{'first call s':>12s} {'% peak':>7s} {'max rel err':>11s}  n",
    ]
    ref = record["impls"].get(REFERENCE, {}).get("median_s")
    for impl, e in record["impls"].items():
        if "median_s" not in e:
            lines.append(f"{impl:16s} {e.get('skipped', 'not timed')}")
            continue
        share = f"{100 * flops / e['median_s'] / peak:.1f}" if peak else "-"
        err = max(e.get("loss_rel_err", 0.0), e.get("grad_rel_err", 0.0))
        lines.append(
            f"{impl:16s} {_ms(e['median_s']):>10s} {_ms(e['p25_s']) + '-' + _ms(e['p75_s']):>16s} "
            f"{e['median_s'] / ref:9.2f} {e['first_call_s']:12.2f} {share:>7s} {err:11.1e}  "
            f"{e['n']}"
        )
    fg, jx = record["compiled"]["funcgrad"], record["compiled"]["jax"]
    lines.append(
        f"compiled  funcgrad vs jax.grad: FLOPs {fg['flops']:.4g} vs {jx['flops']:.4g}; "
        f"temp {fg['temp_bytes'] / 2**20:.2f} vs {jx['temp_bytes'] / 2**20:.2f} MiB; "
        f"trace+lower {fg['trace_lower_s']:.2f} vs {jx['trace_lower_s']:.2f} s; "
        f"compile {fg['compile_s']:.2f} vs {jx['compile_s']:.2f} s"
    )
    return "\n".join(lines)


def summary_table(records, impls) -> str:
    """Markdown table: median step time of each implementation as a ratio to jax.grad jit."""
    head = "| workload | dtype | jax.grad jit (ms) | " + " | ".join(impls) + " |"
    rule = "|" + "---|" * (3 + len(impls))
    rows = [head, rule]
    for r in records:
        ref = r["impls"].get(REFERENCE, {}).get("median_s")
        rows.append(
            f"| {r['workload']} | {r['dtype']} | {_ms(ref) if ref else '-'} | "
            + " | ".join(ratio_row(r, impls))
            + " |"
        )
    return "\n".join(rows)


def parity_table(records) -> str:
    """Markdown table: funcgrad's compiled program against jax.grad's (exact XLA figures)."""
    rows = [
        "| workload | dtype | FLOPs funcgrad / jax | temp MiB funcgrad / jax | "
        "trace+lower s funcgrad / jax | time funcgrad / jax (jit) |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        fg, jx = r["compiled"]["funcgrad"], r["compiled"]["jax"]
        rows.append(
            f"| {r['workload']} | {r['dtype']} | {fg['flops']:.4g} / {jx['flops']:.4g} | "
            f"{fg['temp_bytes'] / 2**20:.2f} / {jx['temp_bytes'] / 2**20:.2f} | "
            f"{fg['trace_lower_s']:.2f} / {jx['trace_lower_s']:.2f} | "
            f"{ratio_row(r, ['funcgrad jit'])[0]} |"
        )
    return "\n".join(rows)


def write_json(path: pathlib.Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1, default=str))


def plot(path: pathlib.Path, records, impls) -> None:
    """Grouped bars: each implementation's median time / jax.grad jit, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['workload']}\n{r['dtype']}" for r in records]
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(records)), 4.5))
    for k, impl in enumerate(impls):
        xs, ys = [], []
        for i, r in enumerate(records):
            val = ratio_row(r, [impl])[0]
            if val != "-":
                xs.append(i + (k - (len(impls) - 1) / 2) * width)
                ys.append(float(val))
        ax.bar(xs, ys, width, label=impl)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(records)), labels)
    ax.set_ylabel("median step time / jax.grad under jit (lower is faster)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
