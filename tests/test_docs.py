"""The docs' code runs: every ```python block of a page, in order, as one script."""

import pathlib
import re

import jax
import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
EXECUTED = ["adding-a-rule.md"]  # how-it-works.md holds excerpts; its numbers are tested below


def python_blocks(page: pathlib.Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))


@pytest.mark.parametrize("name", EXECUTED)
def test_page_code_runs(name, capsys):
    code = python_blocks(DOCS / name)
    assert code.strip(), f"{name} has no python blocks"
    with jax.numpy_rank_promotion("allow"):
        exec(compile(code, str(DOCS / name), "exec"), {"__name__": f"docs_{name}"})


def test_how_it_works_numbers_are_funcgrads():
    import funcgrad

    def f(x, y):
        return (x + y) * (x - y) + jax.numpy.sin(x)

    gx, gy = funcgrad.grad(f, argnums=(0, 1))(3.0, 2.0)
    text = (DOCS / "how-it-works.md").read_text()
    assert f"{float(gx):.5f}" == "5.01001" and "5.01001" in text
    assert float(gy) == -4.0 and "-4 = -2y" in text
