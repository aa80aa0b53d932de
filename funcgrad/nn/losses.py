"""Mean losses with shape checks. The formulas are optax's; only NLL, MAE and accuracy are new.

optax's per-example losses broadcast silently (labels ``(N, 1)`` against predictions
``(N,)`` give an ``(N, N)`` loss); these check shapes first and return the batch mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import expect_float, expect_int


def _labels_match(name, logits, labels):
    expect_float(name, "logits", logits)
    expect_int(name, "labels", labels)
    if np.ndim(logits) < 1 or tuple(np.shape(labels)) != tuple(np.shape(logits))[:-1]:
        raise ValueError(
            f"{name} expected labels of shape {tuple(np.shape(logits))[:-1]} (logits' shape "
            f"without the class axis), got logits {tuple(np.shape(logits))} and labels "
            f"{tuple(np.shape(labels))}. Labels are integer class ids, not one-hot."
        )


def _same_shape(name, a_name, a, b_name, b):
    if tuple(np.shape(a)) != tuple(np.shape(b)):
        raise ValueError(
            f"{name} expected {a_name} and {b_name} of the same shape, got "
            f"{tuple(np.shape(a))} and {tuple(np.shape(b))}. Reshape one (e.g. "
            f"{b_name}.reshape({a_name}.shape)) rather than relying on broadcasting."
        )


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean of ``optax.softmax_cross_entropy_with_integer_labels``.

    Args:
        logits: ``(..., K)`` unnormalised class scores.
        labels: ``(...)`` integer class ids in ``[0, K)``.

    Returns:
        A scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> float(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log 4
        1.3862943649291992
    """
    _labels_match("softmax_cross_entropy", logits, labels)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def nll_loss(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Negative log-likelihood of integer labels under log-probabilities (not in optax).

    ``-mean(log_probs[..., labels])``; with ``log_probs = jax.nn.log_softmax(logits)`` it
    equals :func:`softmax_cross_entropy`.

    Args:
        log_probs: ``(..., K)``.
        labels: ``(...)`` integer class ids.

    Returns:
        A scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> float(nll_loss(jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([1])))
        0.6931471824645996
    """
    _labels_match("nll_loss", log_probs, labels)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)
    return -jnp.mean(picked)


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean of ``optax.sigmoid_binary_cross_entropy``; its gradient at the logit is ``p - y``.

    Args:
        logits: ``(...)`` one score per example (and per output).
        labels: same shape, targets in ``[0, 1]``.

    Returns:
        A scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> float(sigmoid_binary_cross_entropy(jnp.zeros(3), jnp.ones(3)))  # log 2
        0.6931471824645996
    """
    _same_shape("sigmoid_binary_cross_entropy", "logits", logits, "labels", labels)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """``mean((predictions - targets)^2)`` (optax's ``squared_error``, averaged).

    Args:
        predictions: any shape.
        targets: the same shape.

    Returns:
        A scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> float(mean_squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0])))
        5.0
    """
    _same_shape("mean_squared_error", "predictions", predictions, "targets", targets)
    return jnp.mean(optax.squared_error(predictions, targets))


def mean_absolute_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """``mean(|predictions - targets|)`` (not in optax).

    Example:
        >>> import jax.numpy as jnp
        >>> float(mean_absolute_error(jnp.array([1.0, -3.0]), jnp.array([0.0, 0.0])))
        2.0
    """
    _same_shape("mean_absolute_error", "predictions", predictions, "targets", targets)
    return jnp.mean(jnp.abs(predictions - targets))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows whose arg-max class equals the label (a metric; no gradient).

    Args:
        logits: ``(..., K)``.
        labels: ``(...)`` integer class ids.

    Returns:
        A scalar in ``[0, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0])))
        0.5
    """
    _labels_match("accuracy", logits, labels)
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
