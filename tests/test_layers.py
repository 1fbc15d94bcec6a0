"""The package layers: every import points down (or sideways inside a package, without cycles).

    core -> supernet -> detection -> latency -> evolution -> stages -> scripts, experiments

A lower package importing a higher one (even inside a function) fails here, naming file:line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "supernet", "detection", "latency", "evolution", "stages"]
RANK = {name: i for i, name in enumerate(LAYERS)}
SCRIPTS = ("pipeline", "evolve", "retrain", "report", "train_supernet", "experiments")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every import in `path`, at module level or inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, node.lineno)]
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return out


def _modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    return {f"{package}.{p.stem}": p for p in sorted((root / package).glob("*.py"))
            if p.stem != "__init__"}


def layer_violations(root: Path = ROOT) -> list[str]:
    bad = []
    for package in LAYERS:
        for path in sorted((root / package).glob("*.py")):
            for module, line in _imports(path):
                top = module.split(".")[0]
                if top in RANK and RANK[top] > RANK[package]:
                    bad.append(f"{path.relative_to(root)}:{line} imports {module} (layer {top} is "
                               f"above {package})")
                elif top in SCRIPTS:
                    bad.append(f"{path.relative_to(root)}:{line} imports the script/experiment {module}")
    return bad


def package_cycles(package: str, root: Path = ROOT) -> list[list[str]]:
    """Import cycles between the modules of one package (a module importing itself is ignored)."""
    modules = _modules(package, root)
    graph = {m: {i for i, _ in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_imports_only_point_down():
    assert layer_violations() == []


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_cycle_inside_a_package(package):
    assert package_cycles(package) == []


def test_the_check_sees_an_upward_import_and_a_cycle(tmp_path):
    # the checker itself: a planted upward import (inside a function) is reported with its line
    fake = tmp_path / "detection"
    fake.mkdir()
    (fake / "x.py").write_text("def f():\n    from latency.table import LatencyTable\n")
    assert layer_violations(tmp_path) == [
        "detection/x.py:2 imports latency.table (layer latency is above detection)",
        "detection/x.py:2 imports latency.table.LatencyTable (layer latency is above detection)"]
    (fake / "a.py").write_text("import detection.b\n")
    (fake / "b.py").write_text("from detection import a\n")
    assert package_cycles("detection", tmp_path) == [["detection.a", "detection.b", "detection.a"]]
