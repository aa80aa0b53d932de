"""JAX's own rounding error, sampled by re-running its program with every rounding moved.

Where a result is decided by rounding (large terms that cancel), two correct programs that
round at different points disagree by as much as the result. This module measures how much
a JAX program's result depends on its rounding: it interprets the program's jaxpr op by op
and moves every rounded intermediate, and every float input, by -1, 0 or +1 ulp (Monte
Carlo arithmetic, as in Parker's MCA or CADNA). The step is a hash of the value's bits and
of the sample's key, so equal values move alike: a tie between two equal values, however
each was computed, stays a tie. A sample whose discrete decisions change anyway (a
comparison, an index, a floor, ...) is dropped, so the samples kept follow the program's
own branches and ties and differ only in rounding.

Results that copy, select or are exact (reshapes, slices, gathers, max, abs, floor, widening
casts, ...) are not moved; a cast to a narrower float rounds, and is. Calls (``jit``,
``closed_call``, ``checkpoint``) are interpreted inside; other higher-order primitives (scan,
while, cond) run as they are, with their outputs moved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.extend.core import primitives as P

from .. import _jax_compat

# Results that copy, select, or are computed exactly from their operands: not moved.
EXACT = frozenset(
    {
        P.abs_p,
        P.argmax_p,
        P.argmin_p,
        P.broadcast_in_dim_p,
        P.ceil_p,
        P.clamp_p,
        P.complex_p,
        P.concatenate_p,
        P.conj_p,
        P.convert_element_type_p,
        P.copy_p,
        P.cummax_p,
        P.cummin_p,
        P.dynamic_slice_p,
        P.dynamic_update_slice_p,
        P.floor_p,
        P.gather_p,
        P.imag_p,
        P.iota_p,
        P.is_finite_p,
        P.max_p,
        P.min_p,
        P.neg_p,
        P.pad_p,
        P.real_p,
        P.reduce_max_p,
        P.reduce_min_p,
        P.reduce_precision_p,
        P.reshape_p,
        P.rev_p,
        P.round_p,
        P.select_n_p,
        P.sign_p,
        P.slice_p,
        P.sort_p,
        P.squeeze_p,
        P.stop_gradient_p,
        P.transpose_p,
    }
)
# Float results that are discrete decisions: a sample that changes one is dropped.
DECISIONS = frozenset({P.ceil_p, P.floor_p, P.round_p, P.sign_p})
# Calls interpreted inside, so the ops they wrap are moved one by one.
CALLS = frozenset({P.jit_p, P.closed_call_p, P.remat_p})

SAMPLES = 16


def _moved(x, key):
    """``x`` with each finite nonzero float moved by -1, 0 or +1 ulp, by a hash of its bits
    and ``key`` (zeros, non-finite values and non-float arrays unchanged)."""
    if key is None or not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    uint = {2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}[x.dtype.itemsize]
    bits = lax.bitcast_convert_type(x, uint)
    h = (bits ^ (bits >> 32)) if x.dtype.itemsize == 8 else bits
    h = h.astype(jnp.uint32) ^ key
    h = h * jnp.uint32(0x9E3779B1)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    choice = (h >> 8) % 3  # 0: stay, 1: one ulp away from 0, 2: one ulp towards 0
    away = lax.bitcast_convert_type(bits + uint(1), x.dtype)
    towards = lax.bitcast_convert_type(bits - uint(1), x.dtype)
    m = jnp.where(choice == 1, away, jnp.where(choice == 2, towards, x))
    return jnp.where(jnp.isfinite(x) & (x != 0) & jnp.isfinite(m), m, x)


def _discrete(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.bool_)


def _narrows(eqn, invals) -> bool:
    """Whether ``eqn`` casts a float to a narrower float: a rounding, and one XLA may skip
    inside a fusion, keeping the wider value (fuzz seed 424284 program 2549)."""
    if eqn.primitive is not P.convert_element_type_p or not invals:
        return False
    src, dst = jnp.result_type(invals[0]), eqn.params["new_dtype"]
    floats = jnp.issubdtype(src, jnp.floating) and jnp.issubdtype(dst, jnp.floating)
    return floats and jnp.finfo(dst).nmant < jnp.finfo(src).nmant


def _evaluate(jaxpr, consts, args, key, decisions: list):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        if eqn.primitive in CALLS and inner is not None and not eqn.effects:
            body = getattr(inner, "jaxpr", inner)
            outs = _evaluate(body, getattr(inner, "consts", ()), invals, key, decisions)
        else:
            outs = _jax_compat.bind_eqn(eqn, invals)
            if eqn.primitive not in EXACT or _narrows(eqn, invals):
                outs = [_moved(o, key) for o in outs]
        for v, x in zip(eqn.outvars, outs, strict=True):
            env[v] = x
            if _discrete(x) or eqn.primitive in DECISIONS:
                decisions.append(x)
    return [read(v) for v in jaxpr.outvars]


def _as64(x):
    return np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64)


def spread(fun, *args, samples: int = SAMPLES):
    """How far rounding moves ``fun(*args)``: (its value op by op; leaf by leaf, the
    elementwise largest ``|moved - unmoved|`` over the samples kept, in float64; how many
    samples were kept).

    ``fun`` is traced once. The unmoved run goes op by op, eagerly (the third way, beside
    JAX's compiled program and funcgrad's, to round the same program); the samples are
    interpreted under one ``jax.jit`` (the sample's key is an argument, so they share one
    compilation) and compared with an unmoved run compiled the same way.
    """
    closed = jax.make_jaxpr(fun)(*args)
    flat = jax.tree.leaves(args)

    def run(key, flat):
        decisions = []
        flat = [_moved(x, key) for x in flat]
        outs = _evaluate(closed.jaxpr, closed.consts, flat, key, decisions)
        return outs, decisions

    base, _ = run(None, flat)
    unmoved, base_decisions = jax.jit(lambda flat: run(None, flat))(flat)
    base64 = [_as64(x) for x in unmoved]
    widest = [np.zeros(np.shape(x)) for x in base64]
    moved_run = jax.jit(run)
    kept = 0
    for k in range(1, samples + 1):
        outs, decisions = moved_run(jnp.uint32(k * 0x9E37), flat)
        if not all(
            np.array_equal(a, b, equal_nan=True)
            for a, b in zip(decisions, base_decisions, strict=True)
        ):
            continue
        kept += 1
        widest = [
            np.maximum(w, np.abs(_as64(o) - b))
            for w, o, b in zip(widest, outs, base64, strict=True)
        ]
    return base, widest, kept
