"""Errors the training loop raises on purpose."""

from __future__ import annotations

from .._errors import FuncgradError


class NonFiniteLossError(FuncgradError, FloatingPointError):
    """The training loss became NaN or infinite; the run stopped before saving it."""


class CheckpointError(FuncgradError, ValueError):
    """A checkpoint cannot be read, or was written by a different model or run setup."""
