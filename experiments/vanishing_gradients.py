"""Vanishing gradients: per-layer gradient norms of deep sigmoid, tanh and ReLU networks.

Twelve networks of the same depth (default 20 hidden layers of width 64) classify MNIST-1D:
three activations, each in four forms:

* ``plain``               ``h = act(W h + b)``
* ``residual``            ``h = h + act(W h + b)``
* ``layernorm``           ``h = act(W LN(h) + b)``
* ``residual+layernorm``  ``h = h + act(W LN(h) + b)`` (pre-norm residual, as in transformers)

with the customary initialisation (Glorot normal for sigmoid and tanh, He normal for ReLU).
The gradient of the loss with respect to every layer's parameters comes from
``funcgrad.value_and_grad`` inside the jitted step, and ``funcgrad.diagnostics.grad_norms``
turns it into one norm per layer, at initialisation and at every training step (plain SGD
with momentum, which, unlike Adam, does not rescale a small gradient back up).

Teaching material says what to expect: the derivative of the sigmoid is at most 1/4, so each
plain sigmoid layer shrinks the back-propagated signal, and the first layers of a deep sigmoid
network receive a gradient many orders of magnitude smaller than the last, and barely learn.
Residual connections add an identity path to every layer's Jacobian; layer norm keeps the
pre-activations in the sigmoid's sensitive range.

The hidden layers are stacked and run with ``lax.scan`` (one compiled layer, any depth).

    python experiments/vanishing_gradients.py            # depth 20, 1500 steps
    python experiments/vanishing_gradients.py --quick    # depth 10, 60 steps
"""

from __future__ import annotations

import time

import _common
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import funcgrad
from funcgrad import nn
from funcgrad.diagnostics import grad_norms, plot_grad_flow

NAME = "vanishing_gradients"
ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}
INITIALISERS = {
    "sigmoid": nn.initializers.glorot_normal,
    "tanh": nn.initializers.glorot_normal,
    "relu": nn.initializers.he_normal,
}
FORMS = {  # name: (residual, layer norm)
    "plain": (False, False),
    "residual": (True, False),
    "layernorm": (False, True),
    "residual+layernorm": (True, True),
}


def init_network(key, activation: str, depth: int, width: int, d_in: int, classes: int) -> dict:
    """Parameters of ``d_in -> width -> [depth x (width -> width)] -> classes``.

    Returns:
        ``{"stem": dense (d_in, width), "blocks": {"dense": {"w": (depth, width, width),
        "b": (depth, width)}, "norm": {"scale": (depth, width), "bias": (depth, width)}},
        "head": dense (width, classes)}``; the norm parameters are used only with layer norm.
    """
    w_init = INITIALISERS[activation]()
    k_stem, k_blocks, k_head = jax.random.split(key, 3)
    blocks = jax.vmap(lambda k: nn.init_dense(k, width, width, w_init=w_init))(
        jax.random.split(k_blocks, depth)
    )
    norm = jax.tree.map(lambda p: jnp.broadcast_to(p, (depth, *p.shape)), nn.init_layer_norm(width))
    return {
        "stem": nn.init_dense(k_stem, d_in, width, w_init=w_init),
        "blocks": {"dense": blocks, "norm": norm},
        "head": nn.init_dense(k_head, width, classes, w_init=INITIALISERS["tanh"]()),
    }


def activate(kind, z: jax.Array) -> jax.Array:
    """``list(ACTIVATIONS.values())[kind](z)``; ``kind`` may be a traced index (``lax.switch``)."""
    return lax.switch(kind, list(ACTIVATIONS.values()), z)


def network(params: dict, x: jax.Array, kind, residual, normed) -> jax.Array:
    """Logits ``(N, classes)`` for ``x: (N, d_in)``.

    Args:
        params: from :func:`init_network`.
        x: ``(N, d_in)``.
        kind: index of the activation in :data:`ACTIVATIONS` (0 sigmoid, 1 tanh, 2 relu).
        residual, normed: booleans selecting the form (see :data:`FORMS`).

    The three switches may be traced scalars: the experiment vmaps the twelve networks side
    by side in one compiled program, where ``lax.switch`` and ``jnp.where`` pick each network's
    path and the paths not taken get an exactly zero gradient.
    """
    h = activate(kind, nn.dense(params["stem"], x))

    def block(h, layer):
        z = jnp.where(normed, nn.layer_norm(layer["norm"], h), h)
        out = activate(kind, nn.dense(layer["dense"], z))
        return jnp.where(residual, h + out, out), None

    h, _ = lax.scan(block, h, params["blocks"])
    return nn.dense(params["head"], h)


def per_layer(grads: dict) -> dict:
    """The gradient pytree as ``{"layers": [stem, block 1, ..., block depth, head]}``."""
    depth = grads["blocks"]["dense"]["w"].shape[0]
    blocks = [jax.tree.map(lambda leaf, i=i: leaf[i], grads["blocks"]) for i in range(depth)]
    return {"layers": [grads["stem"], *blocks, grads["head"]]}


def layer_norms(grads: dict) -> jax.Array:
    """``(depth + 2,)`` Euclidean norms of each layer's parameter gradient, input side first."""
    norms = grad_norms(per_layer(grads), depth=2)
    return jnp.stack(list(norms.values()))


def make_experiment(cfg, optimizer):
    """One compiled function that initialises and trains all twelve networks side by side.

    ``run(key, kind, residual, normed, profile_idx, idx, x, y, x_test, y_test)`` takes
    ``kind`` (activation index), ``residual`` and ``normed`` as ``(12,)`` arrays (vmapped)
    and returns, per network: ``init_layer_norms`` ``(depth + 2,)`` averaged over the batches
    ``profile_idx`` ``(P, B)``; the per-step ``train_loss`` ``(steps,)`` and ``layer_norms``
    ``(steps, depth + 2)`` of SGD on the batches ``idx`` ``(steps, B)`` (one ``lax.scan``);
    and the final ``test_accuracy``. Networks of one activation start from the same weights.
    """

    def run(key, kind, residual, normed, profile_idx, idx, x, y, x_test, y_test):
        shape = (cfg.depth, cfg.width, x.shape[1], 10)
        initial = [init_network(key, name, *shape) for name in ACTIVATIONS]  # all compiled,
        params = jax.tree.map(lambda *p: jnp.stack(p)[kind], *initial)  # this one picked

        def loss(params, xb, yb):
            return nn.softmax_cross_entropy(network(params, xb, kind, residual, normed), yb)

        def profile(i):
            return layer_norms(funcgrad.grad(loss)(params, x[i], y[i]))

        def step(carry, i):
            params, opt_state = carry
            value, grads = funcgrad.value_and_grad(loss)(params, x[i], y[i])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (value, layer_norms(grads))

        init_profile = jnp.mean(lax.map(profile, profile_idx), axis=0)
        carry = (params, optimizer.init(params))
        (params, _), (losses, norms) = lax.scan(step, carry, idx)
        logits = network(params, x_test, kind, residual, normed)
        return {
            "init_layer_norms": init_profile,
            "train_loss": losses,
            "layer_norms": norms,
            "test_accuracy": nn.accuracy(logits, y_test),
        }

    return jax.jit(jax.vmap(run, in_axes=(None, 0, 0, 0) + (None,) * 6))


def batches(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch_size)`` indices, a fresh permutation each epoch."""
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    order = [rng.permutation(n)[: per_epoch * batch_size] for _ in range(-(-steps // per_epoch))]
    return np.concatenate(order).reshape(-1, batch_size)[:steps].astype(np.int32)


def optimizer(cfg) -> optax.GradientTransformation:
    """SGD with momentum 0.9 after clipping the global gradient norm to ``cfg.clip``.

    Clipping rescales every layer's gradient by the same factor, so it leaves the
    first-to-last ratio alone; it keeps the networks whose forward signal explodes (ReLU with
    unnormalised residual connections doubles its variance per layer) from diverging.
    """
    return optax.chain(optax.clip_by_global_norm(cfg.clip), optax.sgd(cfg.lr, momentum=0.9))


def run_all(data: dict, cfg) -> dict:
    """Train the twelve networks; ``{"<activation>/<form>": summary}``."""
    names = [(act, form) for act in ACTIVATIONS for form in FORMS]
    kind = jnp.array([list(ACTIVATIONS).index(act) for act, _ in names])
    residual = jnp.array([FORMS[form][0] for _, form in names])
    normed = jnp.array([FORMS[form][1] for _, form in names])
    order = batches(len(data["y"]), cfg.batch_size, cfg.steps + cfg.profile_batches, cfg.seed)
    run = make_experiment(cfg, optimizer(cfg))
    out = run(
        jax.random.key(cfg.seed, impl="rbg"),  # rbg: quicker to compile than threefry
        kind,
        residual,
        normed,
        jnp.asarray(order[: cfg.profile_batches]),
        jnp.asarray(order[cfg.profile_batches :]),
        *(jnp.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")),
    )
    out = jax.tree.map(lambda v: np.asarray(v, np.float64), out)
    window = max(1, cfg.steps // 10)
    summaries = {}
    for i, (act, form) in enumerate(names):
        init, norms, losses = (
            out["init_layer_norms"][i],
            out["layer_norms"][i],
            out["train_loss"][i],
        )
        summaries[f"{act}/{form}"] = {
            "init_layer_norms": init,
            "init_ratio_first_to_last": float(init[0] / init[-1]),
            "final_layer_norms": norms[-window:].mean(0),
            "final_ratio_first_to_last": float(
                norms[-window:, 0].mean() / norms[-window:, -1].mean()
            ),
            "train_loss": losses,
            "layer_norms_history": norms,
            "initial_train_loss": float(losses[0]),
            "final_train_loss": float(losses[-window:].mean()),
            "test_accuracy": float(out["test_accuracy"][i]),
        }
    return summaries


def plot_init_profiles(runs: dict, depth: int, path) -> None:
    """Gradient norm against layer at initialisation, one panel per activation."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for ax, activation in zip(axes, ACTIVATIONS, strict=True):
        for form in FORMS:
            profile = runs[f"{activation}/{form}"]["init_layer_norms"]
            ax.plot(range(depth + 2), profile, marker=".", label=form)
        ax.set(
            yscale="log",
            xlabel="layer (0 = input layer, last = output layer)",
            title=f"{activation}: gradient norm per layer at init",
        )
    axes[0].set_ylabel("|dL/d(layer parameters)|")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{depth} hidden layers: back-propagated gradient from output (right) to input")
    _common.save_figure(fig, path)


def plot_training(runs: dict, path) -> None:
    """Top: training loss; bottom: first-layer / last-layer gradient-norm ratio, per step."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharex=True)
    for col, activation in enumerate(ACTIVATIONS):
        for form in FORMS:
            run = runs[f"{activation}/{form}"]
            loss = np.asarray(run["train_loss"])
            smooth = np.convolve(loss, np.ones(10) / 10, mode="valid") if loss.size > 10 else loss
            axes[0, col].plot(smooth, label=form)
            hist = np.asarray(run["layer_norms_history"])
            axes[1, col].plot(hist[:, 0] / hist[:, -1], label=form, lw=0.8)
        axes[0, col].set(title=activation, yscale="log", ylabel="training loss (10-step mean)")
        axes[1, col].set(yscale="log", xlabel="SGD step", ylabel="first / last layer grad norm")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("training with SGD + momentum: loss and the gradient reaching the first layer")
    _common.save_figure(fig, path)


def add_arguments(parser) -> None:
    parser.add_argument("--depth", type=int, help="hidden layers (default 20; quick 10)")
    parser.add_argument("--width", type=int, help="units per layer (default 64; quick 32)")
    parser.add_argument("--steps", type=int, help="SGD steps (default 1500; quick 60)")
    parser.add_argument("--samples", type=int, help="MNIST-1D size (default 5000; quick 500)")
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile-batches", type=int, default=4, help="batches averaged in the init profile"
    )


def main(argv=None) -> dict:
    t0 = time.perf_counter()
    cfg = _common.parse_args(NAME, __doc__.splitlines()[0], argv, add_arguments)
    cfg.depth = cfg.depth or (10 if cfg.quick else 20)
    cfg.width = cfg.width or (32 if cfg.quick else 64)
    cfg.steps = cfg.steps or (60 if cfg.quick else 1500)
    cfg.samples = cfg.samples or (500 if cfg.quick else 5000)
    data = _common.load_mnist1d(cfg.samples)
    print(
        f"{cfg.depth} hidden layers of width {cfg.width}; MNIST-1D {len(data['y'])} train "
        f"signals; SGD lr {cfg.lr}, momentum 0.9, gradient norm clipped to {cfg.clip}, "
        f"{cfg.steps} steps of batch {cfg.batch_size}"
    )
    runs = run_all(data, cfg)

    rows = [
        [
            name,
            f"{run['init_ratio_first_to_last']:.1e}",
            f"{run['final_ratio_first_to_last']:.1e}",
            f"{run['final_train_loss']:.3f}",
            f"{100 * run['test_accuracy']:.1f}",
        ]
        for name, run in runs.items()
    ]
    headers = ["network", "first/last |grad| at init", "after training", "train loss", "test %"]
    print("\n" + _common.format_table(headers, rows))

    plot_init_profiles(runs, cfg.depth, cfg.out / "init_profiles.png")
    plot_training(runs, cfg.out / "training.png")
    for name in ("sigmoid/plain", "sigmoid/residual+layernorm"):
        hist = runs[name]["layer_norms_history"]
        series = {f"layer {i}": hist[:, i] for i in range(hist.shape[1])}
        fig = plot_grad_flow(series, title=f"gradient flow during training: {name}")
        _common.save_figure(
            fig, cfg.out / f"grad_flow_{name.replace('/', '_').replace('+', '_')}.png"
        )

    keep = (
        "init_layer_norms",
        "init_ratio_first_to_last",
        "final_layer_norms",
        "final_ratio_first_to_last",
        "initial_train_loss",
        "final_train_loss",
        "test_accuracy",
    )
    stride = max(1, cfg.steps // 100)
    results = {
        "networks": {
            name: {
                **{k: run[k] for k in keep},
                "train_loss_every_step": run["train_loss"],
                "layer_norms_every": {
                    "stride": stride,
                    "norms": run["layer_norms_history"][::stride],
                },
            }
            for name, run in runs.items()
        },
        "config": {
            "depth": cfg.depth,
            "width": cfg.width,
            "steps": cfg.steps,
            "lr": cfg.lr,
            "momentum": 0.9,
            "clip_global_norm": cfg.clip,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "train_size": len(data["y"]),
            "quick": cfg.quick,
            "initialisation": {k: v.__name__ for k, v in INITIALISERS.items()},
            "layers": "index 0 = input layer, 1..depth = hidden blocks, depth+1 = output layer",
        },
        "machine": _common.machine_note(),
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }
    _common.write_json(cfg.out / "results.json", results)
    print(f"\nwall time {results['wall_time_s']:.0f} s; results and plots in {cfg.out}/")
    return results


if __name__ == "__main__":
    main()
