"""The package's layers import one way only, and no module imports another's private name.

    entry (funcgrad/__init__, __main__)
      -> toolkit (nn, train) -> diagnostics -> checks (_check, _custom_check, _numerics,
         testing) -> API (_api, _eager, extend, parallel) -> rules -> engine (_backward,
         _registry, _linearize, _watch, _liveness, _dataflow, _errors,
         _jax_compat)

See docs/architecture.md. Every ``import`` and ``from ... import`` in funcgrad/ is parsed
(including imports inside functions); an arrow that points up a layer, or a name starting
with ``_`` imported from another module, fails with the file and line.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "funcgrad"
# "tools" use only the public API (import funcgrad), like experiments and benchmarks.
LAYERS = ["engine", "rules", "api", "checks", "diagnostics", "toolkit", "entry", "tools"]
TOP_LEVEL = {
    "_backward": "engine",
    "_registry": "engine",
    "_linearize": "engine",
    "_watch": "engine",
    "_liveness": "engine",
    "_dataflow": "engine",  # the static dataflow with nested jaxprs opened (why_zero's graph)
    "_errors": "engine",
    "_jax_compat": "engine",
    "_api": "api",
    "_eager": "api",
    "_tracing": "api",  # where a call becomes a closed jaxpr (abstract or recorded)
    "_record": "api",
    "_remat": "api",  # the memory plan, applied where a call is traced
    "_memory": "api",
    "_maxflow": "api",
    "extend": "api",
    "parallel": "api",
    "_check": "checks",
    "_custom_check": "checks",
    "_numerics": "checks",
    "testing": "checks",
    "_discovery": "tools",  # coverage discovery over public JAX (docs/coverage.md)
    "__init__": "entry",
    "__main__": "entry",
}
SUBPACKAGES = {
    "rules": "rules",
    "diagnostics": "diagnostics",
    "nn": "toolkit",
    "train": "toolkit",
    "fuzz": "tools",
}


def layer_of(module: str) -> str:
    """``funcgrad.rules.linalg`` -> ``rules``; every module of funcgrad has a layer."""
    parts = module.split(".")
    if len(parts) == 1:
        return "entry"
    if parts[1] in SUBPACKAGES:
        return SUBPACKAGES[parts[1]]
    return TOP_LEVEL[parts[1]]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports(path: pathlib.Path):
    """(line, importing module, imported module, imported name or None) for funcgrad targets."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "funcgrad":
                    yield node.lineno, mod, a.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "funcgrad":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if is_module(sub):  # `from . import diagnostics`: the module itself
                    yield node.lineno, mod, sub, None
                else:
                    yield node.lineno, mod, target, a.name


def all_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, mod, target, name in imports(path):
            yield f"{path.relative_to(ROOT)}:{line}", mod, target, name


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        assert layer_of(module_name(path)) in LAYERS


def test_imports_point_down_the_layers():
    upward = [
        f"{where}: {mod} ({layer_of(mod)}) imports {target} ({layer_of(target)})"
        for where, mod, target, _ in all_imports()
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(mod))
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{where}: {mod} imports {target}.{name}"
        for where, mod, target, name in all_imports()
        if name and name.startswith("_") and not name.startswith("__") and target != mod
    ]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_checker_sees_a_violation():
    # An arrow against the layers and a private import, as the parser reads them.
    assert LAYERS.index(layer_of("funcgrad.diagnostics._blame")) > LAYERS.index(
        layer_of("funcgrad._check")
    )
    assert layer_of("funcgrad.rules.linalg") == "rules"
    src = PACKAGE / "_check.py"
    found = list(imports(src))
    assert any(t == "funcgrad._api" and n == "grad" for _, _, t, n in found), found


def loops_over_equations(path: pathlib.Path):
    """Lines of ``path`` with a ``for`` (statement or comprehension) over ``<x>.eqns``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.For, ast.comprehension)):
            for sub in ast.walk(node.iter):
                if isinstance(sub, ast.Attribute) and sub.attr == "eqns":
                    yield getattr(node, "lineno", None) or node.iter.lineno


def test_diagnostics_do_not_walk_a_jaxpr_of_their_own():
    # One interpreter: diagnostics configure the engine's walks (_watch.py) or read its
    # static dataflow (_dataflow.py), never loop over equations themselves.
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((PACKAGE / "diagnostics").rglob("*.py"))
        for line in loops_over_equations(path)
    ]
    assert not found, "loops over jaxpr.eqns in diagnostics/:\n" + "\n".join(found)
    # The checker sees such a loop where one exists (the static dataflow has one).
    assert list(loops_over_equations(PACKAGE / "_dataflow.py"))
