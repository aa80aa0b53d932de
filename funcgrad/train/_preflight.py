"""The pre-flight check: funcgrad's gradient against jax.grad on the first batch."""

from __future__ import annotations

from collections.abc import Callable

import jax

from .._check import CheckReport, check_grads
from .._errors import GradientMismatchError
from ._step import as_model


def preflight_check(
    loss_fn: Callable,
    params,
    batch,
    *,
    key=None,
    model_state=None,
    stateful: bool = False,
    rtol: float | None = None,
) -> CheckReport:
    """Compare funcgrad's gradient of the loss on ``batch`` with ``jax.grad``, leaf by leaf.

    Args:
        loss_fn: as for :func:`funcgrad.train.make_train_step`.
        params: the parameters to check at.
        batch: one batch, as the training step receives it.
        key: the PRNG key the loss gets (the first step's subkey, so dropout masks agree).
        model_state: the model state, for ``stateful=True``.
        rtol: relative tolerance; default per dtype (``2e-5`` for float32).

    Returns:
        The ``funcgrad.check_grads`` report (its ``str()`` is the table).

    Raises:
        GradientMismatchError: some leaf disagrees; the message is the table.
    """
    model = as_model(loss_fn, stateful)

    def loss_only(p):
        return model(p, model_state, batch, key)[0]

    # jit: funcgrad differentiates through the jit equation, and both gradients are then
    # computed as compiled programs instead of one dispatch per primitive.
    report = check_grads(jax.jit(loss_only), params, fd=False, rtol=rtol, raise_on_mismatch=False)
    if not report.ok:
        raise GradientMismatchError(
            "funcgrad's gradient disagrees with jax.grad on the first batch, so training was "
            "not started:\n"
            f"{report}\n"
            "Report the failing parameter's layer as a funcgrad bug (check_grads on that "
            "layer alone narrows it to a primitive). check_gradients=False skips this check."
        )
    return report
