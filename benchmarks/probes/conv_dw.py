"""Probe: formulations of a 3x3 'SAME' convolution's kernel gradient on CPU, against jax.vjp.

    python -m benchmarks.probes.conv_dw [--batch 128] [--cin 32] [--cout 64] [--hw 28]

The kernel gradient of the CNN's second convolution costs several times its forward on XLA:CPU
(the direct 'conv with the batch as features' form runs far below matmul peak). Each candidate
is checked against ``jax.vjp`` and timed best-of-N, interleaved.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def dw_reference(x, w, g):
    return jax.vjp(conv, x, w)[1](g)[1]


def _cols(x, k=3):
    """(N, H, W, k*k*I) patches of the zero-padded input, tap-major (kh, kw, I)."""
    _, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate([xp[:, i : i + h, j : j + wd] for i in range(k) for j in range(k)], -1)


def dw_per_image_matmuls(x, w, g):
    """Batched (per image) patch^T @ g, then a sum over images: parallel over the batch."""
    n, h, wd, cout = g.shape
    cols = _cols(x).reshape(n, h * wd, -1)
    out = lax.dot_general(cols, g.reshape(n, h * wd, cout), (((1,), (1,)), ((0,), (0,))))
    return jnp.sum(out, 0).reshape(w.shape)


def dw_chunked_matmuls(x, w, g, chunks=16):
    """The contraction over N*H*W split into ``chunks`` batched matmuls, then summed."""
    n, h, wd, cout = g.shape
    cols = _cols(x).reshape(chunks, n * h * wd // chunks, -1)
    out = lax.dot_general(cols, g.reshape(chunks, -1, cout), (((1,), (1,)), ((0,), (0,))))
    return jnp.sum(out, 0).reshape(w.shape)


def dw_tap_dots(x, w, g):
    """Nine dot_generals, one per tap, each contracting N, H, W of a shifted input with g."""
    _, h, wd, _ = g.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = [
        lax.dot_general(xp[:, i : i + h, j : j + wd], g, (((0, 1, 2), (0, 1, 2)), ((), ())))
        for i in range(3)
        for j in range(3)
    ]
    return jnp.stack(taps).reshape(w.shape)


CANDIDATES = [dw_reference, dw_per_image_matmuls, dw_chunked_matmuls, dw_tap_dots]


def best_of(fns, args, rounds):
    jitted = [jax.jit(f) for f in fns]
    for f in jitted:
        jax.block_until_ready(f(*args))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, f in enumerate(jitted):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cin", type=int, default=32)
    ap.add_argument("--cout", type=int, default=64)
    ap.add_argument("--hw", type=int, default=28)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((a.batch, a.hw, a.hw, a.cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, a.cin, a.cout)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((a.batch, a.hw, a.hw, a.cout)), jnp.float32)
    want = jax.jit(dw_reference)(x, w, g)
    fwd = best_of([lambda x, w, g: conv(x, w)], (x, w, g), a.rounds)[0]
    print(f"forward conv {1e3 * fwd:.1f} ms")
    for f, t in zip(CANDIDATES, best_of(CANDIDATES, (x, w, g), a.rounds), strict=True):
        got = jax.jit(f)(x, w, g)
        err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
        temp = jax.jit(f).lower(x, w, g).compile().memory_analysis().temp_size_in_bytes
        print(
            f"{f.__name__:22s} {1e3 * t:8.1f} ms  temp {temp / 2**20:6.1f} MiB  rel err {err:.1e}"
        )


if __name__ == "__main__":
    main()
