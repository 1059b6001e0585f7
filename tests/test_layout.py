"""The package's import graph has no cycle (module- and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import neuron_signatures

PACKAGE_DIR = Path(neuron_signatures.__file__).parent
PACKAGE = PACKAGE_DIR.name


def package_modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Map each dotted module name of the package to its file (a package to its `__init__.py`)."""
    modules: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package modules one import statement of `module` reaches.

    `from pkg import sub` counts as importing `pkg.sub` only when `sub` is a submodule; it counts
    as importing `pkg` (its `__init__`) when a name is taken from the package itself.
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:
        is_package = modules[module].name == "__init__.py"
        here = module.split(".") if is_package else module.split(".")[:-1]
        base = here[: len(here) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found: set[str] = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:
            found.add(sub)
        elif source in modules:
            found.add(source)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Edges module → package modules it imports anywhere in its body (functions included)."""
    modules = package_modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name] |= _imported(name, node, modules) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_function_level_and_submodule_imports(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import A\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from . import b\nA = 1\n")
    (pkg / "sub" / "b.py").write_text(f"from {PACKAGE}.sub.a import A\n")
    (pkg / "sub" / "c.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph[f"{PACKAGE}.sub.c"] == {f"{PACKAGE}.sub.a"}
    assert cycles(graph) == [[f"{PACKAGE}.sub.a", f"{PACKAGE}.sub.b"]]


def test_package_import_graph_has_no_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)
