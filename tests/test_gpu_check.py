"""benchmarks/gpu_check.sh's arguments and plan, and its helpers' pure parts; nothing is run on
a device here (the check itself is dry-run by hand: ``benchmarks/gpu_check.sh --cpu``)."""

import json
import pathlib
import subprocess

import pytest

from benchmarks import gpu_bench, gpu_summary, gpu_tests

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_script(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_option():
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    options = ("--cpu", "--quick", "--update-docs", "--no-tests", "--python", "--total-s")
    for option in (*options, "--dry-list"):
        assert option in done.stdout
    assert "Exit status" in done.stdout and "set -uo" not in done.stdout


def test_dry_list_prints_the_plan_and_runs_nothing(tmp_path):
    out = tmp_path / "out"
    done = run_script("--dry-list", "--cpu", "--python", "/no/such/python", str(out))
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("[dry-list]")]
    assert [ln.split()[1] for ln in lines] == ["env", "models", "rules", "bench", "summary"]
    plan = "\n".join(lines)
    assert f"--out {out}/env.json --expect cpu" in plan
    assert "tests/test_models.py" in plan and plan.count("tests/rules") == 1
    assert "--impls funcgrad jit,jax.grad jit,torch eager,torch.compile" in plan
    assert "/no/such/python -m benchmarks.gpu_bench" in plan
    assert not out.exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("extra", [[], ["--no-tests"]])
def test_dry_list_time_limits_fit_the_budget(extra):
    done = run_script("--dry-list", "--total-s", "450", *extra)
    steps = [ln.split() for ln in done.stdout.splitlines() if ln.startswith("[dry-list]")]
    assert "--expect gpu" in done.stdout
    tests = [s[1] for s in steps if s[1] in ("models", "rules")]
    assert tests == ([] if extra else ["models", "rules"])
    # Worst case, as if each step used its whole limit: within the budget.
    assert sum(int(s[3].rstrip("s:")) for s in steps) <= 450


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["--total-s", "soon"], "--total-s takes whole seconds, got 'soon'"),
        (["a", "b"], "one output folder only, got 'a' and 'b'"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(args, message):
    done = run_script(*args)
    assert done.returncode == 2 and message in done.stderr


def test_pytest_outcome_reads_the_summary_line():
    line = "==== 2 failed, 810 passed, 1 skipped, 1 error in 95.10s ===="
    assert gpu_summary.pytest_outcome(line) == {
        "failed": 2,
        "passed": 810,
        "skipped": 1,
        "error": 1,
    }


def test_deal_spreads_files_over_the_jobs():
    files = [f"f{i}" for i in range(7)]
    groups = gpu_tests.deal(files, 3)
    assert groups == [["f0", "f3", "f6"], ["f1", "f4"], ["f2", "f5"]]
    assert gpu_tests.deal(files[:1], 4) == [["f0"]]


def test_summary_collects_steps_counts_and_failures(tmp_path):
    (tmp_path / "steps.tsv").write_text("models\t0\t12\t75\nrules\t124\t165\t165\n")
    (tmp_path / "models.log").write_text("....\n4 passed in 11.0s\n")
    (tmp_path / "rules.log").write_text(
        "FAILED tests/rules/test_x.py::test_y - AssertionError\n3 failed, 90 passed in 150.0s\n"
    )
    summary = gpu_summary.main([str(tmp_path)])
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["models"]["tests"] == {"passed": 4} and steps["models"]["result"] == "passed"
    assert steps["rules"]["result"] == "cut short (limit 165 s)"
    assert steps["rules"]["failures"] == ["tests/rules/test_x.py::test_y - AssertionError"]
    page = (tmp_path / "summary.md").read_text()
    assert "| rules | cut short (limit 165 s) | 165 (165) | 3 failed, 90 passed |" in page
    assert "No benchmark tables" in page
    assert json.loads((tmp_path / "summary.json").read_text())["steps"][0]["seconds"] == 12


def test_update_doc_replaces_only_the_marked_section(tmp_path):
    doc = tmp_path / "perf.md"
    doc.write_text(f"# top\n{gpu_bench.BEGIN}\nold text\n{gpu_bench.END}\n## after\n")
    gpu_bench.update_doc(doc, "new table\n")
    assert doc.read_text() == f"# top\n{gpu_bench.BEGIN}\nnew table\n{gpu_bench.END}\n## after\n"
    doc.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="has no .* markers"):
        gpu_bench.update_doc(doc, "x")


def test_performance_doc_has_the_gpu_markers():
    text = (ROOT / "docs" / "performance.md").read_text()
    assert text.count(gpu_bench.BEGIN) == 1 and text.count(gpu_bench.END) == 1
    assert text.index(gpu_bench.BEGIN) < text.index(gpu_bench.END)


def test_gpu_bench_needs_the_reference_and_known_names(capsys):
    with pytest.raises(SystemExit):
        gpu_bench.parse_args(["--impls", "funcgrad jit,torch eager"])
    assert "must include the reference 'jax.grad jit'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_bench.parse_args(["--workloads", "mlp,lstm"])
    assert "unknown workloads ['lstm']" in capsys.readouterr().err


def test_gpu_tests_runs_pytest_and_counts_failures(tmp_path, capsys):
    (tmp_path / "test_a.py").write_text(
        "def test_ok():\n    pass\n\n\ndef test_wrong():\n    assert 1 == 2\n"
    )
    argv = ["--jobs", "1", "--junit-prefix", str(tmp_path / "out" / "t"), str(tmp_path)]
    assert gpu_tests.main(argv) == 1
    out = capsys.readouterr().out
    assert "test_a.py::test_wrong" in out and "1 failed, 1 passed in" in out


def test_gpu_tests_counts_a_killed_process_from_its_per_test_lines(tmp_path):
    finished, killed = tmp_path / "t-0.log", tmp_path / "t-1.log"
    finished.write_text(
        "FAILED tests/rules/test_a.py::test_x - assert 0\n2 failed, 7 passed in 3.0s\n"
    )
    killed.write_text(
        "tests/rules/test_b.py::test_y PASSED                [ 10%]\n"
        "[gw1] [ 20%] FAILED tests/rules/test_b.py::test_z\n"
        "tests/rules/test_b.py::test_w SKIPPED (no GPU)      [ 30%]\n"
    )
    totals, failures = gpu_tests.collect([finished, killed])
    assert totals == {"failed": 3, "passed": 8, "skipped": 1}
    assert failures == [
        "FAILED tests/rules/test_a.py::test_x - assert 0",
        "FAILED tests/rules/test_b.py::test_z",
    ]
