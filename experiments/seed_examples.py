"""The worked examples of back-propagation teaching material, each computed by funcgrad.

Every example prints funcgrad's gradient beside the closed form a student derives by hand:

1. gear ratios compose by multiplication: ``dy/du = 3``, ``du/dx = 2`` so ``dy/dx = 6``;
2. ``y = (3x + 1)^2`` gives ``dy/dx = 18x + 6``;
3. ``y = (x + 2)^2 + 5`` gives ``dy/dx = 2x + 4``;
4. ``f(x, y) = (x + y)(x - y)`` gives ``(2x, -2y)``: ``x`` reaches ``f`` along two branches,
   whose contributions ``(x - y)`` and ``(x + y)`` sum to ``2x``;
5. ``y = (w1 x1 + w2 x2)^2``: ``dy/dw_i = 2 s x_i`` and ``dy/dx_i = 2 s w_i`` with
   ``s = w1 x1 + w2 x2``;
6. a dense layer ``z = W x + b`` under ``L = |z - t|^2 / 2``: with ``delta = z - t``,
   ``dL/dW = delta x^T``, ``dL/db = delta``, ``dL/dx = W^T delta``;
7. ReLU passes the upstream gradient where its input is positive and blocks it elsewhere;
8. sigmoid followed by binary cross-entropy: ``dL/dz = y_hat - y`` at the logit;
9. linear regression by gradient descent with a learning rate too large (diverges), too small
   (crawls) and right (converges), one plot of the three loss curves.

    python experiments/seed_examples.py            # prints the examples, writes the plot
    python experiments/seed_examples.py --quick    # the same with fewer descent steps
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcgrad

NAME = "seed_examples"
RTOL = 1e-5  # float32: funcgrad and the closed form agree to rounding


def _compare(got, want) -> float:
    """Largest ``|got - want|`` relative to ``max(1, |want|)``."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def _example(title: str, formula: str, inputs: dict, got: dict, want: dict) -> dict:
    """One example's record: its inputs, funcgrad's numbers, the closed form and the gap."""
    gap = max(_compare(got[k], want[k]) for k in want)
    return {
        "title": title,
        "formula": formula,
        "inputs": inputs,
        "funcgrad": got,
        "closed_form": want,
        "max_rel_diff": gap,
        "match": gap <= RTOL,
    }


def gear_ratios() -> dict:
    """Gear B turns 2x as fast as A (``u = 2x``), C 3x as fast as B (``y = 3u``)."""

    def gear_b(x):
        return 2.0 * x

    def gear_c(u):
        return 3.0 * u

    x = jnp.float32(1.5)
    got = {
        "dy/du": funcgrad.grad(gear_c)(gear_b(x)),
        "du/dx": funcgrad.grad(gear_b)(x),
        "dy/dx": funcgrad.grad(lambda x: gear_c(gear_b(x)))(x),
    }
    want = {"dy/du": 3.0, "du/dx": 2.0, "dy/dx": 3.0 * 2.0}
    return _example("gear ratios", "dy/dx = dy/du * du/dx = 3 x 2 = 6", {"x": x}, got, want)


def square_of_affine(xs) -> dict:
    """``y = (3x + 1)^2``: outer derivative ``2(3x + 1)`` times inner ``3``."""
    grads = jax.vmap(funcgrad.grad(lambda x: (3.0 * x + 1.0) ** 2))(xs)
    return _example(
        "y = (3x + 1)^2", "dy/dx = 18x + 6", {"x": xs}, {"dy/dx": grads}, {"dy/dx": 18 * xs + 6}
    )


def shifted_square(xs) -> dict:
    """``y = (x + 2)^2 + 5``: the constant 5 drops out."""
    grads = jax.vmap(funcgrad.grad(lambda x: (x + 2.0) ** 2 + 5.0))(xs)
    return _example(
        "y = (x + 2)^2 + 5", "dy/dx = 2x + 4", {"x": xs}, {"dy/dx": grads}, {"dy/dx": 2 * xs + 4}
    )


def branch_sum(x: float, y: float) -> dict:
    """``f = (x + y)(x - y)``; the branches are separated by giving each its own copy of ``x``."""

    def f(x, y):
        return (x + y) * (x - y)

    def f_split(x_plus, x_minus, y):  # x_plus feeds only (x + y), x_minus only (x - y)
        return (x_plus + y) * (x_minus - y)

    x, y = jnp.float32(x), jnp.float32(y)
    dfdx, dfdy = funcgrad.grad(f, argnums=(0, 1))(x, y)
    via_plus, via_minus = funcgrad.grad(f_split, argnums=(0, 1))(x, x, y)
    got = {
        "df/dx": dfdx,
        "df/dy": dfdy,
        "branch (x + y)": via_plus,
        "branch (x - y)": via_minus,
        "branch sum": via_plus + via_minus,
    }
    want = {
        "df/dx": 2 * x,
        "df/dy": -2 * y,
        "branch (x + y)": x - y,
        "branch (x - y)": x + y,
        "branch sum": 2 * x,
    }
    formula = "df/dx = (x - y) + (x + y) = 2x,  df/dy = (x - y) - (x + y) = -2y"
    return _example("f(x, y) = (x + y)(x - y)", formula, {"x": x, "y": y}, got, want)


def weighted_sum_squared(w1, w2, x1, x2) -> dict:
    """``y = (w1 x1 + w2 x2)^2``: every partial is ``2s`` times the other factor."""

    def y(w1, w2, x1, x2):
        return (w1 * x1 + w2 * x2) ** 2

    args = [jnp.float32(v) for v in (w1, w2, x1, x2)]
    grads = funcgrad.grad(y, argnums=(0, 1, 2, 3))(*args)
    w1, w2, x1, x2 = args
    s = w1 * x1 + w2 * x2
    names = ("dy/dw1", "dy/dw2", "dy/dx1", "dy/dx2")
    want = dict(zip(names, (2 * s * x1, 2 * s * x2, 2 * s * w1, 2 * s * w2), strict=True))
    inputs = {"w1": w1, "w2": w2, "x1": x1, "x2": x2}
    formula = "s = w1 x1 + w2 x2;  dy/dw_i = 2 s x_i,  dy/dx_i = 2 s w_i"
    return _example(
        "y = (w1 x1 + w2 x2)^2", formula, inputs, dict(zip(names, grads, strict=True)), want
    )


def dense_layer(key) -> dict:
    """``z = W x + b`` (``W``: (3, 4)) and ``L = |z - t|^2 / 2``."""
    k_w, k_b, k_x, k_t = jax.random.split(key, 4)
    w = jax.random.normal(k_w, (3, 4))
    b = jax.random.normal(k_b, (3,))
    x = jax.random.normal(k_x, (4,))
    t = jax.random.normal(k_t, (3,))

    def loss(w, b, x):
        z = w @ x + b
        return 0.5 * jnp.sum((z - t) ** 2)

    dw, db, dx = funcgrad.grad(loss, argnums=(0, 1, 2))(w, b, x)
    delta = w @ x + b - t
    got = {"dL/dW": dw, "dL/db": db, "dL/dx": dx}
    want = {"dL/dW": jnp.outer(delta, x), "dL/db": delta, "dL/dx": w.T @ delta}
    formula = "delta = W x + b - t;  dL/dW = delta x^T,  dL/db = delta,  dL/dx = W^T delta"
    inputs = {"W": w, "b": b, "x": x, "t": t}
    return _example("dense layer z = W x + b", formula, inputs, got, want)


def relu_gate(z, upstream) -> dict:
    """The VJP of ReLU: ``upstream * (z > 0)`` (at ``z = 0`` JAX and funcgrad pick 0)."""
    _, pullback = funcgrad.vjp(jax.nn.relu, z)
    (got,) = pullback(upstream)
    want = jnp.where(z > 0, upstream, 0.0)
    formula = "dL/dz = dL/da * 1[z > 0]: passes where z > 0, blocks where z <= 0"
    inputs = {"z": z, "dL/da": upstream}
    return _example("ReLU passes or blocks", formula, inputs, {"dL/dz": got}, {"dL/dz": want})


def sigmoid_cross_entropy(z, y) -> dict:
    """``L = -(y log y_hat + (1 - y) log(1 - y_hat))`` with ``y_hat = sigmoid(z)``, composed."""

    def loss(z, y):
        y_hat = jax.nn.sigmoid(z)
        return -(y * jnp.log(y_hat) + (1.0 - y) * jnp.log(1.0 - y_hat))

    got = jax.vmap(funcgrad.grad(loss))(z, y)
    want = jax.nn.sigmoid(z) - y
    formula = (
        "dL/dz = dL/dy_hat * dy_hat/dz = (y_hat - y) / (y_hat (1 - y_hat)) * y_hat (1 - y_hat)"
    )
    inputs = {"z": z, "y": y}
    return _example(
        "sigmoid + binary cross-entropy", formula, inputs, {"dL/dz": got}, {"dL/dz": want}
    )


def linear_regression(key, steps: int) -> dict:
    """Fit ``y = w x + b`` by gradient descent at three learning rates.

    The loss is the mean squared error, a quadratic whose Hessian ``H`` (from
    ``funcgrad.hessian``) is constant: descent converges iff ``lr < 2 / lambda_max(H)``. The
    three rates are ``1.1 * 2 / lambda_max`` (too large: diverges), ``0.02 / lambda_max`` (too
    small: crawls) and ``1 / lambda_max`` (right).
    """
    k_x, k_noise = jax.random.split(key)
    x = jax.random.uniform(k_x, (64,), minval=-1.0, maxval=3.0)
    y = 2.0 * x + 1.0 + 0.3 * jax.random.normal(k_noise, (64,))

    def loss(theta):
        return jnp.mean((theta[0] * x + theta[1] - y) ** 2)

    theta0 = jnp.zeros(2)
    hess = funcgrad.hessian(loss)(theta0)
    lam_max = float(np.max(np.linalg.eigvalsh(np.asarray(hess, np.float64))))
    design = np.stack([np.asarray(x), np.ones(64)], axis=1)
    best = np.linalg.lstsq(design, np.asarray(y), rcond=None)[0]
    rates = {"too large": 1.1 * 2 / lam_max, "too small": 0.02 / lam_max, "right": 1 / lam_max}
    curves, finals = {}, {}
    for name, lr in rates.items():
        opt = optax.sgd(lr)

        @jax.jit
        def step(theta, state, opt=opt):
            value, g = funcgrad.value_and_grad(loss)(theta)
            updates, state = opt.update(g, state)
            return optax.apply_updates(theta, updates), state, value

        theta, state, losses = theta0, opt.init(theta0), []
        for _ in range(steps):
            theta, state, value = step(theta, state)
            losses.append(float(value))
        losses.append(float(loss(theta)))
        curves[name], finals[name] = losses, np.asarray(theta)
    hess_closed = 2 * np.array([[np.mean(x**2), np.mean(x)], [np.mean(x), 1.0]])
    got = {"hessian": hess, "theta (right lr)": finals["right"]}
    want = {"hessian": hess_closed, "theta (right lr)": best}
    formula = "H = 2 [[mean x^2, mean x], [mean x, 1]];  GD converges iff lr < 2 / lambda_max(H)"
    record = _example("linear regression by gradient descent", formula, {"x": x, "y": y}, got, want)
    # theta after `steps` steps is close to, not equal to, the least-squares optimum
    record["max_rel_diff"] = _compare(hess, hess_closed)
    record["theta_gap_right_lr"] = _compare(finals["right"], best)
    record["match"] = record["max_rel_diff"] <= RTOL and record["theta_gap_right_lr"] < 1e-2
    record.update(
        learning_rates=rates,
        lambda_max=lam_max,
        loss_curves=curves,
        final_theta={k: v.tolist() for k, v in finals.items()},
        least_squares_theta=best.tolist(),
        least_squares_loss=float(loss(jnp.asarray(best, jnp.float32))),
    )
    return record


def plot_learning_rates(record: dict, path) -> None:
    """The three loss curves of :func:`linear_regression` on a log scale."""
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    styles = {"too large": "C3", "too small": "C1", "right": "C2"}
    for name, losses in record["loss_curves"].items():
        lr = record["learning_rates"][name]
        ax.plot(losses, color=styles[name], label=f"{name}: lr = {lr:.3g}")
    best = record["least_squares_loss"]
    ax.axhline(best, color="0.5", ls=":", lw=0.8, label=f"least-squares minimum {best:.3g}")
    start = record["loss_curves"]["right"][0]
    ax.set_ylim(0.5 * best, 1e3 * start)  # the divergent curve leaves through the top
    ax.set(
        yscale="log",
        xlabel="gradient-descent step",
        ylabel="mean squared error",
        title=f"linear regression, three learning rates (2 / lambda_max = "
        f"{2 / record['lambda_max']:.3g})",
    )
    ax.legend()
    _common.save_figure(fig, path)


def print_example(i: int, record: dict) -> None:
    """One example: title, closed form, then a row per quantity (funcgrad | closed form)."""
    status = "ok" if record["match"] else "MISMATCH"
    print(f"\n[{i}] {record['title']}    ({status}, max rel diff {record['max_rel_diff']:.1e})")
    print(f"    closed form: {record['formula']}")
    rows = [
        [key, _fmt(got), _fmt(record["closed_form"][key])]
        for key, got in record["funcgrad"].items()
    ]
    if max(len(cell) for row in rows for cell in row) <= 48:
        table = _common.format_table(["quantity", "funcgrad", "closed form"], rows)
        print("\n".join("    " + line for line in table.splitlines()))
        return
    for key, got, want in rows:  # wide values (matrices): one line each
        print(f"    {key:>8}  funcgrad    {got}\n    {'':>8}  closed form {want}")


def _fmt(value) -> str:
    arr = np.asarray(value, np.float64)
    return np.array2string(arr, precision=4, suppress_small=True, separator=", ").replace("\n", "")


def main(argv=None) -> dict:
    args = _common.parse_args(NAME, __doc__.splitlines()[0], argv)
    key = jax.random.key(0)
    k_dense, k_reg = jax.random.split(key)
    xs = jnp.array([-2.0, -1.0, 0.0, 0.5, 3.0])
    examples = [
        gear_ratios(),
        square_of_affine(xs),
        shifted_square(xs),
        branch_sum(3.0, 2.0),
        weighted_sum_squared(0.5, -1.5, 2.0, 1.0),
        dense_layer(k_dense),
        relu_gate(jnp.array([-2.0, -0.5, 0.0, 0.5, 3.0]), jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])),
        sigmoid_cross_entropy(jnp.array([-3.0, -1.0, 0.0, 1.0, 3.0]), jnp.array([0.0, 1, 1, 0, 1])),
        linear_regression(k_reg, steps=25 if args.quick else 60),
    ]
    for i, record in enumerate(examples, start=1):
        print_example(i, record)
    plot_learning_rates(examples[-1], args.out / "learning_rates.png")
    results = {"examples": examples, "all_match": all(r["match"] for r in examples)}
    _common.write_json(args.out / "results.json", results)
    verdict = "every example matches its closed form" if results["all_match"] else "MISMATCHES"
    print(f"\n{verdict}; results and plot in {args.out}/")
    return results


if __name__ == "__main__":
    main()
