"""A fuzz program: typed variables, lines of Python source, rendering and shrinking.

A program is straight-line Python over ``jax.numpy``: every line assigns one or more new
variables from an expression over earlier ones; a line may carry nested function
definitions (the bodies of ``jit``, ``scan``, ``cond``, ``custom_jvp``, ... blocks). Its
outputs are the float variables no later line reads. Being source, a program prints as a
standalone reproduction, and shrinking is deleting lines (with the lines that read them).
"""

from __future__ import annotations

import dataclasses

FLOATS = ("float64", "float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Var:
    name: str
    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name: float64, float32, bfloat16, int32, bool

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclasses.dataclass(frozen=True)
class Line:
    outs: tuple[Var, ...]
    expr: str
    deps: tuple[str, ...]  # every outer name the line reads, closures of its blocks included
    defs: tuple[str, ...] = ()  # source of nested functions, defined just before the line
    kind: str = "op"  # the catalogue entry that made it (for statistics)

    def source(self, indent: str) -> list[str]:
        lines = []
        for d in self.defs:
            lines += [indent + row for row in d.splitlines()]
        target = ", ".join(v.name for v in self.outs)
        if len(self.outs) == 1 and self.outs[0].name.endswith("_"):
            target += ","
        lines.append(f"{indent}{target} = {self.expr}")
        return lines


@dataclasses.dataclass(frozen=True)
class Program:
    inputs: tuple[Var, ...]
    lines: tuple[Line, ...]
    mode: str = "plain"  # plain | vmap (vmapped around, inputs batched) | gradgrad
    batch: int = 0  # size of the vmap axis in "vmap" mode

    def outputs(self) -> list[Var]:
        read = {d for line in self.lines for d in line.deps}
        made = [v for line in self.lines for v in line.outs]
        outs = [v for v in made if v.is_float and v.name not in read]
        if not outs:  # a program with no float sinks returns its float inputs
            outs = [v for v in self.inputs if v.is_float][:1]
        return outs

    def source(self, name: str = "program") -> str:
        args = ", ".join(v.name for v in self.inputs)
        body = [f"def {name}({args}):"]
        for line in self.lines:
            body += line.source("    ")
        outs = self.outputs()
        body.append(f"    return ({''.join(v.name + ', ' for v in outs)})")
        return "\n".join(body) + "\n"

    def with_lines(self, keep: list[int]) -> Program:
        return dataclasses.replace(self, lines=tuple(self.lines[i] for i in keep))


def closed(program: Program, keep: list[int]) -> list[int]:
    """``keep`` minus every line that reads a variable made by a line not kept."""
    available = {v.name for v in program.inputs}
    out = []
    for i in keep:
        line = program.lines[i]
        if all(d in available for d in line.deps):
            out.append(i)
            available.update(v.name for v in line.outs)
    return out


def shrink(program: Program, fails) -> Program:
    """Delta debugging over the lines: the smallest program (1-minimal) that still ``fails``.

    ``fails(program) -> bool``. Removing a line also removes the lines that read it.
    """
    keep = list(range(len(program.lines)))
    n = 2
    while len(keep) >= 1:
        chunk = max(1, len(keep) // n)
        reduced = False
        for start in range(0, len(keep), chunk):
            trial = closed(program, keep[:start] + keep[start + chunk :])
            if len(trial) < len(keep) and fails(program.with_lines(trial)):
                keep, n, reduced = trial, max(n - 1, 2), True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(keep), 2 * n)
    return program.with_lines(keep)
