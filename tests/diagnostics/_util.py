"""Helpers for the diagnostics tests: find a marked line, plant a rule for one test."""

import contextlib
import inspect

from funcgrad._registry import VJP_RULES, register_vjp


def line_of(marker: str, module) -> int:
    """The line number of the unique line holding ``marker`` in ``module``'s source file."""
    lines = inspect.getsource(module).splitlines()
    hits = [k + 1 for k, text in enumerate(lines) if marker in text and "line_of(" not in text]
    assert len(hits) == 1, f"marker {marker!r} found on lines {hits}"
    return hits[0]


@contextlib.contextmanager
def planted_rule(primitive, rule):
    """Register ``rule`` for ``primitive`` for the duration; restore the registry after."""
    saved = VJP_RULES.get(primitive)
    register_vjp(primitive)(rule)
    try:
        yield
    finally:
        if saved is None:
            VJP_RULES.pop(primitive, None)
        else:
            VJP_RULES[primitive] = saved
