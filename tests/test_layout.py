"""The package's layers, as the README's Layout section states them: a module imports only its own
layer and the layers before it; `data` and `llm` know nothing of each other."""

import ast
from pathlib import Path

import realtalk_cli

PACKAGE = Path(realtalk_cli.__file__).parent
ORDER = ["data", "llm", "analysis", "tasks", "report", "cli"]
# What each layer may import besides itself and the top-level helpers (errors, fileio, __init__).
ALLOWED = {
    "data": set(),
    "llm": set(),
    "analysis": {"data", "llm"},
    "tasks": {"data", "llm", "analysis"},
    "report": {"data", "llm", "analysis", "tasks"},
    "cli": {"data", "llm", "analysis", "tasks", "report"},
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
        for path in sorted((PACKAGE / layer).glob("*.py")) if (PACKAGE / layer).is_dir() else []:
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
