"""The layout keeps its promises: operators/ never imports Ray, Kafka or pipeline/, and no module imports
itself back through others (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> dict[str, set[str]]:
    mods: dict[str, set[str]] = {}
    for pkg in ("pipeline", "operators"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            deps: set[str] = set()
            tree = ast.parse(path.read_text())
            for block in ast.walk(tree):
                if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
                    block.body = []  # imports for type hints only never run
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    deps.add(node.module)
                    deps.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names)
            mods[name] = deps
    return mods


def _resolve(dep: str, mods: dict[str, set[str]]) -> str | None:
    """The module a dotted import lands in (``pkg.module.name`` -> ``pkg.module``)."""
    while dep and dep not in mods:
        dep = dep.rpartition(".")[0]
    return dep or None


def test_operators_import_neither_ray_nor_kafka_nor_pipeline() -> None:
    bad = {m: sorted(d for d in deps if d.split(".")[0] in ("ray", "kafka", "pipeline"))
           for m, deps in _modules().items() if m.startswith("operators")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: {r for d in deps if (r := _resolve(d, mods)) and r != m and not m.startswith(r + ".")}
             for m, deps in mods.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle
    graph = {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)
