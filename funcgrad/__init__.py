"""funcgrad: reverse-mode autodiff for pure JAX functions from a hand-written VJP table.

g = funcgrad.grad(loss)(params, x, y)          # funcgrad's own rules, not jax.grad
funcgrad.check_grads(loss, params, x, y)       # checks against jax.grad and finite differences
step = jax.jit(funcgrad.value_and_grad(loss))  # one XLA program, forward and backward
"""

from . import diagnostics as diagnostics
from . import rules as _rules  # noqa: F401  (importing it fills the VJP table)
from . import testing as testing
from ._api import grad as grad
from ._api import hessian as hessian
from ._api import jacrev as jacrev
from ._api import value_and_grad as value_and_grad
from ._api import vjp as vjp
from ._check import CheckReport as CheckReport
from ._check import check_grads as check_grads
from ._eager import eager_compile_disabled as eager_compile_disabled
from ._eager import eager_stats as eager_stats
from ._eager import set_eager_compile as set_eager_compile
from ._errors import FuncgradError as FuncgradError
from ._errors import GradientMismatchError as GradientMismatchError
from ._errors import MissingRuleError as MissingRuleError
from ._errors import NonDifferentiableError as NonDifferentiableError
from ._errors import RuleError as RuleError
from ._memory import memory_report as memory_report
from ._registry import register_nondiff as register_nondiff
from ._registry import register_vjp as register_vjp
from ._registry import registered_primitives as registered_primitives
from ._remat import Budget as Budget
from .diagnostics import blame as blame

defvjp = register_vjp  # the name HIPS autograd users know

__version__ = "0.1.0"


def __getattr__(name):
    # funcgrad.nn and funcgrad.train load optax and tqdm: import them on first use only.
    if name in ("nn", "train", "parallel"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'funcgrad' has no attribute {name!r}")
