"""Scratch probe: compiled CPU time of formulations of the conv input and kernel gradients.

Workload: NHWC input 128x28x28x1, conv 3x3 -> 32 channels, conv 3x3 -> 64 channels, 'SAME'.
Each candidate is jitted on its own and timed (median of repeats after a warm-up); every
candidate is checked against ``jax.vjp`` before it is timed.  Private, not part of the API.

    .venv/bin/python benchmarks/_conv_probe.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as p

import funcgrad.rules  # noqa: F401  (registers the rules)
from funcgrad._registry import lookup

NHWC = ("NHWC", "HWIO", "NHWC")
RULE = lookup(p.conv_general_dilated_p).rule


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def conv_params(x, w):
    return jax.make_jaxpr(conv)(x, w).eqns[0].params


def timed_all(fns, *args, rounds=15):
    """Best-of-``rounds`` milliseconds per function, rounds interleaved to share the noise."""
    jitted = [jax.jit(fn) for fn in fns]
    for fn in jitted:
        jax.block_until_ready(fn(*args))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(jitted):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[k] = min(best[k], time.perf_counter() - t0)
    return [1e3 * b for b in best]


def compiled_cost(fn, *args):
    """(GFLOPs, MB accessed, MB temp) of the compiled program; independent of machine load."""
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    temp = compiled.memory_analysis().temp_size_in_bytes
    return cost.get("flops", 0.0) / 1e9, cost.get("bytes accessed", 0.0) / 1e6, temp / 1e6


# ----- input-gradient candidates: g (N,H,W,O), w (3,3,I,O) -> (N,H,W,I) ----------------------


def dx_jax(x, w, g):
    return jax.vjp(conv, x, w)[1](g)[0]


def dx_funcgrad(x, w, g):
    return RULE(g, None, x, w, **conv_params(x, w))[0]


def dx_flip_hwoi_physical(x, w, g):
    """Flip the kernel and physically transpose it to HWIO with I and O exchanged."""
    del x
    wt = jnp.swapaxes(lax.rev(w, (0, 1)), 2, 3)
    return lax.conv_general_dilated(g, wt, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC)


def dx_nchw(x, w, g):
    """Same conv computed in NCHW/OIHW layout, transposing in and out."""
    del x
    wt = jnp.transpose(lax.rev(w, (0, 1)), (2, 3, 0, 1))  # (I, O, 3, 3) = OIHW for g -> x
    gt = jnp.transpose(g, (0, 3, 1, 2))
    out = lax.conv_general_dilated(gt, wt, (1, 1), ((1, 1), (1, 1)))
    return jnp.transpose(out, (0, 2, 3, 1))


def dx_conv_transpose(x, w, g):
    """JAX's public transposed convolution with transpose_kernel=True."""
    del x
    return lax.conv_transpose(g, w, (1, 1), "SAME", dimension_numbers=NHWC, transpose_kernel=True)


# ----- kernel-gradient candidates: x (N,H,W,I), g (N,H,W,O) -> (3,3,I,O) ---------------------


def dw_jax(x, w, g):
    return jax.vjp(conv, x, w)[1](g)[1]


def dw_funcgrad(x, w, g):
    return RULE(g, None, x, w, **conv_params(x, w))[1]


def dw_out_iohw(x, w, g):
    """Same conv, result laid out as (I, O, H, W) and transposed to HWIO afterwards."""
    del w
    out = lax.conv_general_dilated(
        x, g, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("CHWN", "IHWO", "NCHW")
    )
    return jnp.transpose(out, (2, 3, 0, 1))


def dw_im2col(x, w, g):
    """Extract 3x3 patches and contract them with g in one dot_general."""
    del w
    patches = lax.conv_general_dilated_patches(
        x, (3, 3), (1, 1), "SAME", dimension_numbers=NHWC
    )  # (N, H, W, I*9), feature order (I, kh, kw)
    n, h, wd, _ = g.shape
    cin = x.shape[-1]
    out = jnp.einsum("nhwp,nhwo->po", patches.reshape(n, h, wd, -1), g)
    return jnp.transpose(out.reshape(cin, 3, 3, -1), (1, 2, 0, 3))


def dw_g_as_input(x, w, g):
    """Roles swapped: g is the conv input, x the (28x28) kernel; the result is flipped."""
    del w
    out = lax.conv_general_dilated(
        g, x, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("CHWN", "IHWO", "HWNC")
    )  # (3, 3, O, I), spatially reversed
    return jnp.swapaxes(lax.rev(out, (0, 1)), 2, 3)


def dw_shifted_matmuls(x, w, g):
    """Nine matmuls, one per kernel tap: dw[i, j] = x_shifted(i, j)^T @ g over N*H*W."""
    del w
    _, h, wd, _ = g.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = [
        [jnp.einsum("nhwc,nhwo->co", xp[:, i : i + h, j : j + wd], g) for j in range(3)]
        for i in range(3)
    ]
    return jnp.stack([jnp.stack(row) for row in taps])


def dw_concat_matmul(x, w, g):
    """Explicit im2col by slicing (N*H*W, 9*I) and one matmul with g."""
    del w
    n, h, wd, cout = g.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate(
        [xp[:, i : i + h, j : j + wd] for i in range(3) for j in range(3)], axis=-1
    )
    out = cols.reshape(n * h * wd, -1).T @ g.reshape(n * h * wd, cout)
    return out.reshape(3, 3, x.shape[-1], cout)


DX = [dx_jax, dx_funcgrad, dx_flip_hwoi_physical, dx_nchw, dx_conv_transpose]
DW = [
    dw_jax,
    dw_funcgrad,
    dw_out_iohw,
    dw_im2col,
    dw_g_as_input,
    dw_shifted_matmuls,
    dw_concat_matmul,
]


def main():
    rng = np.random.default_rng(0)
    layers = {"conv1 (1->32)": (1, 32), "conv2 (32->64)": (32, 64)}
    for name, (cin, cout) in layers.items():
        x = jnp.asarray(rng.standard_normal((128, 28, 28, cin)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)), jnp.float32)
        g = jnp.asarray(rng.standard_normal((128, 28, 28, cout)), jnp.float32)
        (fwd,) = timed_all([lambda x, w, g: conv(x, w)], x, w, g)
        print(f"{name}: forward {fwd:.2f} ms (best of 15)")
        for cands, ref in ((DX, dx_jax), (DW, dw_jax)):
            want = jax.jit(ref)(x, w, g)
            for fn, ms in zip(cands, timed_all(cands, x, w, g), strict=True):
                got = jax.jit(fn)(x, w, g)
                err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
                gf, mb, tmp = compiled_cost(fn, x, w, g)
                print(
                    f"  {fn.__name__:22s} {ms:8.2f} ms  {gf:6.3f} GFLOP  {mb:7.1f} MB accessed"
                    f"  {tmp:6.1f} MB temp  rel err {err:.1e}"
                )


if __name__ == "__main__":
    main()
