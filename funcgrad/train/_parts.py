"""Pieces of ``fit`` a researcher can reuse in a loop of their own.

step = make_train_step(loss_fn, optimizer)               # the step builder (_step.py)
evaluate = Evaluation(loss_fn, test_data, every=500)     # the evaluation hook
ckpt = CheckpointPolicy("runs/a/checkpoint.npz", every=1000, run_info={"seed": 0})
ts, start = ckpt.restore(init_train_state(params, optimizer))
for s in range(start, steps):
    ts, loss, metrics = step(ts, batch_for(s))
    if (res := evaluate.due(s + 1, steps, ts)) is not None: print(res)
    ckpt.maybe_save(s + 1, steps, ts)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from ._checkpoint import load_checkpoint, save_checkpoint
from ._data import eval_batches
from ._step import TrainState, make_eval_step


def _identity(batch):
    return batch


class Evaluation:
    """Example-weighted mean loss and metrics of ``loss_fn`` over ``data`` (``key=None``),
    every ``every`` steps (0: only when called with ``final=True``)."""

    def __init__(
        self,
        loss_fn: Callable,
        data,
        *,
        every: int = 0,
        batch_size: int = 1000,
        stateful: bool = False,
        put: Callable = _identity,
    ):
        self.data, self.every, self.batch_size, self.put = data, every, batch_size, put
        self.step_fn = make_eval_step(loss_fn, stateful=stateful)

    def __call__(self, ts: TrainState) -> dict:
        totals, count = {}, 0
        for batch, n in eval_batches(self.data, self.batch_size):
            loss, metrics = self.step_fn(ts.params, ts.model_state, self.put(batch))
            for name, value in {"loss": loss, **metrics}.items():
                totals[name] = totals.get(name, 0.0) + float(value) * n
            count += n
        return {name: total / count for name, total in totals.items()}

    def due(self, done: int, steps: int, ts: TrainState) -> dict | None:
        """The evaluation at step ``done`` if one is due there (the last step's is ``final``)."""
        if self.data is None or not self.every or done % self.every or done >= steps:
            return None
        return self(ts)


@dataclasses.dataclass
class CheckpointPolicy:
    """Where and how often to checkpoint, and how to resume. ``path`` None: never."""

    path: str | None
    every: int = 500  # steps between checkpoints (0: only at the end)
    run_info: dict | None = None  # what must match to resume (seed, batch size, data size)
    resume: bool = True
    last_good: tuple[str, int] | None = None  # (path, step) of the last checkpoint written

    @classmethod
    def in_dir(cls, out_dir, name: str, **kw) -> CheckpointPolicy:
        return cls(os.path.join(os.fspath(out_dir), name) if out_dir else None, **kw)

    def restore(self, ts: TrainState) -> tuple[TrainState, int]:
        """``ts`` from the checkpoint when resuming and one exists; and the step to start at."""
        if not (self.path and self.resume and os.path.exists(self.path)):
            return ts, 0
        ts, _ = load_checkpoint(self.path, ts, run_info=self.run_info)
        start = int(ts.step)
        self.last_good = (self.path, start)
        return ts, start

    def due(self, done: int, steps: int) -> bool:
        return bool(self.path and self.every and done % self.every == 0 and done < steps)

    def save(self, ts: TrainState, done: int) -> None:
        save_checkpoint(self.path, ts, run_info=self.run_info)
        self.last_good = (self.path, done)
