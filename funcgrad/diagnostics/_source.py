"""Where an equation came from: the user's file, line and function, and the text of that line."""

from __future__ import annotations

import linecache
import os

import jax

from .._errors import source_line

_JAX_DIR = os.path.dirname(os.path.abspath(jax.__file__))
_FUNCGRAD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP = (_JAX_DIR, _FUNCGRAD_DIR, os.path.dirname(_JAX_DIR) + os.sep + "jaxlib")

__all__ = ["call_site", "code_at", "source_line", "user_frames"]


def user_frames(eqn) -> list[tuple[str, int, str]]:
    """``(file, line, function)`` of the user's frames that produced ``eqn``, innermost first."""
    tb = getattr(eqn.source_info, "traceback", None)
    if tb is None:
        return []
    frames = []
    for fr in tb.frames:
        path = os.path.abspath(fr.file_name)
        if path.startswith(_SKIP) or fr.file_name.startswith("<frozen"):
            continue
        frames.append((fr.file_name, fr.line_num, fr.function_name))
    return frames


def call_site(eqn) -> tuple[str, str]:
    """``(function, where it was called)`` of the innermost user function: a layer's identity.

    Two calls of the same ``layer_norm`` get different call sites, so grouping by this key
    keeps them apart.
    """
    frames = user_frames(eqn)
    if not frames:
        return ("?", "?")
    fn = frames[0][2].rsplit(".", 1)[-1]  # qualname -> name
    caller = frames[1] if len(frames) > 1 else frames[0]
    return (fn, f"{os.path.basename(caller[0])}:{caller[1]}")


def code_at(where: str) -> str:
    """The stripped source text at ``'file:line[:col] (fn)'`` as source_line prints it, or ''."""
    head = where.split(" (")[0]
    parts = head.split(":")
    for n in (2, 1):  # file:line:col or file:line
        if len(parts) > n and parts[-n].isdigit():
            fname = ":".join(parts[:-n])
            return linecache.getline(fname, int(parts[-n])).strip()
    return ""


def short_where(eqn) -> str:
    """``file.py:12 (fn)`` without the directory, for pictures and tables."""
    where = source_line(eqn)
    head, _, fn = where.partition(" (")
    parts = head.split(":")
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
        head = ":".join(parts[:-1])
    return f"{os.path.basename(head)}" + (f" ({fn}" if fn else "")
