"""With x64 off (JAX's default) the rules never warn: a library's ordinary path is silent.

The suite runs with x64 on (conftest), so this runs in a fresh interpreter with -W error:
cumulative rules (issue 9.4 reported a float64 request from rules/cumulative.py), reductions
and pow, to first and second order, eagerly and compiled, on float32, bfloat16 and NumPy
float64 inputs (which JAX narrows to float32).
"""

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, funcgrad
    from jax import lax
    assert not jax.config.jax_enable_x64
    ops = [
        lambda v: lax.cumsum(v, 0), lambda v: lax.cumprod(v, 0, reverse=True),
        lambda v: lax.cummax(v, 0), lambda v: lax.cummin(v, 0),
        lambda v: lax.cumlogsumexp(v, 0), jnp.prod, jnp.max, lambda v: v ** v,
    ]
    inputs = [np.array([1.0, 2.0, 2.0, 0.5]), jnp.array([1.0, 0.0, 3.0, 3.0], jnp.bfloat16)]
    for op in ops:
        first = funcgrad.grad(lambda v: jnp.sum(op(v)).astype(jnp.float32))
        second = funcgrad.grad(lambda v: jnp.sum(first(v) ** 2).astype(jnp.float32))
        for x in inputs:
            for g in (first, second, jax.jit(first)):
                g(x).block_until_ready()
    print("silent")
    """
)


def test_rules_do_not_warn_with_x64_off():
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=600,
        env={"JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu", **_inherited()},
    )
    assert proc.returncode == 0 and "silent" in proc.stdout, proc.stderr[-3000:]


def _inherited():
    import os

    keep = ("PATH", "PYTHONPATH", "HOME", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}
