"""Atomic checkpoints of a TrainState: write a temporary file, fsync, then ``os.replace``.

A crash at any moment leaves either the previous checkpoint or the new one, never a torn
file under the checkpoint's name. A checkpoint is an ``.npz`` with one array per leaf and a
JSON ``meta`` entry (paths, shapes, dtypes, run settings) that loading checks against the
model being resumed.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import CheckpointError

FORMAT_VERSION = 1


def _leaf_arrays(tree):
    """Flatten to host arrays; typed PRNG keys are stored as their raw key data."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    paths, arrays, key_impls = [], [], []
    for path, leaf in flat:
        paths.append(jax.tree_util.keystr(path))
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            key_impls.append(str(jax.random.key_impl(leaf)))
            leaf = jax.random.key_data(leaf)
        else:
            key_impls.append(None)
        arrays.append(np.asarray(leaf))
    return paths, arrays, key_impls


def _write_npz(f, arrays: dict) -> None:
    """Write ``arrays`` as an uncompressed npz to the open binary file ``f``."""
    np.savez(f, **arrays)


def save_checkpoint(path: str | os.PathLike, state, *, run_info: dict | None = None) -> str:
    """Atomically write ``state`` (any pytree of arrays) and ``run_info`` to ``path``.

    Args:
        path: the checkpoint file, e.g. ``out/checkpoint.npz``; its folder is created.
        state: a pytree, usually a TrainState.
        run_info: JSON-serialisable settings a resumed run must share (seed, batch size...).

    Returns:
        The path written.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    paths, arrays, key_impls = _leaf_arrays(state)
    meta = {
        "format": FORMAT_VERSION,
        "paths": paths,
        "shapes": [list(a.shape) for a in arrays],
        "dtypes": [a.dtype.name for a in arrays],
        "key_impls": key_impls,
        "run_info": run_info or {},
    }
    payload = {f"leaf_{i:05d}": a for i, a in enumerate(arrays)}
    payload["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def _fsync_dir(folder: str) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, list[np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint file; CheckpointError if it cannot be read."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            arrays = [npz[f"leaf_{i:05d}"] for i in range(len(meta["paths"]))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(e).__name__}: {e}. It is not a complete "
            f"funcgrad checkpoint; delete it, or pass resume=False to start afresh."
        ) from e
    return meta, arrays


def _differences(meta, want_paths, want_arrays, limit=5):
    have = {
        p: (tuple(s), d)
        for p, s, d in zip(meta["paths"], meta["shapes"], meta["dtypes"], strict=True)
    }
    want = {p: (tuple(a.shape), a.dtype.name) for p, a in zip(want_paths, want_arrays, strict=True)}
    lines = []
    for p in want_paths:
        if p not in have:
            lines.append(f"  {p}: missing from the checkpoint, {_fmt(want[p])} in this run")
        elif have[p] != want[p]:
            lines.append(f"  {p}: {_fmt(have[p])} in the checkpoint, {_fmt(want[p])} in this run")
    lines += [
        f"  {p}: {_fmt(have[p])} in the checkpoint, absent from this run"
        for p in meta["paths"]
        if p not in want
    ]
    extra = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + extra


def _fmt(shape_dtype):
    shape, dtype = shape_dtype
    return f"{dtype}{list(shape)}"


def load_checkpoint(path: str | os.PathLike, like, *, run_info: dict | None = None):
    """Load a checkpoint into the structure of ``like``, refusing any mismatch.

    Args:
        path: a file written by :func:`save_checkpoint`.
        like: a pytree with the structure, shapes and dtypes expected (e.g. a freshly
            initialised TrainState); its values are not used.
        run_info: settings that must equal the checkpoint's (keys missing there are ignored).

    Returns:
        ``(state, run_info_saved)``: a pytree like ``like`` holding the saved values.

    Raises:
        CheckpointError: unreadable file, a different model (leaf paths, shapes or dtypes),
            or different run settings; the message lists the differences.
    """
    path = os.fspath(path)
    meta, arrays = read_checkpoint(path)
    want_paths, want_arrays, key_impls = _leaf_arrays(like)
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format')!r}, this funcgrad reads "
            f"format {FORMAT_VERSION}."
        )
    same = meta["paths"] == want_paths and all(
        tuple(s) == a.shape and d == a.dtype.name
        for s, d, a in zip(meta["shapes"], meta["dtypes"], want_arrays, strict=True)
    )
    if not same:
        raise CheckpointError(
            f"refusing to resume from {path}: it was written by a different model or "
            f"optimiser.\n{_differences(meta, want_paths, want_arrays)}\n"
            f"Use a new output folder for the new model, or pass resume=False to overwrite "
            f"this one."
        )
    saved_info = meta.get("run_info", {})
    for name, value in (run_info or {}).items():
        if name in saved_info and saved_info[name] != value:
            raise CheckpointError(
                f"refusing to resume from {path}: it was written with {name}={saved_info[name]!r}"
                f", this run has {name}={value!r}; resuming would not reproduce the "
                f"interrupted run. Use the same setting, a new output folder, or resume=False."
            )
    leaves = [
        jax.random.wrap_key_data(jnp.asarray(a), impl=impl) if impl else jnp.asarray(a)
        for a, impl in zip(arrays, key_impls, strict=True)
    ]
    treedef = jax.tree_util.tree_structure(like)
    return jax.tree_util.tree_unflatten(treedef, leaves), saved_info
