"""The same MLP trained on MNIST-1D with funcgrad gradients on 1, 2, 4 and 8 devices.

Data parallelism is JAX's: the batch is split over a one-axis mesh (``NamedSharding``), the
parameters are replicated, and ``jax.jit`` partitions funcgrad's forward and backward pass,
inserting the gradient all-reduce. The loss curves must coincide (up to float32 summation
order); step times are reported. On a CPU the devices are simulated
(``--xla_force_host_platform_device_count``) and share the same cores, so the timings show
the overhead of partitioning, not a speed-up; on a multi-GPU machine the same script uses
the real devices (see docs/scaling.md).

    python experiments/data_parallel.py --quick --out /tmp/dp     # ~1 minute on 2 CPU cores
    python experiments/data_parallel.py --out results/data_parallel

Writes ``results.json`` and ``loss_curves.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):  # must precede JAX's CPU backend
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=8".strip()

import _common  # noqa: E402  (experiments/_common.py: shared data loading)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm import tqdm  # noqa: E402

import funcgrad  # noqa: E402
from funcgrad.parallel import data_parallel_mesh, replicate, shard_batch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="few steps, small data (smoke test)")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("results/data_parallel"),
        help="folder for results.json and loss_curves.png",
    )
    ap.add_argument("--devices", default="1,2,4,8", help="device counts, comma separated")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 600)")
    ap.add_argument("--batch", type=int, default=128, help="global batch size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--x64",
        action="store_true",
        help="float64 throughout: curves then agree to ~1e-13, not float32's ~1e-7",
    )
    args = ap.parse_args(argv)
    args.devices = [int(n) for n in args.devices.split(",")]
    if args.steps is None:
        args.steps = 30 if args.quick else 600
    bad = [n for n in args.devices if args.batch % n]
    if bad:
        ap.error(f"--batch {args.batch} must be divisible by every device count; not by {bad}")
    return args


def load_mnist1d(quick: bool, seed: int) -> dict:
    """MNIST-1D, generated locally: x (N, 40), y (N,) int32, and a test split."""
    data = _common.load_mnist1d(num_samples=1000 if quick else 5000, seed=seed)
    return {k: np.asarray(v, np.int32 if k.startswith("y") else float) for k, v in data.items()}


def init_mlp(key, sizes=(40, 128, 128, 10)) -> list[dict]:
    """One {"w": (n_in, n_out), "b": (n_out,)} per layer, LeCun-normal weights."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (i, o)) / np.sqrt(i), "b": jnp.zeros((o,))}
        for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params, x):
    """x: (B, 40) -> logits (B, 10)."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"][None, :])
    return x @ params[-1]["w"] + params[-1]["b"][None, :]


def loss_fn(params, batch):
    logits = mlp(params, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def make_step(opt, grad_transform=funcgrad.value_and_grad):
    @jax.jit
    def step(params, state, batch):
        loss, grads = grad_transform(loss_fn)(params, batch)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return step


def batch_indices(n_train, n_steps, batch, seed) -> np.ndarray:
    """The same sequence of minibatches for every device count: (n_steps, batch)."""
    rng = np.random.default_rng(seed)
    per_epoch = n_train // batch
    epochs = -(-n_steps // per_epoch)
    order = np.concatenate([rng.permutation(n_train)[: per_epoch * batch] for _ in range(epochs)])
    return order.reshape(-1, batch)[:n_steps]


def train(n_devices, data, idx, args, grad_transform=funcgrad.value_and_grad) -> dict:
    """Train from the same initialisation on ``n_devices``; losses, step times, accuracy."""
    mesh = data_parallel_mesh(n_devices)
    opt = optax.adam(1e-3)
    params = replicate(init_mlp(jax.random.key(args.seed)), mesh)
    state = replicate(opt.init(params), mesh)
    step = make_step(opt, grad_transform)
    losses, times = [], []
    for k in tqdm(range(len(idx)), desc=f"{n_devices} device(s)", leave=False):
        batch = shard_batch({"x": data["x"][idx[k]], "y": data["y"][idx[k]]}, mesh)
        t0 = time.perf_counter()
        params, state, loss = step(params, state, batch)
        losses.append(float(loss))  # blocks until the step is done
        times.append(time.perf_counter() - t0)
    logits = jax.jit(mlp)(params, data["x_test"])
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == data["y_test"]))
    return {
        "devices": n_devices,
        "losses": losses,
        "test_accuracy": accuracy,
        "step_time_median_s": float(np.median(times[1:])),  # step 0 compiles
        "compile_and_first_step_s": times[0],
    }


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
    base = np.asarray(runs[0]["losses"])
    for run in runs:
        ax.plot(run["losses"], label=f"{run['devices']} device(s)", alpha=0.8)
        if run is not runs[0]:
            diff = np.abs(np.asarray(run["losses"]) - base) + 1e-12
            ax_diff.semilogy(diff, label=f"{run['devices']} vs {runs[0]['devices']}")
    ax.set(xlabel="step", ylabel="training loss", title="MNIST-1D MLP, funcgrad gradients")
    ax_diff.set(
        xlabel="step", ylabel="|loss difference| (+1e-12)", title="difference to the first run"
    )
    ax.legend()
    ax_diff.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", args.x64)
    if max(args.devices) > jax.device_count():
        sys.exit(f"asked for {max(args.devices)} devices, JAX sees {jax.device_count()}")
    data = load_mnist1d(args.quick, args.seed)
    dtype = np.float64 if args.x64 else np.float32
    data = {k: v.astype(dtype) if k.startswith("x") else v for k, v in data.items()}
    idx = batch_indices(len(data["x"]), args.steps, args.batch, args.seed)
    runs = [train(n, data, idx, args) for n in args.devices]
    reference = train(1, data, idx, args, jax.value_and_grad)  # jax.grad, one device
    base = np.asarray(runs[0]["losses"])
    for run in runs:
        run["max_abs_loss_diff_vs_first"] = float(np.max(np.abs(np.asarray(run["losses"]) - base)))
        run["max_abs_loss_diff_vs_jax_grad"] = float(
            np.max(np.abs(np.asarray(run["losses"]) - np.asarray(reference["losses"])))
        )
    result = {
        "config": {
            "steps": args.steps,
            "global_batch": args.batch,
            "quick": args.quick,
            "model": "MLP 40-128-128-10, relu, adam(1e-3)",
            "dtype": "float64" if args.x64 else "float32",
            "platform": jax.devices()[0].platform,
            "jax": jax.__version__,
        },
        "runs": runs,
        "jax_grad_reference": {k: reference[k] for k in ("losses", "test_accuracy")},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    plot(runs, args.out / "loss_curves.png")
    print(
        f"{'devices':>8} {'final loss':>11} {'test acc':>9} {'step ms':>8} "
        f"{'max|dloss| vs 1st':>18} {'vs jax.grad':>12}"
    )
    for r in runs:
        print(
            f"{r['devices']:>8} {r['losses'][-1]:>11.5f} {r['test_accuracy']:>9.3f} "
            f"{1e3 * r['step_time_median_s']:>8.2f} {r['max_abs_loss_diff_vs_first']:>18.2e} "
            f"{r['max_abs_loss_diff_vs_jax_grad']:>12.2e}"
        )
    print(f"wrote {args.out / 'results.json'} and {args.out / 'loss_curves.png'}")
    return result


if __name__ == "__main__":
    main()
