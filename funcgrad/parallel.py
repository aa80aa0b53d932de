"""Small helpers for running funcgrad gradients on a device mesh (JAX's own machinery).

funcgrad adds no distribution runtime: these helpers only build a ``jax.sharding.Mesh`` and
place pytrees on it with ``NamedSharding``; ``jax.jit`` then partitions the forward *and*
funcgrad's backward pass like any JAX program (see docs/scaling.md).

Example:
    >>> import jax, jax.numpy as jnp, funcgrad
    >>> from funcgrad.parallel import data_parallel_mesh, replicate, shard_batch
    >>> mesh = data_parallel_mesh()                      # every local device on axis 'data'
    >>> batch = shard_batch({"x": jnp.ones((8, 3))}, mesh)
    >>> w = replicate(jnp.ones(3), mesh)
    >>> g = jax.jit(funcgrad.grad(lambda w, b: jnp.sum(b["x"] @ w)))(w, batch)
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def data_parallel_mesh(num_devices: int | None = None, axis: str = "data") -> Mesh:
    """A one-axis mesh over the first ``num_devices`` devices (all of them by default).

    The axis is ``AxisType.Auto``: XLA propagates shardings through the program, which is
    what ``jax.jit`` of a funcgrad gradient needs (``jax.make_mesh``'s default is Explicit).
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not isinstance(n, int) or not 1 <= n <= len(devices):
        raise ValueError(
            f"data_parallel_mesh: num_devices must be an int in 1..{len(devices)} (the devices "
            f"JAX sees: {len(devices)} x {devices[0].platform}), got {num_devices!r}. On CPU, "
            f"set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax."
        )
    return Mesh(np.asarray(devices[:n]), (axis,), axis_types=(AxisType.Auto,))


def shard_batch(batch, mesh: Mesh, axis: str = "data"):
    """Place every leaf of ``batch`` on ``mesh``, split along its leading (batch) dimension.

    Args:
        batch: pytree of arrays, each of shape ``(B, ...)`` with ``B`` divisible by the size
            of mesh axis ``axis``.
        mesh: the device mesh.
        axis: the mesh axis the batch dimension is split over.
    Returns:
        The same pytree, each leaf a ``jax.Array`` with ``NamedSharding(mesh, P(axis))``.
    """
    if axis not in mesh.shape:
        raise ValueError(
            f"shard_batch: mesh has axes {tuple(mesh.axis_names)}, not {axis!r}. Pass "
            f"axis= one of them, or build the mesh with data_parallel_mesh(axis={axis!r})."
        )
    n = mesh.shape[axis]

    def put(path, leaf):
        shape = np.shape(leaf)
        if not shape or shape[0] % n:
            raise ValueError(
                f"shard_batch: leaf batch{jax.tree_util.keystr(path)} has shape {shape}; its "
                f"leading dimension must be divisible by the {n} devices on mesh axis "
                f"{axis!r}. Use a batch size that is a multiple of {n}, or drop the remainder."
            )
        return jax.device_put(leaf, NamedSharding(mesh, P(axis)))

    return jax.tree_util.tree_map_with_path(put, batch)


def replicate(tree, mesh: Mesh):
    """Place every leaf of ``tree`` whole on every device of ``mesh`` (``P()``)."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_tree(tree, mesh: Mesh, specs):
    """Place ``tree`` on ``mesh`` with one ``PartitionSpec`` per leaf (``specs`` mirrors
    ``tree``, or is a prefix of it), e.g. weights split along a 'model' axis."""
    shardings = jax.tree.map(
        lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda s: isinstance(s, P)
    )
    return jax.device_put(tree, shardings)


def place_on_mesh(tree, mesh: Mesh):
    """Leaves already laid out on ``mesh`` keep their sharding; all others are replicated.

    The training loop calls this once on its parameters and optimiser state, so a user who
    sharded some weights along a model axis (``shard_tree``) keeps that layout.
    """

    def put(leaf):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
            return leaf
        return jax.device_put(leaf, NamedSharding(mesh, P()))

    return jax.tree.map(put, tree)


__all__ = ["data_parallel_mesh", "place_on_mesh", "replicate", "shard_batch", "shard_tree"]
