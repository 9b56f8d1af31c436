"""The package's layers, as the README's Layout section states them: a module imports only its own
layer and the layers before it; `data` and `llm` know nothing of each other."""

import ast
from pathlib import Path

import realtalk_cli

PACKAGE = Path(realtalk_cli.__file__).parent
ORDER = ["data", "llm", "scoring", "analysis", "tasks", "report", "cli"]
# What each layer may import besides itself and the top-level helpers (errors, fileio, __init__).
ALLOWED = {
    "data": set(),
    "llm": set(),
    "scoring": {"data"},
    "analysis": {"data", "llm", "scoring"},
    "tasks": {"data", "llm", "scoring", "analysis"},
    "report": {"data", "llm", "scoring", "analysis", "tasks"},
    "cli": {"data", "llm", "scoring", "analysis", "tasks", "report"},
}
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "fileio.py"}


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "realtalk_cli" and len(parts) > 1 and parts[1] in ORDER:
                layers.add(parts[1])
    return layers


def test_every_module_imports_only_lower_layers():
    broken = []
    for layer in ORDER:
        for path in sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else []:
            bad = imported_layers(path) - ALLOWED[layer] - {layer}
            if bad:
                broken.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not broken


def test_top_level_holds_only_the_entry_points_error_type_and_file_helpers():
    modules = {p.name for p in PACKAGE.glob("*.py")}
    assert modules == TOP_LEVEL
    for name in TOP_LEVEL - {"__main__.py"}:
        assert not imported_layers(PACKAGE / name), name


def test_no_relative_imports_so_every_import_names_its_layer():
    relative = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(p.read_text())))
    ]
    assert not relative


def test_every_module_opens_with_a_docstring():
    missing = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__main__.py" and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not missing


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (every import statement, in functions and TYPE_CHECKING too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
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
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"]]


def test_no_import_cycle_anywhere_in_the_package():
    cycles = [c for c in strongly_connected(import_graph()) if len(c) > 1]
    assert not cycles


def test_tasks_holds_sub_packages_and_at_most_two_shared_modules():
    tasks = PACKAGE / "tasks"
    modules = {p.name for p in tasks.glob("*.py")} - {"__init__.py"}
    packages = {p.name for p in tasks.iterdir() if (p / "__init__.py").is_file()}
    assert len(modules) <= 2, modules
    assert {"probe", "simulate", "memory"} <= packages <= {"probe", "simulate", "memory", "runs"}
    assert (PACKAGE / "scoring" / "__init__.py").is_file()


def test_protocol_branches_live_in_the_protocol_modules():
    """The orchestration asks the protocol object; it never tests which protocol it follows."""
    import re

    inside = {PACKAGE / "tasks" / "probe" / "protocols", PACKAGE / "tasks" / "probe" / "judges"}
    branches = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in PACKAGE.rglob("*.py")
        if p.parent not in inside
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if re.search(r"\bif paper\b|\bpaper else\b|compat ==|compat !=", line)
    ]
    assert len(branches) <= 2, branches


def test_the_memory_plugin_import_path_of_the_readme_works():
    from realtalk_cli.tasks.memory import MemoryTools, Passage

    assert Passage("x").ids == [] and MemoryTools.__doc__
