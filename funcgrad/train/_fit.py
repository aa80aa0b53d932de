"""fit: the training loop: pre-flight gradient check, jitted steps, metrics, checkpoints."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .._api import value_and_grad as fg_value_and_grad
from ._data import BatchOrder, dataset_size, take
from ._errors import NonFiniteLossError
from ._metrics import MetricsLog
from ._parts import CheckpointPolicy, Evaluation
from ._preflight import preflight_check
from ._step import TrainState, init_train_state, make_train_step

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        params, model_state, opt_state: the final values (``model_state`` None if unused).
        train_state: the final TrainState.
        step: the number of steps taken in total (including those before a resume).
        history: every metrics record written (train and eval), as dicts.
        final_eval: the last evaluation's ``{"loss": ..., <metric>: ...}``, or None.
        out_dir, checkpoint_path, metrics_path: where files went (None without out_dir).
        resumed_from: the step the run resumed from (0 for a fresh run).
        seconds: wall time of this call.
    """

    params: Any
    model_state: Any
    opt_state: Any
    train_state: TrainState
    step: int
    history: list
    final_eval: dict | None
    out_dir: str | None
    checkpoint_path: str | None
    metrics_path: str | None
    resumed_from: int
    seconds: float


def describe_device() -> str:
    """``'cpu (TFRT_CPU_0), 1 device(s)'``: where jitted steps run."""
    d = jax.devices()[0]
    return f"{d.platform} ({d.device_kind}, {d}), {jax.device_count()} device(s)"


class _Loop:
    """The state of one ``fit`` call that its helpers share."""

    def __init__(self, start, log, pbar, out_dir, ckpt: CheckpointPolicy):
        self.log, self.pbar = log, pbar
        self.out_dir, self.ckpt = out_dir, ckpt
        self.pending: list = []
        self.window_start = (time.perf_counter(), start)  # (time, step) of the last flush

    def flush(self, done: int, order: BatchOrder) -> None:
        """Check and log the losses of the steps since the last flush (one device sync)."""
        if not self.pending:
            return
        losses = np.asarray(jnp.stack([loss for loss, _ in self.pending]), np.float64)
        first = done - len(self.pending) + 1
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            self._refuse(first + int(bad[0]), float(losses[bad[0]]))
        metrics = {
            name: float(np.mean([float(m[name]) for _, m in self.pending]))
            for name in self.pending[0][1]
        }
        t0, s0 = self.window_start
        now = time.perf_counter()
        rate = (done - s0) / max(now - t0, 1e-9)
        record = {
            "split": "train",
            "step": done,
            **order.position(done - 1),
            "loss": float(np.mean(losses)),
            **metrics,
            "steps_per_sec": rate,
        }
        self.log.write(record)
        postfix = {"loss": f"{record['loss']:.4f}"}
        if "accuracy" in metrics:
            postfix["acc"] = f"{metrics['accuracy']:.3f}"
        postfix["steps/s"] = f"{rate:.1f}"
        self.pbar.set_postfix(postfix, refresh=False)
        self.pending = []
        self.window_start = (now, done)

    def _refuse(self, step: int, value: float):
        last_good = self.ckpt.last_good
        if last_good:
            where = f"Last good checkpoint: {last_good[0]} (step {last_good[1]})."
        elif self.out_dir:
            where = (
                f"No checkpoint was written before it (checkpoints go to "
                f"{self.ckpt.path}); lower checkpoint_every to keep one."
            )
        else:
            where = "No checkpoint exists: pass out_dir= to fit to keep checkpoints."
        raise NonFiniteLossError(
            f"fit: the training loss is {value} at step {step} (steps count from 1); the run "
            f"was stopped and nothing from that step on was saved. {where} Usual causes: a "
            f"learning rate too large, log or division of zero in the loss, unscaled inputs."
        )


def _batch_placer(mesh, data_axis, batch_size):
    """Identity without a mesh; otherwise shard each batch along ``data_axis`` (a batch that
    does not split evenly, such as the last evaluation batch, is replicated instead)."""
    if mesh is None:
        return lambda batch: batch
    if data_axis not in mesh.shape:
        raise ValueError(
            f"fit: data_axis={data_axis!r} is not an axis of the mesh, whose axes are "
            f"{tuple(mesh.shape)}; pass data_axis= one of them."
        )
    devices = mesh.shape[data_axis]
    if batch_size % devices:
        raise ValueError(
            f"fit: batch_size={batch_size} does not split evenly over the {devices} devices of "
            f"mesh axis {data_axis!r}; use a multiple of {devices}."
        )
    from ..parallel import replicate, shard_batch

    def place(batch):
        if jax.tree.leaves(batch)[0].shape[0] % devices:
            return replicate(batch, mesh)
        return shard_batch(batch, mesh, data_axis)

    return place


def fit(
    loss_fn: Callable,
    params,
    optimizer: optax.GradientTransformation,
    train_data,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    model_state=None,
    eval_data=None,
    eval_every: int = 0,
    eval_batch_size: int = 1000,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    resume: bool = True,
    check_gradients: bool = True,
    check_rtol: float | None = None,
    log_every: int = 50,
    progress: bool = True,
    verbose: bool = True,
    shuffle: bool = True,
    callback: Callable | None = None,
    value_and_grad: Callable = fg_value_and_grad,
    mesh=None,
    data_axis: str = "data",
) -> FitResult:
    """Train ``params`` on mini-batches of ``train_data`` with ``optimizer`` for ``steps`` steps.

    Before the first step the gradient of the loss on the first batch is computed by funcgrad
    and by ``jax.grad`` and the ``check_grads`` table printed; a mismatch stops the run with
    that table (``check_gradients=False`` skips it). The device in use is printed. Each step is
    one jitted call (:func:`make_train_step`). Every ``log_every`` steps the mean loss and
    metrics are logged (progress bar and ``metrics.jsonl``) and checked: a NaN or infinite
    loss raises NonFiniteLossError naming the step and the last good checkpoint.

    With ``out_dir``, a checkpoint is written atomically every ``checkpoint_every`` steps and
    at the end, and a later call with the same arguments resumes from it (``resume=True``),
    producing the same final parameters as an uninterrupted run: the checkpoint holds
    parameters, optimiser and model state, the PRNG key and the step, and the batch order is a
    function of ``(seed, step)``. A checkpoint from a different model, seed, batch size or
    data size is refused with a CheckpointError.

    Args:
        loss_fn: ``loss_fn(params, batch, key) -> loss`` or ``-> (loss, metrics)`` with
            ``metrics`` a dict of scalars (e.g. ``{"accuracy": acc}``; ``accuracy`` is shown on
            the progress bar). ``batch`` has the structure of ``train_data`` with ``batch_size``
            examples on the leading axis. ``key`` is a fresh PRNG key each step and ``None`` at
            evaluation (use it to switch dropout off). With ``model_state`` the signature is
            ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))``.
        params: initial parameters (copied; the caller's arrays are not donated).
        optimizer: an optax GradientTransformation.
        train_data: a pytree of arrays with a shared leading example axis, e.g.
            ``{"x": (N, ...), "y": (N,)}``; kept on the host, batches gathered per step.
        steps: total number of steps (a resumed run counts the steps already taken).
        batch_size: examples per step; each epoch drops its last ``N % batch_size`` examples.
        seed: seeds the PRNG key of the steps and the batch order.
        model_state: initial model state (e.g. batch norm statistics) or None.
        eval_data: a pytree like ``train_data`` evaluated every ``eval_every`` steps (0: only
            at the end) with ``key=None``; results are example-weighted means.
        eval_batch_size: examples per evaluation call.
        out_dir: folder for ``metrics.jsonl`` and ``checkpoint.npz``; None writes nothing.
        checkpoint_every: steps between checkpoints (0: only at the end).
        resume: continue from ``out_dir/checkpoint.npz`` when it exists; False starts afresh
            and overwrites it.
        check_gradients: run the pre-flight check; ``check_rtol`` overrides its tolerance.
        log_every: steps between log records and NaN checks.
        progress: show a tqdm progress bar; ``verbose``: print device and check table.
        shuffle: shuffle the examples each epoch.
        callback: ``callback(step, train_state)`` after every step (``step`` counts from 1);
            it must not keep ``train_state``, which the next step donates.
        value_and_grad: gradient transform; ``jax.value_and_grad`` gives the reference run.
        mesh: a ``jax.sharding.Mesh`` for data-parallel training: every batch is split along
            its leading axis over the mesh axis ``data_axis`` and parameters already laid out
            on the mesh keep their sharding (others are replicated); XLA inserts the
            gradient all-reduce. None trains on the default device.

    Returns:
        A :class:`FitResult`.

    Example:
        >>> import jax, jax.numpy as jnp, optax, funcgrad.nn as nn
        >>> x = jax.random.normal(jax.random.key(0), (64, 3))
        >>> data = {"x": x, "y": x @ jnp.array([[1.0], [2.0], [3.0]])}
        >>> def loss(p, batch, key):
        ...     return nn.mean_squared_error(nn.dense(p, batch["x"]), batch["y"])
        >>> result = fit(loss, nn.init_dense(jax.random.key(1), 3, 1), optax.adam(0.1), data,
        ...              steps=200, batch_size=16, progress=False, verbose=False)
        >>> bool(result.history[-1]["loss"] < 1e-3)
        True
    """
    _check_positive(
        steps=steps, batch_size=batch_size, log_every=log_every, eval_batch_size=eval_batch_size
    )
    start_time = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    say(f"funcgrad.train: device {describe_device()}")

    put = _batch_placer(mesh, data_axis, batch_size)
    n = dataset_size(train_data, "train_data")
    train_data = jax.tree.map(np.asarray, train_data)
    order = BatchOrder(n, batch_size, seed, shuffle)
    stateful = model_state is not None
    ts = init_train_state(params, optimizer, key=jax.random.PRNGKey(seed), model_state=model_state)
    run_info = {"seed": seed, "batch_size": batch_size, "train_size": n, "shuffle": shuffle}

    out_dir = None if out_dir is None else os.fspath(out_dir)
    ckpt = CheckpointPolicy.in_dir(
        out_dir, CHECKPOINT_NAME, every=checkpoint_every, run_info=run_info, resume=resume
    )
    metrics_path = os.path.join(out_dir, METRICS_NAME) if out_dir else None
    ts, start = ckpt.restore(ts)
    if start:
        say(f"funcgrad.train: resuming from {ckpt.path} at step {start}")
    log = MetricsLog(metrics_path, keep_until_step=start if start else None)
    if mesh is not None:
        from ..parallel import place_on_mesh

        ts = place_on_mesh(ts, mesh)
        say(f"funcgrad.train: data parallel over {mesh.shape[data_axis]} device(s) of {mesh}")

    train_step = make_train_step(
        loss_fn, optimizer, stateful=stateful, value_and_grad=value_and_grad
    )
    evaluation = Evaluation(
        loss_fn, eval_data, every=eval_every, batch_size=eval_batch_size, stateful=stateful, put=put
    )
    if check_gradients and start < steps:
        first = put(take(train_data, order.indices(start)))
        _preflight(say, loss_fn, ts, first, stateful, check_rtol)

    with tqdm(
        total=steps,
        initial=start,
        disable=not progress,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    ) as pbar:
        loop = _Loop(start, log, pbar, out_dir, ckpt)
        for s in range(start, steps):
            ts, loss, metrics = train_step(ts, put(take(train_data, order.indices(s))))
            loop.pending.append((loss, metrics))
            done = s + 1
            pbar.update(1)
            if callback is not None:
                callback(done, ts)
            if done % log_every == 0 or done == steps:
                loop.flush(done, order)
            res = evaluation.due(done, steps, ts)
            if res is not None:
                log.write({"split": "eval", "step": done, **res})
            if ckpt.due(done, steps):
                loop.flush(done, order)
                ckpt.save(ts, done)
        loop.flush(steps, order)
    final_eval = None
    if eval_data is not None:
        final_eval = evaluation(ts)
        log.write({"split": "eval", "step": int(ts.step), **final_eval})
    if ckpt.path and start < steps:
        ckpt.save(ts, int(ts.step))
    return FitResult(
        params=ts.params,
        model_state=ts.model_state,
        opt_state=ts.opt_state,
        train_state=ts,
        step=int(ts.step),
        history=log.records,
        final_eval=final_eval,
        out_dir=out_dir,
        checkpoint_path=ckpt.path,
        metrics_path=metrics_path,
        resumed_from=start,
        seconds=time.perf_counter() - start_time,
    )


def _preflight(say, loss_fn, ts, first, stateful, rtol):
    """funcgrad vs jax.grad on the first batch; a mismatch raises with the table."""
    report = preflight_check(
        loss_fn,
        ts.params,
        first,
        key=jax.random.split(ts.key)[1],
        model_state=ts.model_state,
        stateful=stateful,
        rtol=rtol,
    )
    say("funcgrad.train: pre-flight gradient check, funcgrad vs jax.grad on the first batch")
    say(str(report))


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fit expected {name} to be a positive int, got {value!r}.")
