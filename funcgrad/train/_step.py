"""TrainState and the jitted train / eval steps built from funcgrad.value_and_grad and optax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._api import value_and_grad as fg_value_and_grad


class TrainState(NamedTuple):
    """Everything a training step reads and writes; a pytree, checkpointed as a whole.

    Attributes:
        params: the trained parameters (any pytree of float arrays).
        opt_state: the optax optimiser state.
        model_state: non-trained state such as batch norm running statistics; ``None`` if
            the model has none.
        key: the PRNG key (uint32 ``(2,)`` or typed), split once per step.
        step: int32 scalar, the number of steps taken.
    """

    params: Any
    opt_state: Any
    model_state: Any
    key: jax.Array
    step: jax.Array


def init_train_state(
    params, optimizer: optax.GradientTransformation, *, key, model_state=None
) -> TrainState:
    """A fresh TrainState: ``optimizer.init(params)``, step 0.

    The parameter arrays are copied, so the caller's ``params`` survive the donation the
    jitted step does.

    Example:
        >>> import jax, optax, funcgrad.nn as nn
        >>> ts = init_train_state(nn.init_dense(jax.random.key(0), 3, 2), optax.sgd(0.1),
        ...                       key=jax.random.PRNGKey(1))
        >>> int(ts.step)
        0
    """
    params = jax.tree.map(jnp.array, params)
    model_state = jax.tree.map(jnp.array, model_state)
    return TrainState(
        params, optimizer.init(params), model_state, _copy_key(key), jnp.zeros((), jnp.int32)
    )


def _copy_key(key):
    """A copy of a raw uint32 or typed PRNG key (donation would otherwise consume the caller's)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(
            jnp.array(jax.random.key_data(key)), impl=jax.random.key_impl(key)
        )
    return jnp.array(key)


def _scalar_loss(loss, where: str):
    if np.shape(loss) != () or not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
        raise TypeError(
            f"{where}: the loss must be a float scalar, got {type(loss).__name__} of shape "
            f"{np.shape(loss)} and dtype {jnp.result_type(loss)}. Reduce it with .mean()."
        )


def _check_metrics(metrics, where: str):
    if not isinstance(metrics, dict):
        raise TypeError(
            f"{where}: metrics must be a dict of scalars, e.g. {{'accuracy': acc}}, got "
            f"{type(metrics).__name__}."
        )
    for name, value in metrics.items():
        if np.shape(value) != ():
            raise TypeError(
                f"{where}: metric {name!r} must be a scalar, got shape {np.shape(value)}. "
                f"Average it over the batch."
            )


def as_model(loss_fn: Callable, stateful: bool) -> Callable:
    """Normalise ``loss_fn`` to ``model(params, model_state, batch, key)``.

    The model returns ``(loss, (metrics, model_state))``.

    Accepted forms:
        stateless: ``loss_fn(params, batch, key) -> loss`` or ``-> (loss, metrics)``;
        stateful: ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_state))``.
    ``key`` is ``None`` at evaluation.
    """
    where = getattr(loss_fn, "__name__", "loss_fn")

    def model(params, model_state, batch, key):
        if stateful:
            out = loss_fn(params, model_state, batch, key)
            if not (
                isinstance(out, (tuple, list))
                and len(out) == 2
                and isinstance(out[1], (tuple, list))
                and len(out[1]) == 2
            ):
                raise TypeError(
                    f"{where}: with model_state, the loss function must return "
                    f"(loss, (metrics, new_model_state)), got {type(out).__name__}."
                )
            loss, (metrics, model_state) = out
        else:
            out = loss_fn(params, batch, key)
            loss, metrics = out if isinstance(out, (tuple, list)) else (out, {})
        _scalar_loss(loss, where)
        _check_metrics(metrics, where)
        return loss, (metrics, model_state)

    return model


def make_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    stateful: bool = False,
    value_and_grad: Callable = fg_value_and_grad,
    jit: bool = True,
    donate: bool = True,
) -> Callable:
    """``step(train_state, batch) -> (train_state, loss, metrics)``: one optimiser update.

    The gradient is ``funcgrad.value_and_grad`` of the loss with respect to the parameters
    (pass ``value_and_grad=jax.value_and_grad`` for the reference). The step splits the
    state's key, calls the loss with the fresh subkey, applies ``optimizer.update``, and is
    compiled with ``jax.jit`` donating the incoming TrainState (do not reuse it after the call).

    Args:
        loss_fn: ``loss_fn(params, batch, key) -> loss | (loss, metrics)``, or with
            ``stateful=True`` ``loss_fn(params, model_state, batch, key) ->
            (loss, (metrics, new_model_state))``. ``batch`` is whatever pytree of arrays the
            caller passes; ``metrics`` a dict of scalars.
        optimizer: an optax GradientTransformation.
        stateful: whether the loss takes and returns model state.
        value_and_grad: the gradient transform (default funcgrad's).
        jit, donate: compile with ``jax.jit`` and donate the old state.

    Example:
        >>> import jax, jax.numpy as jnp, optax, funcgrad.nn as nn
        >>> def loss(p, batch, key):
        ...     return nn.mean_squared_error(nn.dense(p, batch["x"]), batch["y"])
        >>> opt = optax.sgd(0.1)
        >>> ts = init_train_state(nn.init_dense(jax.random.key(0), 3, 1), opt,
        ...                       key=jax.random.PRNGKey(0))
        >>> step = make_train_step(loss, opt)
        >>> ts, l, metrics = step(ts, {"x": jnp.ones((4, 3)), "y": jnp.zeros((4, 1))})
        >>> int(ts.step)
        1
    """
    model = as_model(loss_fn, stateful)

    def step(ts: TrainState, batch):
        key, sub = jax.random.split(ts.key)

        def objective(params):
            return model(params, ts.model_state, batch, sub)

        (loss, (metrics, model_state)), grads = value_and_grad(objective, has_aux=True)(ts.params)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        return TrainState(params, opt_state, model_state, key, ts.step + 1), loss, metrics

    if jit:
        return jax.jit(step, donate_argnums=(0,) if donate else ())
    return step


def make_eval_step(loss_fn: Callable, *, stateful: bool = False, jit: bool = True) -> Callable:
    """``evaluate(params, model_state, batch) -> (loss, metrics)`` with ``key=None``.

    The loss function sees ``key=None`` and should then run in evaluation mode (dropout off,
    batch norm on running statistics); a stateful model's new state is discarded.
    """
    model = as_model(loss_fn, stateful)

    def evaluate(params, model_state, batch):
        loss, (metrics, _) = model(params, model_state, batch, None)
        return loss, metrics

    return jax.jit(evaluate) if jit else evaluate
