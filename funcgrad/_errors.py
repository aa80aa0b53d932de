"""Error types and the helpers that make their messages point at the user's code."""

from __future__ import annotations

import os

import jax.extend.source_info_util as source_info_util

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames inside funcgrad are never "the user's line": skip them as JAX skips its own.
source_info_util.register_exclusion(_PACKAGE_DIR)


class FuncgradError(Exception):
    """Base class of every error funcgrad raises on purpose."""


class MissingRuleError(FuncgradError, NotImplementedError):
    """A primitive on the differentiated path has no VJP rule."""


class RuleError(FuncgradError, ValueError):
    """A VJP rule returned something that breaks the rule contract."""


class NonDifferentiableError(FuncgradError, TypeError):
    """Reverse mode is impossible here (e.g. a while_loop with a dynamic trip count)."""


class GradientMismatchError(FuncgradError, AssertionError):
    """funcgrad's gradient disagrees with the reference (raised by check_grads)."""


def source_line(eqn) -> str:
    """The user's ``file:line (function)`` that produced ``eqn``, or 'unknown'."""
    try:
        where = source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - source info is best effort
        return "unknown source line"
    return where or "unknown source line"


def describe_eqn(eqn, max_len: int = 300) -> str:
    """One equation as the jaxpr printer shows it, shortened for messages."""
    text = str(eqn).strip()
    if len(text) > max_len:
        text = text[: max_len - 3] + "..."
    return text


def aval_str(x) -> str:
    """``f32[3,4]`` for an array, tracer or abstract value."""
    aval = getattr(x, "aval", x)
    shape = getattr(aval, "shape", None)
    dtype = getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return type(x).__name__
    return f"{dtype}[{','.join(map(str, shape))}]"
