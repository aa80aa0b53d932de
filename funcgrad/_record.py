"""Recording trace: run a function on concrete values and write down its equations.

``jax.make_jaxpr`` traces with abstract values, so Python that inspects a value
(``if x < 3``, ``while err > tol``, ``range(int(n))``) cannot be traced by it. Outside
``jit`` funcgrad then records the program instead, the way autograd, PyTorch and micrograd
do: every primitive is evaluated on concrete values at once, and the equation that produced
each value is appended to a list. The result is an ordinary closed jaxpr for *this* call's
path through the Python code, which the same forward/backward walks and the same VJP rules
consume. Nothing here differentiates anything.

- A ``RecordTracer`` holds a concrete value and the jaxpr variable naming it; Python's
  ``bool``/``int``/``index`` on it see the value (``to_concrete_value``), as on ``jax.grad``'s
  tracers. ``np.asarray`` of one raises JAX's ``TracerArrayConversionError``, as under
  ``jax.grad``.
- A primitive none of whose inputs is recorded (arithmetic on a non-differentiated array,
  a comparison on constants) is evaluated and not recorded: its value is a constant.
- Primitives that carry Python callables (``custom_jvp_call``, ``custom_vjp_call``, call
  primitives) or jaxprs (``jit``, ``scan``, ``cond``, ``while``, ``checkpoint``) are turned
  into equations by ``jax.make_jaxpr`` on that one primitive, then evaluated from those
  equations: how JAX stages them differs from how they are bound, and between releases.
- Nested ``jit``, ``scan``, ``cond`` and ``while_loop`` bodies were already traced
  abstractly by JAX before their primitive is bound: inside them the behaviour is JAX's.

Example:
    >>> import jax.numpy as jnp
    >>> closed, outs = record(lambda x: [x * 2 if x > 0 else -x], [jnp.float32(3.0)])
    >>> [e.primitive.name for e in closed.jaxpr.eqns], float(outs[0])
    (['mul'], 6.0)
"""

from __future__ import annotations

import jax
from jax.extend import core as jcore
from jax.extend import source_info_util

# Bound with exactly the parameters of their equation (JAX 0.10.2 to 0.12.0.1): every
# jax.numpy function outside jit is one, so recording them directly keeps recording cheap.
_BOUND_AS_STAGED = frozenset({"pjit", "jit"})


def _holds_jaxpr(param) -> bool:
    if isinstance(param, (jcore.Jaxpr, jcore.ClosedJaxpr)):
        return True
    return isinstance(param, (tuple, list)) and any(_holds_jaxpr(p) for p in param)


class RecordTracer(jax.core.Tracer):
    """A concrete value being recorded, and the jaxpr variable that names it."""

    __slots__ = ["val", "var"]

    def __init__(self, trace, val, var):
        super().__init__(trace, var.aval)
        self.val = val
        self.var = var

    def to_concrete_value(self):
        val = self.val
        return val.to_concrete_value() if isinstance(val, jax.core.Tracer) else val

    def full_lower(self):
        return self


class RecordTrace(jax.core.Trace):
    """Evaluates each primitive on its parent trace and appends the equation."""

    def __init__(self, parent):
        super().__init__()
        self.parent = parent
        self.requires_low = True
        self.eqns = []
        self.constvars = []
        self.consts = []
        self._const_var = {}  # id(constant) -> Var (the constant is kept alive in consts)
        self.new_var = jcore.gensym()

    def is_mine(self, x) -> bool:
        return isinstance(x, RecordTracer) and x._trace is self

    def value(self, x):
        return x.val if self.is_mine(x) else x

    def atom(self, x):
        """The Var naming ``x``: a recorded value's own, or a new constant's."""
        if self.is_mine(x):
            return x.var
        var = self._const_var.get(id(x))
        if var is None:
            var = self.new_var(jax.typeof(x))
            self._const_var[id(x)] = var
            self.constvars.append(var)
            self.consts.append(x)
        return var

    def _eval(self, primitive, vals, params):
        with jcore.set_current_trace(self.parent):
            return primitive.bind(*vals, **params)

    def process_primitive(self, primitive, tracers, params, /):
        if primitive.name not in _BOUND_AS_STAGED and any(map(_holds_jaxpr, params.values())):
            # scan, cond, while, checkpoint: how JAX stages them into an equation differs
            # from how they are bound (and between JAX releases): let JAX write it.
            return self._process_via_jaxpr(primitive, tracers, params)
        vals = [self.value(t) for t in tracers]
        out = self._eval(primitive, vals, params)
        outs = out if primitive.multiple_results else [out]
        if not outs or not any(self.is_mine(t) for t in tracers):
            # Depends on nothing recorded (a constant), or has no outputs (jax.debug.print):
            # it has run; recording it would run it again in the walk.
            return out
        outvars = [self.new_var(jax.typeof(o)) for o in outs]
        self.eqns.append(
            jcore.new_jaxpr_eqn(
                [self.atom(t) for t in tracers],
                outvars,
                primitive,
                params,
                jcore.no_effects,
                source_info_util.current(),
            )
        )
        tracers_out = [RecordTracer(self, o, v) for o, v in zip(outs, outvars, strict=True)]
        return tracers_out if primitive.multiple_results else tracers_out[0]

    def _process_via_jaxpr(self, primitive, tracers, params):
        """Record a primitive that binds Python callables: JAX writes its equations."""
        vals = [self.value(t) for t in tracers]
        if not any(self.is_mine(t) for t in tracers):
            return self._eval(primitive, vals, params)

        def bind_one(*xs):
            return primitive.bind(*xs, **params)

        closed = jax.make_jaxpr(bind_one)(*vals)
        with jcore.set_current_trace(self.parent):
            outs = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *vals)
        env = {v: self.atom(t) for v, t in zip(closed.jaxpr.invars, tracers, strict=True)}
        env.update(
            {v: self.atom(c) for v, c in zip(closed.jaxpr.constvars, closed.consts, strict=True)}
        )

        def rename(a):
            return env.get(a, a) if isinstance(a, jcore.Var) else a  # Literals stay

        for eqn in closed.jaxpr.eqns:
            outvars = [self.new_var(v.aval) for v in eqn.outvars]
            env.update(zip(eqn.outvars, outvars, strict=True))
            self.eqns.append(eqn.replace(invars=[rename(a) for a in eqn.invars], outvars=outvars))
        result = []
        for a, o in zip(closed.jaxpr.outvars, outs, strict=True):
            var = rename(a)
            if not isinstance(var, jcore.Var):  # an output that is a literal: a constant
                result.append(o)
            else:
                result.append(RecordTracer(self, o, var))
        return result if primitive.multiple_results else result[0]

    # custom_jvp_call / custom_vjp_call / call primitives are bound with ``subfuns``
    # (JAX 0.10.2 through 0.12.0.1); their equations are what make_jaxpr writes.
    def process_custom_jvp_call(self, primitive, fun, jvp, tracers, /, **params):
        return self._process_via_jaxpr(primitive, tracers, dict(params, subfuns=(fun, jvp)))

    def process_custom_vjp_call(self, primitive, fun, fwd, bwd, tracers, /, **params):
        return self._process_via_jaxpr(primitive, tracers, dict(params, subfuns=(fun, fwd, bwd)))

    def process_call(self, primitive, f, tracers, params, /):
        return self._process_via_jaxpr(primitive, tracers, dict(params, subfuns=(f,)))


def record(flat_fun, leaves):
    """Run ``flat_fun(*leaves)`` (a list of outputs) on concrete values, recording it.

    Returns ``(closed_jaxpr, outputs)``: a jaxpr with one input per leaf and one output per
    output, and the concrete outputs of this run.
    """
    with jcore.take_current_trace() as parent:
        pass
    trace = RecordTrace(parent)
    invars = [trace.new_var(jax.typeof(x)) for x in leaves]
    tracers = [RecordTracer(trace, x, v) for x, v in zip(leaves, invars, strict=True)]
    try:
        with jcore.set_current_trace(trace):
            outs = flat_fun(*tracers)
        outvars = [trace.atom(o) for o in outs]
        values = [trace.value(o) for o in outs]
    finally:
        trace.invalidate()
    info = jcore.DebugInfo(
        "funcgrad record",
        getattr(flat_fun, "__name__", "function"),
        tuple(f"arg{i}" for i in range(len(invars))),
        tuple(f"out{i}" for i in range(len(outvars))),
    )
    jaxpr = jcore.Jaxpr(trace.constvars, invars, outvars, trace.eqns, debug_info=info)
    return jcore.ClosedJaxpr(jaxpr, trace.consts), values
