"""CI's slice of the program fuzzer (``python -m funcgrad.fuzz``): a fixed seed, small programs.

Every program is differentiated by funcgrad and by ``jax.vjp`` with one random cotangent and
compared at tolerances from the dtype. A finding fails the test with the shrunk program as a
standalone reproduction, unless it is a known open one with an xfail-strict regression test
in ``test_regressions.py`` (which then fails as soon as the bug is fixed, so the entry here
must go with it).
"""

import collections

import pytest

from funcgrad.fuzz import generate, minimise, reproduction, run

SEED = 20261202
BLOCKS = 5
PROGRAMS = 200  # in BLOCKS tests; cheap-compile XLA options made 200 cost less than 60 did
OPS = 6
# Open findings: a substring of the finding -> the regression test that tracks it.
KNOWN_OPEN: dict[str, str] = {}


def known(detail: str) -> bool:
    return any(k in detail for k in KNOWN_OPEN)


@pytest.mark.parametrize("block", range(BLOCKS))
def test_fuzz_programs_agree_with_jax(block):
    counts = collections.Counter()
    first = PROGRAMS // BLOCKS * block
    for index in range(first, first + PROGRAMS // BLOCKS):
        program = generate(SEED, index, OPS)
        out = run(program, SEED, index)
        if out.status in ("mismatch", "error") and known(out.detail):
            counts["known"] += 1
            continue
        counts[out.status] += 1
        if out.status in ("mismatch", "error"):
            small = minimise(program, SEED, index, out.status)
            pytest.fail(
                f"{out.status} in fuzz program {index}: {out.detail}\n"
                f"shrunk reproduction:\n{reproduction(small, SEED, index)}"
            )
    # most programs must really be compared, or the test proves nothing
    assert counts["ok"] >= 0.6 * (PROGRAMS // BLOCKS), dict(counts)


def test_a_broken_rule_fails_the_run(capsys):
    """``--break``: with mul's rule 10% off, the run fails, and no re-judgement lets a wrong
    result through (a ``within ...`` count in ``rejudged=``)."""
    from funcgrad.fuzz.__main__ import main

    assert main(["--programs", "12", "--seed", "777", "--ops", "6", "--break", "mul"]) == 1
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "result=FAIL" in summary and "broken=mul" in summary, summary
    assert "within" not in summary.split("rejudged=")[1], summary


def test_break_names_a_rule_or_says_which_to_give(capsys):
    from funcgrad.fuzz.__main__ import main

    with pytest.raises(SystemExit):
        main(["--break", "no_such_primitive"])
    assert "registered_primitives()" in capsys.readouterr().err
