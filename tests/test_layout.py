"""The package's layout: one subpackage per workflow stage, stacked without upward imports or cycles.

The order below is the README's (Repository layout): a module may import from its own stage and
from stages listed before it, never from a later one, lazy imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

#: the stages of mr2ct, bottom first (a top-level module is its own stage)
STAGES = ["schemas", "data", "provenance", "config", "settings", "evaluation", "report", "models", "segmentation"]
STAGES += ["workflow", "cli", "__main__"]
PACKAGE = ROOT / "mr2ct"


def stage(module: str) -> str:
    """``mr2ct.data.io`` -> ``data``; ``mr2ct.cli`` -> ``cli``."""
    return module.split(".")[1]


def imports_of(path: Path) -> set[str]:
    """Every mr2ct module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.relative_to(ROOT)}: relative import; the package imports absolutely")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mr2ct."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mr2ct.")}
    return found


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "mr2ct":
            out[name] = path
    return out


def test_every_module_belongs_to_a_known_stage():
    assert sorted({stage(m) for m in modules()}) == sorted(STAGES)


def test_no_module_imports_from_a_later_stage():
    upward = [
        f"{name} ({stage(name)}) imports {other} ({stage(other)})"
        for name, path in modules().items()
        for other in imports_of(path)
        if STAGES.index(stage(other)) > STAGES.index(stage(name))
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    graph = {name: {o for o in imports_of(path) if o in modules() and o != name} for name, path in modules().items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_every_module_says_what_it_owns():
    missing = [n for n, p in modules().items() if ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None]
    assert not missing, f"modules without a docstring: {missing}"
