"""Random programs: inputs, a weighted draw of catalogue steps, and nested blocks
(``jit``, ``checkpoint`` with a policy, ``cond``, ``scan``, ``fori_loop``, ``vmap`` inside,
``custom_jvp``, ``custom_vjp``) whose bodies are programs of their own."""

from __future__ import annotations

import numpy as np

from ._ops import Maker
from ._program import Line, Program, Var

SHAPES = (
    (),
    (1,),
    (3,),
    (0,),
    (4,),
    (2, 3),
    (3, 1),
    (1, 3),
    (3, 3),
    (0, 2),
    (2, 2, 3),
    (2, 1, 3),
    (1, 1),
)
DTYPES = ("float64",) * 6 + ("float32",) * 3 + ("bfloat16",)
POLICIES = (
    "None",
    "jax.checkpoint_policies.nothing_saveable",
    "jax.checkpoint_policies.everything_saveable",
    "jax.checkpoint_policies.dots_saveable",
    "jax.checkpoint_policies.dots_with_no_batch_dims_saveable",
)
# (maker method, weight) for straight-line steps
STEPS = (
    ("unary", 10),
    ("binary", 8),
    ("reduce", 3),
    ("cumulative", 1),
    ("sort", 1),
    ("softmax", 1),
    ("structural", 5),
    ("join", 1),
    ("split", 1),
    ("contract", 2),
    ("batched_matmul", 1),
    ("linalg", 1),
    ("conv", 1),
    ("window", 1),
    ("fft", 1),
    ("cast", 1),
    ("to_int", 2),
    ("use_int", 2),
    ("dynamic", 1),
)
NESTS = ("jit", "checkpoint", "cond", "scan", "fori", "vmap", "custom_jvp", "custom_vjp")


def draw_step(m: Maker) -> Line | None:
    names, weights = zip(*STEPS, strict=True)
    w = np.array(weights, dtype=float)
    for _ in range(4):
        name = names[m.rng.choice(len(names), p=w / w.sum())]
        line = getattr(m, name)()
        if line is not None:
            return (
                line
                if line.kind != "op"
                else Line(line.outs, line.expr, line.deps, line.defs, name)
            )
    return None


def body(m: Maker, params: list[Var], n_ops: int, closures: bool):
    """Lines of a nested function over ``params`` (and the outer pool if ``closures``)."""
    pool = list(params) + ([v for v in m.pool] if closures else [])
    inner = Maker(m.rng, pool, m.fdt, m.counter, m.depth + 1)
    lines = []
    for _ in range(n_ops):
        line = draw_step(inner) if m.depth + 1 >= 2 or inner.rng.random() < 0.8 else nest(inner)
        if line is not None:
            lines.append(line)
            inner.pool.extend(line.outs)
    made = [v for line in lines for v in line.outs if v.is_float]
    result = made[-1] if made else params[0]
    local = {v.name for v in params} | {v.name for line in lines for v in line.outs}
    outer = [d for line in lines for d in line.deps if d not in local]
    return lines, result, outer, [v for v in made]


def coerce(v: Var, shape, dtype) -> str:
    """An expression of ``v``'s value with the given shape and dtype."""
    if v.shape == tuple(shape):
        return f"{v.name}.astype(jnp.{dtype})"
    return f"jnp.broadcast_to(jnp.sum({v.name}), {tuple(shape)}).astype(jnp.{dtype})"


def define(name, params, lines, ret) -> str:
    src = [f"def {name}({', '.join(params)}):"]
    for line in lines:
        src += line.source("    ")
    src.append(f"    return {ret}")
    return "\n".join(src)


def nest(m: Maker) -> Line | None:
    kind = NESTS[m.rng.integers(len(NESTS))]
    x = m.pick()
    if x is None:
        return None
    n_ops = int(m.rng.integers(1, 4))
    fname = m.fresh((), prefix="f").name

    def param(v):
        return m.fresh(v.shape, v.dtype, prefix="p")

    if kind in ("jit", "checkpoint", "custom_jvp", "custom_vjp"):
        args = [x] + ([m.pick()] if m.rng.random() < 0.5 else [])
        ps = [param(a) for a in args]
        closures = kind in ("jit", "checkpoint")
        lines, res, outer, _ = body(m, ps, n_ops, closures)
        defs = [define(fname, [p.name for p in ps], lines, res.name)]
        call = ", ".join(a.name for a in args)
        if kind == "jit":
            expr = f"jax.jit({fname})({call})"
        elif kind == "checkpoint":
            pol = POLICIES[m.rng.integers(len(POLICIES))]
            expr = f"jax.checkpoint({fname}, policy={pol})({call})"
        elif kind == "custom_jvp":
            scale = (1.0, 0.5, 2.0)[m.rng.integers(3)]
            defs.append(
                f"{fname}_c = jax.custom_jvp({fname})\n"
                f"@{fname}_c.defjvp\n"
                f"def {fname}_jvp(primals, tangents):\n"
                f"    out, t = jax.jvp({fname}, primals, tangents)\n"
                f"    return out, t * {scale}"
            )
            expr = f"{fname}_c({call})"
        else:
            scale = (1.0, 0.5, 2.0)[m.rng.integers(3)]
            defs.append(
                f"{fname}_c = jax.custom_vjp({fname})\n"
                f"def {fname}_fwd(*args):\n"
                f"    return {fname}(*args), args\n"
                f"def {fname}_bwd(args, g):\n"
                f"    return jax.vjp({fname}, *args)[1](g * {scale})\n"
                f"{fname}_c.defvjp({fname}_fwd, {fname}_bwd)"
            )
            expr = f"{fname}_c({call})"
        return m.line(
            [m.fresh(res.shape, res.dtype)], expr, [a.name for a in args] + outer, defs, kind
        )
    if kind == "cond":
        pred = m.pick_int()
        p_expr = f"jnp.sum({pred.name}) % 2 == 0" if pred is not None else f"jnp.sum({x.name}) > 0"
        args = [x]
        ps = [param(x)]
        l1, r1, o1, _ = body(m, ps, n_ops, True)
        l2, r2, o2, _ = body(m, ps, int(m.rng.integers(0, 3)), True)
        defs = [
            define(fname + "_t", [ps[0].name], l1, r1.name),
            define(fname + "_f", [ps[0].name], l2, coerce(r2, r1.shape, r1.dtype)),
        ]
        expr = f"lax.cond({p_expr}, {fname}_t, {fname}_f, {x.name})"
        deps = [x.name, (pred or x).name] + o1 + o2
        return m.line([m.fresh(r1.shape, r1.dtype)], expr, deps, defs, kind)
    if kind == "fori":
        c = param(x)
        i = m.fresh((), "int32", prefix="p")
        lines, res, outer, _ = body(m, [c], n_ops, True)
        ret = coerce(res, x.shape, x.dtype)
        defs = [define(fname, [i.name, c.name], lines, ret)]
        n = int(m.rng.integers(0, 4))
        expr = f"lax.fori_loop(0, {n}, {fname}, {x.name})"
        return m.line([m.fresh(x.shape, x.dtype)], expr, [x.name] + outer, defs, kind)
    if kind == "scan":
        xs = m.pick(lambda v: v.ndim >= 1)
        if xs is None:
            return None
        c, xe = param(x), m.fresh(xs.shape[1:], xs.dtype, prefix="p")
        lines, res, outer, made = body(m, [c, xe], n_ops, True)
        y = made[m.rng.integers(len(made))] if made else xe
        ret = f"{coerce(res, x.shape, x.dtype)}, {y.name}"
        defs = [define(fname, [c.name, xe.name], lines, ret)]
        rev = bool(m.rng.random() < 0.3)
        expr = f"lax.scan({fname}, {x.name}, {xs.name}, reverse={rev})"
        outs = [m.fresh(x.shape, x.dtype), m.fresh(xs.shape[:1] + y.shape, y.dtype)]
        return m.line(outs, expr, [x.name, xs.name] + outer, defs, kind)
    # vmap inside: map the block over axis 0 of x, a second argument unbatched
    if x.ndim == 0:
        return None
    other = m.pick()
    ps = [m.fresh(x.shape[1:], x.dtype, prefix="p"), param(other)]
    lines, res, outer, _ = body(m, ps, n_ops, True)
    defs = [define(fname, [p.name for p in ps], lines, res.name)]
    expr = f"jax.vmap({fname}, in_axes=(0, None))({x.name}, {other.name})"
    return m.line(
        [m.fresh(x.shape[:1] + res.shape, res.dtype)],
        expr,
        [x.name, other.name] + outer,
        defs,
        kind,
    )


def program(rng: np.random.Generator, n_ops: int) -> Program:
    fdt = DTYPES[rng.integers(len(DTYPES))]
    counter = [0]
    n_in = int(rng.integers(1, 4))
    inputs = []
    for _ in range(n_in):
        counter[0] += 1
        inputs.append(Var(f"x{counter[0]}", SHAPES[rng.integers(len(SHAPES))], fdt))
    m = Maker(rng, list(inputs), fdt, counter, 0)
    lines = []
    for _ in range(n_ops):
        line = nest(m) if rng.random() < 0.15 else draw_step(m)
        if line is not None:
            lines.append(line)
            m.pool.extend(line.outs)
    u = rng.random()
    mode = "vmap" if u < 0.1 else "gradgrad" if u < 0.2 else "plain"
    return Program(
        tuple(inputs), tuple(lines), mode, int(rng.integers(1, 4)) if mode == "vmap" else 0
    )
