"""Everything a rule author needs, in one place.

    from funcgrad.extend import register_vjp, unbroadcast

    @register_vjp(my_prim)
    def my_prim_vjp(g, ans, x, y, *, scale):
        return unbroadcast(g * scale * y, x), unbroadcast(g * scale * x, y)

The contract is in funcgrad/rules/README.md; docs/adding-a-rule.md walks through one rule.
Check a new rule with ``funcgrad.check_grads`` (and ``funcgrad.testing`` in pytest).
"""

from ._backward import Residual as Residual
from ._backward import backward as backward
from ._backward import forward as forward
from ._registry import nondiff_primitives as nondiff_primitives
from ._registry import register_nondiff as register_nondiff
from ._registry import register_vjp as register_vjp
from ._registry import registered_primitives as registered_primitives
from .rules._util import cast_like as cast_like
from .rules._util import unbroadcast as unbroadcast
