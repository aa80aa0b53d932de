"""Smoke run of the memory-planning benchmark (``python -m benchmarks.memory --quick``)."""

from __future__ import annotations

import json

import pytest

from benchmarks import memory


def test_memory_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "memory.json"
    results = memory.main(["--quick", "--reps", "1", "--json", str(out)])
    assert json.loads(out.read_text())["quick"] is True
    assert set(results["table"]) == {"transformer12 float32", "resmlp50 float32"}
    for model, rows in results["table"].items():
        assert 'funcgrad remat="auto"' in rows and "jax.grad" in rows, model
        for name, row in rows.items():
            if "error" in row:  # a budget no plan meets must say the smallest figure
                assert "smallest compiled figure" in row["error"], (model, name)
                continue
            assert row["temp"] > 0 and row["flops"] > 0, (model, name)
            assert 0 < row["step_min_s"] <= row["step_s"], (model, name, row)
            if "budget" in row:
                assert row["temp"] <= row["budget"], (model, name, row)
    batches = results["largest_batch"]["batches"]
    assert len(batches) == 6 and all(b >= 1 for b in batches.values()), batches
    assert "| model | program | XLA temp (MiB) |" in capsys.readouterr().out


def test_only_names_what_it_accepts(capsys):
    with pytest.raises(SystemExit):
        memory.main(["--quick", "--only", "gpt9:float32"])
    assert "--only takes model:dtype with model in ['resmlp50', 'transformer12']" in (
        capsys.readouterr().err
    )
