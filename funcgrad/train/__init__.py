"""funcgrad.train: a jitted optax training loop on funcgrad gradients.

    result = train.fit(loss_fn, params, optax.adam(1e-2), {"x": x, "y": y},
                       steps=6000, batch_size=100, eval_data={"x": xt, "y": yt},
                       out_dir="runs/cnn")

``loss_fn(params, batch, key) -> loss | (loss, {"accuracy": acc, ...})``; ``key`` is ``None``
at evaluation. ``fit`` cross-checks the gradient against ``jax.grad`` on the first batch,
prints the device, logs to ``metrics.jsonl``, checkpoints atomically and resumes exactly.
"""

from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._errors import CheckpointError as CheckpointError
from ._errors import NonFiniteLossError as NonFiniteLossError
from ._fit import CHECKPOINT_NAME as CHECKPOINT_NAME
from ._fit import METRICS_NAME as METRICS_NAME
from ._fit import FitResult as FitResult
from ._fit import describe_device as describe_device
from ._fit import fit as fit
from ._metrics import read_metrics as read_metrics
from ._parts import CheckpointPolicy as CheckpointPolicy
from ._parts import Evaluation as Evaluation
from ._preflight import preflight_check as preflight_check
from ._step import TrainState as TrainState
from ._step import init_train_state as init_train_state
from ._step import make_eval_step as make_eval_step
from ._step import make_train_step as make_train_step
