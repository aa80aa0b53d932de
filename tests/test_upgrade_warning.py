"""Upgrade early warning: every primitive the installed JAX registers is classified.

Run with FUNCGRAD_UPGRADE_CHECK=1 (the newest-JAX CI leg sets it).  It imports JAX's public
modules, collects every jax.extend.core.Primitive object alive, and fails, listing names, on
any primitive funcgrad neither has a rule for, nor lists as non-differentiable, nor refuses
with a documented reason (funcgrad._registry.REFUSED).  A new JAX release thus names what it
added on the first run; classify each one (a rule in its family file, register_nondiff, or a
REFUSED entry with its reason).
"""

import json
import os
import subprocess
import sys

import jax
import pytest

import funcgrad  # noqa: F401  (registers every rule)
from funcgrad._registry import REFUSED, nondiff_primitives, registered_primitives

pytestmark = pytest.mark.skipif(
    os.environ.get("FUNCGRAD_UPGRADE_CHECK") != "1",
    reason="upgrade check runs only with FUNCGRAD_UPGRADE_CHECK=1 (newest-JAX CI leg)",
)

MODULES = [
    "jax.numpy",
    "jax.lax",
    "jax.lax.linalg",
    "jax.nn",
    "jax.random",
    "jax.scipy",
    "jax.scipy.linalg",
    "jax.scipy.signal",
    "jax.scipy.special",
    "jax.scipy.stats",
    "jax.image",
    "jax.ad_checkpoint",
    "jax.debug",
    "jax.sharding",
    "jax.experimental.shard_map",
    "jax.experimental.ode",
    "jax.experimental.sparse",
    "jax.experimental.checkify",
    "jax.experimental.custom_partitioning",
    "jax.experimental.multihost_utils",
    "jax.experimental.pallas",
    "jax.ffi",
    "jax.extend.core.primitives",
]


_LIST_PRIMITIVES = """
import gc, importlib, json, sys
from jax.extend.core import Primitive
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({o.name for o in gc.get_objects() if isinstance(o, Primitive)})))
"""


def registered_by_jax() -> set[str]:
    """Primitives JAX itself registers, listed in a fresh interpreter: in this process the
    suite's own tests define user primitives (and JAX makes per-call ones) that are no
    upgrade news."""
    proc = subprocess.run(
        [sys.executable, "-c", _LIST_PRIMITIVES, *MODULES],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_every_jax_primitive_is_classified():
    known = set(registered_primitives()) | set(nondiff_primitives()) | set(REFUSED)
    unknown = sorted(registered_by_jax() - known)
    assert not unknown, (
        f"JAX {jax.__version__} registers {len(unknown)} primitive(s) funcgrad does not "
        f"classify: {unknown}. Give each a rule (in its family file under funcgrad/rules/), "
        f"register it as non-differentiable, or add it to funcgrad._registry.REFUSED with "
        f"the reason."
    )


def test_refusals_name_real_primitives_and_give_reasons():
    assert all(reason.strip() for reason in REFUSED.values())
    ruled = set(registered_primitives()) | set(nondiff_primitives())
    both = sorted(set(REFUSED) & ruled)
    assert not both, f"primitives both refused and given a rule/listed: {both}"
