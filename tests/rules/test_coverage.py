"""Meta-test: every registered rule has a row in some tests/rules/test_<family>.py table."""

import importlib
import pkgutil

from funcgrad._registry import _BY_NAME, VJP_RULES, nondiff_primitives

from . import __path__ as rules_tests_path

# Rules tested outside the tables, each with the test that covers it.
TESTED_ELSEWHERE = {
    "while": "test_control_flow.py::test_while_loop_row_refuses_reverse_mode",
    # custom_lin lives only inside a custom_jvp rule's traced tangent map, never in a row's
    # own jaxpr (which the table requires): tested against jax.grad, first and second order.
    "custom_lin": "tests/fuzz/test_regressions.py::test_custom_jvp_around_custom_vjp, "
    "test_custom_lin_follows_the_users_bwd_with_a_zero_tangent_input and siblings",
}
# Collectives need several devices: tests/distributed/_multidevice_cases.py checks each one on
# 8 simulated devices (and fails itself when a collective rule has no case there).
MULTIDEVICE_MODULE = "funcgrad.rules.collectives"


def all_rows():
    rows = []
    for info in pkgutil.iter_modules(rules_tests_path):
        if info.name.startswith("test_") and info.name != "test_coverage":
            module = importlib.import_module(f"{__package__}.{info.name}")
            rows.extend(getattr(module, "ROWS", []))
    return rows


def builtin_rules() -> set[str]:
    """Primitives whose rule ships in funcgrad (tests may register rules of their own)."""
    entries = [(p.name, e) for p, e in VJP_RULES.items()] + list(_BY_NAME.items())
    return {name for name, e in entries if e.rule.__module__.startswith("funcgrad.rules.")}


def multidevice_rules() -> set[str]:
    entries = [(p.name, e) for p, e in VJP_RULES.items()] + list(_BY_NAME.items())
    return {name for name, e in entries if e.rule.__module__ == MULTIDEVICE_MODULE}


def test_every_registered_rule_has_a_row():
    covered = {row.prim for row in all_rows()} | set(TESTED_ELSEWHERE) | multidevice_rules()
    missing = sorted(builtin_rules() - covered)
    assert not missing, f"registered VJP rules with no row in tests/rules: {missing}"


def test_rows_name_real_primitives():
    known = builtin_rules() | set(nondiff_primitives())
    unknown = sorted({row.prim for row in all_rows()} - known)
    assert not unknown, f"rows for primitives funcgrad neither registers nor lists: {unknown}"
