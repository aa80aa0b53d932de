"""The catalogue of program steps: each maker reads the pool of typed variables and returns a
:class:`Line` (or ``None`` when no variable in the pool fits it).

Expressions are chosen so that values stay finite on inputs in [-2, 2] (logs and roots take
``1 + x*x``-style arguments); programs whose reference result is not finite are skipped by
the runner, not counted.
"""

from __future__ import annotations

import math

import numpy as np

from ._program import Line, Var

# Unary elementwise steps, ``{x}`` the operand. Each names the primitives it reaches.
UNARY = (
    "jnp.sin({x})",
    "jnp.cos({x})",
    "jnp.tan(0.5 * jnp.tanh({x}))",
    "jnp.tanh({x})",
    "jnp.exp(-{x} * {x})",
    "jnp.exp2(jnp.tanh({x}))",
    "jnp.expm1(jnp.sin({x}))",
    "jnp.log(1.5 + jnp.sin({x}))",
    "jnp.log1p({x} * {x})",
    "jnp.sqrt({x} * {x} + 0.25)",
    "lax.rsqrt({x} * {x} + 0.25)",
    "jnp.cbrt({x})",
    "jnp.abs({x})",
    "-{x}",
    "{x} ** 2",
    "{x} ** 3",
    "jnp.square({x})",
    "1.0 / (1.0 + {x} * {x})",
    "jnp.arctan({x})",
    "jnp.arcsinh({x})",
    "jnp.arcsin(0.9 * jnp.tanh({x}))",
    "jnp.arccos(0.9 * jnp.tanh({x}))",
    "jnp.arctanh(0.9 * jnp.tanh({x}))",
    "jnp.arccosh(1.5 + {x} * {x})",
    "jnp.sinh({x})",
    "jnp.cosh({x})",
    "jax.nn.relu({x})",
    "jax.nn.sigmoid({x})",
    "jax.nn.softplus({x})",
    "jax.nn.gelu({x})",
    "jax.nn.silu({x})",
    "jax.nn.log_sigmoid({x})",
    "jax.nn.elu({x})",
    "jax.nn.leaky_relu({x})",
    "jnp.clip({x}, -0.5, 0.5)",
    "jnp.maximum({x}, 0.0)",
    "jnp.sign({x}) * {x}",
    "jnp.floor({x}) + {x}",
    "jnp.round({x}) * {x}",
    "lax.stop_gradient({x}) * {x}",
    "jsp.erf({x})",
    "jsp.erfc({x})",
    "jsp.erfinv(0.9 * jnp.tanh({x}))",
    "jsp.gammaln({x} * {x} + 0.5)",
    "jsp.digamma({x} * {x} + 0.5)",
    "jsp.i0e({x})",
    "jsp.i1e({x})",
    "jnp.arctan2({x}, 1.5)",
    "jnp.remainder({x}, 0.75)",
    "jnp.fmod({x}, 0.75)",
    "2.5 * {x} + 1.0",
    "3.0 - {x}",
    "{x} / 2.0",
    "lax.reduce_precision({x}, exponent_bits=5, mantissa_bits=10)",
    "jnp.where({x} > 0, {x}, 0.5 * {x})",
    "jnp.real(jnp.exp(1j * {x})).astype({x}.dtype)",
    "jnp.abs(jnp.sin({x}) + 1j * {x}).astype({x}.dtype)",
    "jnp.nan_to_num({x})",
    "jnp.heaviside({x}, 0.5) * {x}",
    "lax.integer_pow({x}, 4)",
    # sinc's derivative sin'/x - sin/x^2 cancels catastrophically near (not at) 0, in JAX's
    # reference as much as in funcgrad (fuzz seed 424243 program 369: x = 3e-33 after an
    # rfft round trip gave +-14.9 for a true ~0); keep exactly 0 (the series branch) and
    # arguments where the formula is well conditioned.
    "jnp.sinc(jnp.where(jnp.abs({x}) < 0.25, jnp.zeros_like({x}), {x}))",
    "jnp.logaddexp({x}, 0.0)",
    "jnp.copy({x})",
)

# Binary elementwise steps (operands broadcast: equal rank, sizes equal or 1, or rank 0).
BINARY = (
    "{x} + {y}",
    "{x} - {y}",
    "{x} * {y}",
    "{x} / (1.0 + {y} * {y})",
    "jnp.maximum({x}, {y})",
    "jnp.minimum({x}, {y})",
    "jnp.arctan2({x}, {y} * {y} + 0.5)",
    "(jnp.abs({x}) + 0.5) ** jnp.tanh({y})",
    "jnp.where({x} > {y}, {x}, {y} * 2.0)",
    "jnp.hypot({x}, {y})",
    "jnp.logaddexp({x}, {y})",
    "jnp.remainder({x}, jnp.abs({y}) + 0.5)",
    "lax.clamp(jnp.array(-1.0, {x}.dtype), {x}, jnp.array(1.0, {x}.dtype)) * {y}",
    # copysign's derivative reads the sign bit of {y}, and where {y} is a zero its sign can
    # differ between JAX's own jax.vjp and the plain program (cumprod's linearization adds
    # padded zeros: -0 becomes +0; fuzz seed 424252 program 1035): every zero is made +0.
    "jnp.copysign({x}, jnp.where({y} == 0, jnp.zeros_like({y}), {y}))",
    "{x} * {x} + {y} * {x}",
)


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The broadcast shape of ``a`` and ``b`` without rank promotion, or ``None``."""
    if not a:
        return b
    if not b:
        return a
    if len(a) != len(b):
        return None
    out = []
    for m, n in zip(a, b, strict=True):
        if m != n and 1 not in (m, n):
            return None
        out.append(n if m == 1 else m)
    return tuple(out)


def reduced(shape, axis, keepdims):
    if axis is None:
        return tuple(1 for _ in shape) if keepdims else ()
    return tuple(1 if i == axis else n for i, n in enumerate(shape) if keepdims or i != axis)


class Maker:
    """Draws program lines over a pool of variables (the state of one program or block)."""

    def __init__(self, rng: np.random.Generator, pool: list[Var], fdt: str, counter, depth: int):
        self.rng, self.pool, self.fdt, self.counter, self.depth = rng, pool, fdt, counter, depth

    # ---- helpers
    def fresh(self, shape, dtype=None, prefix="v") -> Var:
        self.counter[0] += 1
        return Var(f"{prefix}{self.counter[0]}", tuple(int(n) for n in shape), dtype or self.fdt)

    def pick(self, cond=None) -> Var | None:
        cands = [v for v in self.pool if v.is_float and (cond is None or cond(v))]
        if not cands:
            return None
        # prefer recent values (deeper chains) but keep reusing old ones (fan-out)
        w = np.arange(1, len(cands) + 1, dtype=float)
        return cands[self.rng.choice(len(cands), p=w / w.sum())]

    def pick_int(self) -> Var | None:
        cands = [v for v in self.pool if v.dtype == "int32"]
        return cands[self.rng.integers(len(cands))] if cands else None

    def axis(self, v: Var) -> int:
        return int(self.rng.integers(v.ndim))

    def line(self, outs, expr, deps, defs=(), kind="op") -> Line:
        return Line(tuple(outs), expr, tuple(dict.fromkeys(deps)), tuple(defs), kind)

    # ---- elementwise
    def unary(self):
        x = self.pick()
        if x is None:
            return None
        t = UNARY[self.rng.integers(len(UNARY))]
        return self.line([self.fresh(x.shape, x.dtype)], t.format(x=x.name), [x.name])

    def binary(self):
        x = self.pick()
        if x is None:
            return None
        y = self.pick(lambda v: broadcast(x.shape, v.shape) is not None)
        if self.rng.random() < 0.15:
            y = x  # x op x: the same value on both sides
        t = BINARY[self.rng.integers(len(BINARY))]
        dt = x.dtype if FLOAT_RANK[x.dtype] >= FLOAT_RANK[y.dtype] else y.dtype
        out = self.fresh(broadcast(x.shape, y.shape), dt)
        return self.line([out], t.format(x=x.name, y=y.name), [x.name, y.name])

    def cast(self):
        x = self.pick()
        if x is None:
            return None
        to = ("float32", "float64", "bfloat16")[self.rng.integers(3)]
        back = f"({x.name}.astype(jnp.{to}) * 1.5).astype(jnp.{x.dtype})"
        return self.line([self.fresh(x.shape, x.dtype)], back, [x.name], kind="cast")

    # ---- reductions and cumulative ops
    def reduce(self):
        x = self.pick()
        if x is None:
            return None
        axis = None if x.ndim == 0 or self.rng.random() < 0.3 else self.axis(x)
        keep = bool(self.rng.random() < 0.3)
        nonempty = 0 not in x.shape
        fns = ["jnp.sum", "jnp.prod", "jnp.mean", "jax.nn.logsumexp"]
        if nonempty:
            fns += ["jnp.max", "jnp.min", "jnp.var"]
        elif axis is not None and x.shape[axis] != 0:
            fns += ["jnp.max", "jnp.min"]
        fn = fns[self.rng.integers(len(fns))]
        if fn == "jnp.mean" and math.prod(reduced(x.shape, None, False) or (1,)) == 0:
            fn = "jnp.sum"
        if fn in ("jnp.mean", "jnp.var") and (0 in x.shape):
            fn = "jnp.sum"
        out = self.fresh(reduced(x.shape, axis, keep), x.dtype)
        return self.line([out], f"{fn}({x.name}, axis={axis}, keepdims={keep})", [x.name])

    def cumulative(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return None
        fns = ["jnp.cumsum", "jnp.cumprod", "lax.cummax", "lax.cummin", "lax.cumlogsumexp"]
        fn = fns[self.rng.integers(len(fns))]
        axis = self.axis(x)
        rev = ", reverse=True" if fn.startswith("lax") and self.rng.random() < 0.4 else ""
        operand = x.name
        if fn in ("lax.cummax", "lax.cummin"):
            # At three or more tied values JAX's cummax/cummin derivative follows the tree of
            # its associative scan (1/4, 1/4, 1/2 for three); funcgrad splits ties equally
            # (documented in rules/cumulative.py; fuzz seed 424243 program 234). A ramp of
            # 15/128 per step (exact in bfloat16) separates the grid's ties (multiples of 0.5).
            ramp = f"lax.broadcasted_iota({x.name}.dtype, {x.shape}, {axis})"
            operand = f"({x.name} + 0.1171875 * {ramp})"
        return self.line(
            [self.fresh(x.shape, x.dtype)], f"{fn}({operand}, axis={axis}{rev})", [x.name]
        )

    def sort(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return None
        if self.rng.random() < 0.5 or x.shape[-1] == 0:
            axis = self.axis(x)
            return self.line(
                [self.fresh(x.shape, x.dtype)], f"jnp.sort({x.name}, axis={axis})", [x.name]
            )
        k = int(self.rng.integers(1, x.shape[-1] + 1))
        out = self.fresh(x.shape[:-1] + (k,), x.dtype)
        return self.line([out], f"lax.top_k({x.name}, {k})[0]", [x.name])

    def softmax(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return None
        fn = ("jax.nn.softmax", "jax.nn.log_softmax")[self.rng.integers(2)]
        return self.line(
            [self.fresh(x.shape, x.dtype)], f"{fn}({x.name}, axis={self.axis(x)})", [x.name]
        )

    # ---- structure
    def structural(self):
        x = self.pick()
        if x is None:
            return None
        r, s, n = self.rng, x.shape, x.name
        choices = ["reshape", "expand", "tile", "pad", "broadcast"]
        if x.ndim >= 1:
            choices += ["transpose", "flip", "slice", "roll", "repeat", "stride", "moveaxis"]
        if 1 in s:
            choices.append("squeeze")
        c = choices[r.integers(len(choices))]
        if c == "reshape":
            return self.line([self.fresh((math.prod(s),), x.dtype)], f"{n}.reshape(-1)", [n])
        if c == "expand":
            a = int(r.integers(x.ndim + 1))
            return self.line(
                [self.fresh(s[:a] + (1,) + s[a:], x.dtype)], f"jnp.expand_dims({n}, {a})", [n]
            )
        if c == "broadcast":
            b = int(r.integers(0, 3))
            return self.line(
                [self.fresh((b, *s), x.dtype)], f"jnp.broadcast_to({n}, {(b, *s)})", [n]
            )
        if c == "tile":
            reps = tuple(int(k) for k in r.integers(1, 3, size=x.ndim))
            out = tuple(a * b for a, b in zip(s, reps, strict=True))
            return self.line([self.fresh(out, x.dtype)], f"jnp.tile({n}, {reps})", [n])
        if c == "pad":
            pads = tuple((int(r.integers(0, 2)), int(r.integers(-1, 2)) if d > 0 else 0) for d in s)
            cfg = tuple(
                (lo, hi, int(r.integers(0, 2)) if d > 1 else 0)
                for (lo, hi), d in zip(pads, s, strict=True)
            )
            out = tuple(
                d + lo + hi + max(d - 1, 0) * i for d, (lo, hi, i) in zip(s, cfg, strict=True)
            )
            if any(o < 0 for o in out):
                return None
            return self.line(
                [self.fresh(out, x.dtype)], f"lax.pad({n}, jnp.array(0.5, {n}.dtype), {cfg})", [n]
            )
        if c == "transpose":
            perm = tuple(int(i) for i in r.permutation(x.ndim))
            return self.line(
                [self.fresh(tuple(s[i] for i in perm), x.dtype)], f"jnp.transpose({n}, {perm})", [n]
            )
        if c == "moveaxis":
            a, b = self.axis(x), self.axis(x)
            out = list(s)
            out.insert(b, out.pop(a))
            return self.line([self.fresh(out, x.dtype)], f"jnp.moveaxis({n}, {a}, {b})", [n])
        if c == "flip":
            return self.line([self.fresh(s, x.dtype)], f"jnp.flip({n}, {self.axis(x)})", [n])
        if c == "roll":
            return self.line(
                [self.fresh(s, x.dtype)],
                f"jnp.roll({n}, {int(r.integers(-2, 3))}, {self.axis(x)})",
                [n],
            )
        if c == "slice":
            a = self.axis(x)
            lo = int(r.integers(0, s[a] + 1))
            hi = int(r.integers(lo, s[a] + 1))
            idx = ", ".join([":"] * a + [f"{lo}:{hi}"])
            out = s[:a] + (hi - lo,) + s[a + 1 :]
            return self.line([self.fresh(out, x.dtype)], f"{n}[{idx}]", [n])
        if c == "stride":
            a = self.axis(x)
            idx = ", ".join([":"] * a + ["::2"])
            out = s[:a] + ((s[a] + 1) // 2,) + s[a + 1 :]
            return self.line([self.fresh(out, x.dtype)], f"{n}[{idx}]", [n])
        if c == "repeat":
            a, k = self.axis(x), int(r.integers(1, 3))
            out = s[:a] + (s[a] * k,) + s[a + 1 :]
            return self.line([self.fresh(out, x.dtype)], f"jnp.repeat({n}, {k}, axis={a})", [n])
        a = s.index(1)
        return self.line([self.fresh(s[:a] + s[a + 1 :], x.dtype)], f"jnp.squeeze({n}, {a})", [n])

    def join(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return None
        a = self.axis(x)
        same = [v for v in self.pool if v.is_float and v.ndim == x.ndim and v.dtype == x.dtype]
        if self.rng.random() < 0.5:
            ys = [
                v for v in same if v.shape[:a] + v.shape[a + 1 :] == x.shape[:a] + x.shape[a + 1 :]
            ]
            y = ys[self.rng.integers(len(ys))]
            out = x.shape[:a] + (x.shape[a] + y.shape[a],) + x.shape[a + 1 :]
            return self.line(
                [self.fresh(out, x.dtype)],
                f"jnp.concatenate([{x.name}, {y.name}], axis={a})",
                [x.name, y.name],
            )
        ys = [v for v in same if v.shape == x.shape]
        y = ys[self.rng.integers(len(ys))]
        out = x.shape[:a] + (2,) + x.shape[a:]
        return self.line(
            [self.fresh(out, x.dtype)],
            f"jnp.stack([{x.name}, {y.name}], axis={a})",
            [x.name, y.name],
        )

    def split(self):
        x = self.pick(lambda v: v.ndim >= 1 and v.shape[0] >= 2)
        if x is None:
            return None
        k = int(self.rng.integers(1, x.shape[0]))
        a = self.fresh((k,) + x.shape[1:], x.dtype)
        b = self.fresh((x.shape[0] - k,) + x.shape[1:], x.dtype)
        return self.line([a, b], f"jnp.split({x.name}, [{k}])", [x.name])

    # ---- contractions
    def contract(self):
        x = self.pick(lambda v: v.ndim in (1, 2))
        if x is None:
            return None
        n = x.name
        if x.ndim == 1:
            ys = [v for v in self.pool if v.is_float and v.ndim >= 1 and v.shape[0] == x.shape[0]]
            y = ys[self.rng.integers(len(ys))]
            out = self.fresh(y.shape[1:], _wider(x.dtype, y.dtype))
            return self.line([out], f"jnp.tensordot({n}, {y.name}, axes=1)", [n, y.name])
        forms = [
            (f"{n} @ {n}.T", (x.shape[0], x.shape[0])),
            (f"{n}.T @ {n}", (x.shape[1], x.shape[1])),
            (f"jnp.einsum('ij,ij->i', {n}, {n})", (x.shape[0],)),
            (f"jnp.einsum('ij,kj->jik', {n}, {n})", (x.shape[1], x.shape[0], x.shape[0])),
        ]
        ys = [v for v in self.pool if v.is_float and v.ndim == 2 and v.shape[0] == x.shape[1]]
        if ys:
            y = ys[self.rng.integers(len(ys))]
            forms.append((f"{n} @ {y.name}", (x.shape[0], y.shape[1])))
            dt = _wider(x.dtype, y.dtype)
        expr, shape = forms[self.rng.integers(len(forms))]
        deps = [n] + ([y.name] if ys and y.name in expr else [])
        return self.line(
            [self.fresh(shape, dt if len(deps) == 2 else x.dtype)], expr, deps, kind="contract"
        )

    def batched_matmul(self):
        x = self.pick(lambda v: v.ndim == 3)
        if x is None:
            return None
        n, (b, i, j) = x.name, x.shape
        forms = [
            (f"jnp.einsum('bij,bkj->bik', {n}, {n})", (b, i, i)),
            (f"jnp.einsum('bij,bik->jbk', {n}, {n})", (j, b, j)),
            (f"jnp.matmul({n}, jnp.swapaxes({n}, 1, 2))", (b, i, i)),
        ]
        expr, shape = forms[self.rng.integers(len(forms))]
        return self.line([self.fresh(shape, x.dtype)], expr, [n], kind="contract")

    def linalg(self):
        if self.fdt == "bfloat16":
            return None  # LAPACK-backed decompositions have no bfloat16 kernels
        x = self.pick(lambda v: v.ndim == 2 and v.dtype == self.fdt and 0 < v.shape[0] <= 4)
        if x is None:
            return None
        m, n = x.shape[0], x.name
        spd = f"({n} @ {n}.T + {m} * jnp.eye({m}, dtype={n}.dtype))"
        forms = [
            (f"jnp.linalg.cholesky({spd})", (m, m)),
            (f"jnp.linalg.solve({spd}, {n})", x.shape),
            (f"jnp.linalg.inv({spd})", (m, m)),
            (f"jnp.linalg.slogdet({spd})[1]", ()),
            (f"jnp.linalg.eigh({spd})[0]", (m,)),
            (
                f"jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky({spd}), {n}, lower=True)",
                x.shape,
            ),
            (f"jnp.linalg.qr({spd})[1]", (m, m)),
            (f"jnp.linalg.det({spd})", ()),
            (f"jnp.linalg.norm({n})", ()),
        ]
        expr, shape = forms[self.rng.integers(len(forms))]
        return self.line([self.fresh(shape, x.dtype)], expr, [n], kind="linalg")

    def conv(self):
        x = self.pick(lambda v: v.ndim == 1 and v.shape[0] >= 1)
        if x is None:
            return None
        ks = [v for v in self.pool if v.is_float and v.ndim == 1 and 1 <= v.shape[0] <= x.shape[0]]
        k = ks[self.rng.integers(len(ks))]
        mode = ("full", "same", "valid")[self.rng.integers(3)]
        size = {
            "full": x.shape[0] + k.shape[0] - 1,
            "same": x.shape[0],
            "valid": x.shape[0] - k.shape[0] + 1,
        }
        out = self.fresh((size[mode],), _wider(x.dtype, k.dtype))
        return self.line(
            [out], f"jnp.convolve({x.name}, {k.name}, mode={mode!r})", [x.name, k.name], kind="conv"
        )

    def window(self):
        x = self.pick(lambda v: v.ndim >= 1 and min(v.shape) >= 2)
        if x is None:
            return None
        win = (2,) * x.ndim
        op, init = [("lax.max", "-np.inf"), ("lax.min", "np.inf"), ("lax.add", "0.0")][
            self.rng.integers(3)
        ]
        out = tuple(d - 1 for d in x.shape)
        expr = f"lax.reduce_window({x.name}, {init}, {op}, {win}, {(1,) * x.ndim}, 'VALID')"
        return self.line([self.fresh(out, x.dtype)], expr, [x.name], kind="window")

    def fft(self):
        if self.fdt != "float64":
            return None
        x = self.pick(lambda v: v.ndim >= 1 and v.shape[-1] >= 1 and v.dtype == "float64")
        if x is None:
            return None
        n = x.name
        forms = [
            (f"jnp.real(jnp.fft.fft({n}))", x.shape),
            (f"jnp.fft.irfft(jnp.fft.rfft({n}), n={x.shape[-1]})", x.shape),
            (f"jnp.abs(jnp.fft.rfft({n}))", x.shape[:-1] + (x.shape[-1] // 2 + 1,)),
        ]
        expr, shape = forms[self.rng.integers(len(forms))]
        return self.line([self.fresh(shape, x.dtype)], expr, [n], kind="fft")

    # ---- integer paths: argmax, casts, comparisons, indexing
    def to_int(self):
        x = self.pick(lambda v: v.ndim >= 1 and 0 not in v.shape)
        if x is None:
            return None
        a = self.axis(x)
        forms = [
            (f"jnp.argmax({x.name}, axis={a}).astype(jnp.int32)", x.shape[:a] + x.shape[a + 1 :]),
            (f"jnp.argsort({x.name}, axis={a}).astype(jnp.int32)", x.shape),
            (f"jnp.floor({x.name}).astype(jnp.int32) % 3", x.shape),
        ]
        expr, shape = forms[self.rng.integers(len(forms))]
        return self.line([self.fresh(shape, "int32", "i")], expr, [x.name], kind="int")

    def use_int(self):
        i = self.pick_int()
        if i is None:
            return None
        forms = ["float", "take"]
        xs = [v for v in self.pool if v.is_float and v.ndim >= 1 and v.shape[0] > 0]
        if not xs:
            forms = ["float"]
        c = forms[self.rng.integers(len(forms))]
        if c == "float":
            ys = [v for v in self.pool if v.is_float and broadcast(v.shape, i.shape) is not None]
            if not ys:
                return None
            y = ys[self.rng.integers(len(ys))]
            expr = f"(({i.name} + 1) * 2 % 5).astype({y.name}.dtype) * {y.name}"
            return self.line(
                [self.fresh(broadcast(y.shape, i.shape), y.dtype)],
                expr,
                [i.name, y.name],
                kind="int",
            )
        x = xs[self.rng.integers(len(xs))]
        if self.rng.random() < 0.5 and i.ndim <= 1:
            op = ("set", "add", "mul", "max", "min")[self.rng.integers(5)]
            idx = f"{i.name} % {x.shape[0]}"
            ys = [v for v in self.pool if v.is_float and v.shape == i.shape + x.shape[1:]]
            upd = ys[self.rng.integers(len(ys))].name if ys else "1.5"
            expr = f"{x.name}.at[{idx}].{op}({upd})"
            deps = [x.name, i.name] + ([upd] if ys else [])
            return self.line([self.fresh(x.shape, x.dtype)], expr, deps, kind="scatter")
        mode = ("clip", "wrap", "fill")[self.rng.integers(3)]
        expr = f"jnp.take({x.name}, {i.name}, axis=0, mode={mode!r})"
        return self.line(
            [self.fresh(i.shape + x.shape[1:], x.dtype)], expr, [x.name, i.name], kind="gather"
        )

    def dynamic(self):
        x = self.pick(lambda v: v.ndim >= 1 and v.shape[0] >= 1)
        i = self.pick_int()
        if x is None or i is None:
            return None
        start = f"jnp.sum({i.name}) % {x.shape[0]}"
        if self.rng.random() < 0.5:
            size = (1,) + x.shape[1:]
            expr = f"lax.dynamic_slice_in_dim({x.name}, {start}, 1, axis=0)"
            return self.line([self.fresh(size, x.dtype)], expr, [x.name, i.name], kind="dynamic")
        us = [
            v
            for v in self.pool
            if v.is_float
            and v.ndim == x.ndim
            and v.shape[1:] == x.shape[1:]
            and v.shape[0] <= x.shape[0]
        ]
        u = us[self.rng.integers(len(us))]
        upd = f"{u.name}.astype({x.name}.dtype)"
        expr = f"lax.dynamic_update_slice_in_dim({x.name}, {upd}, {start}, axis=0)"
        return self.line(
            [self.fresh(x.shape, x.dtype)], expr, [x.name, u.name, i.name], kind="dynamic"
        )


FLOAT_RANK = {"bfloat16": 0, "float32": 1, "float64": 2}


def _wider(a: str, b: str) -> str:
    return a if FLOAT_RANK[a] >= FLOAT_RANK[b] else b
