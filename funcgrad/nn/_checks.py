"""Shape and argument checks shared by the layers: every message says expected, got, and a fix."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def shape_str(dims: Sequence) -> str:
    """``(..., 784)`` from ``(Ellipsis, 784)``; ``None`` prints as ``*`` (any size)."""
    parts = ["..." if d is Ellipsis else "*" if d is None else str(d) for d in dims]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 and parts[0] != "..." else "") + ")"


def _matches(shape: tuple, dims: Sequence) -> bool:
    dims = tuple(dims)
    if dims and dims[0] is Ellipsis:
        tail = dims[1:]
        if len(shape) < len(tail):
            return False
        shape = shape[len(shape) - len(tail) :]
        dims = tail
    if len(shape) != len(dims):
        return False
    return all(d is None or d == s for d, s in zip(dims, shape, strict=True))


def expect_shape(layer: str, name: str, x, dims: Sequence, hint: str = "") -> None:
    """Raise ``ValueError('dense expected x of shape (..., 784), got (32, 28, 28)')``.

    ``dims`` lists the expected sizes; ``None`` accepts any size and a leading ``...``
    accepts any number of leading axes.
    """
    shape = tuple(np.shape(x))
    if not _matches(shape, dims):
        msg = f"{layer} expected {name} of shape {shape_str(dims)}, got {shape_str(shape)}"
        raise ValueError(msg + (f". {hint}" if hint else "."))


def expect_ndim(layer: str, name: str, x, ndims: Sequence[int], meaning: str) -> None:
    """Raise when ``x`` does not have one of the ranks ``ndims`` (``meaning`` names the axes)."""
    shape = tuple(np.shape(x))
    if len(shape) not in ndims:
        raise ValueError(
            f"{layer} expected {name} of shape {meaning} (rank {' or '.join(map(str, ndims))}), "
            f"got {shape_str(shape)} (rank {len(shape)})."
        )


def expect_float(layer: str, name: str, x) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{layer} expected {name} to be floating point, got dtype {dtype}. "
            f"Cast it first, e.g. {name}.astype(jnp.float32)."
        )


def expect_int(layer: str, name: str, x) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{layer} expected {name} to hold integer indices, got dtype {dtype}. "
            f"Cast it first, e.g. {name}.astype(jnp.int32)."
        )


def expect_positive_int(layer: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{layer} expected {name} to be a positive int, got {value!r}.")
    return int(value)


def expect_keys(layer: str, params, keys: Sequence[str], init_name: str) -> None:
    """Params must be the dict that ``init_name`` returns; name what is missing."""
    if not isinstance(params, dict):
        raise TypeError(
            f"{layer} expected params to be the dict returned by {init_name}, got "
            f"{type(params).__name__}."
        )
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(
            f"{layer} expected params with keys {sorted(keys)} (as {init_name} returns), "
            f"got keys {sorted(params)}; missing {missing}."
        )


def tuple_of(layer: str, name: str, value, n: int) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints, as a tuple of ``n`` positive ints."""
    vals = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) != n or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in vals):
        raise ValueError(
            f"{layer} expected {name} to be a positive int or {n} positive ints, got {value!r}."
        )
    return tuple(int(v) for v in vals)


def add_bias(y, b):
    """``y + b`` for ``b`` matching ``y``'s trailing axes, with no implicit rank promotion."""
    return y + jnp.reshape(b, (1,) * (jnp.ndim(y) - jnp.ndim(b)) + tuple(np.shape(b)))
