"""Loading a memory: a built-in name, `module:Name` or `path/to/file.py:Name` (a user's plug-in), its
`--memory-option` values, and what names it in a run's identity.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.memory.protocol import Memory


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """`key=value` strings (from --memory-option) as a dict."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RealtalkError(f"--memory-option {pair!r}: expected key=value")
        if key.strip() in options:
            raise RealtalkError(f"--memory-option {key.strip()} given twice: give each key once")
        options[key.strip()] = value
    return options


# The user's plug-ins imported by this process: the console script then ends with the interpreter's full
# teardown, which flushes and closes what a plug-in left open, and sends what the plug-in prints at exit
# (atexit handlers, __del__) to stderr (see cli.main).
plugins_loaded: list[str] = []


@dataclass
class Loaded:
    """A memory's class (or function), loaded once per run, and what pins its code in the run's identity: the
    sha256 of the plug-in's source file (None for a built-in, whose `version` says it)."""

    spec: str
    factory: Callable[..., Memory]
    source_sha256: str | None = None
    plugin: bool = True  # a user's code, not one of BUILTIN


def load_factory(spec: str) -> Loaded:
    """The class (or function) a SPEC names: a built-in name, `module:Name` or `path/to/file.py:Name`. A file is
    read once and the bytes hashed are the bytes executed: the run calls this once (its import side effects and
    atexit handlers happen once), and an edit to the file is another memory."""
    from realtalk_cli.tasks.memory.builtins import BUILTIN  # the retrievers' code, for runs that use a memory

    if spec in BUILTIN:
        return Loaded(spec, BUILTIN[spec], plugin=False)
    plugins_loaded.append(spec)
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        known = ", ".join(sorted(BUILTIN))
        raise RealtalkError(f"--memory {spec!r}: expected module:Name, path/to/file.py:Name or one of {known}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise RealtalkError(f"--memory {spec}: {path}: no such file")
        importable_beside(path)
        source = path.read_bytes()
        module_name = "realtalk_memory_" + re.sub(r"\W", "_", str(path.resolve()))
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
        try:
            exec(compile(source, str(path), "exec"), module.__dict__)  # the bytes hashed below
        except (Exception, SystemExit) as e:
            raise RealtalkError(f"--memory {spec}: {path} failed to import: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except (Exception, SystemExit) as e:
            raise RealtalkError(f"--memory {spec}: cannot import {target}: {type(e).__name__}: {e}") from None
        file = getattr(module, "__file__", None)
        source = Path(file).read_bytes() if isinstance(file, str) and Path(file).is_file() else None
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        raise RealtalkError(f"--memory {spec}: {target} has no class or function {name!r}")
    if inspect.isclass(factory) and not all(callable(getattr(factory, m, None)) for m in ("ingest", "recall")):
        raise RealtalkError(f"--memory {spec}: {name} lacks an ingest(chat, tools) or recall(question, budget) method")
    return Loaded(spec, factory, None if source is None else hashlib.sha256(source).hexdigest())


def importable_beside(path: Path) -> None:
    """Make the modules beside a plug-in file importable (`from helpers import x` next to my_memory.py).

    Its folder goes last on sys.path, so a name of the standard library, of realtalk or of an installed package
    keeps meaning that module (a `json.py` or `realtalk_cli/` beside the plug-in never replaces it, for the
    plug-in or for realtalk); a module the plug-in imports that is hidden that way is warned about."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return  # importing it says what is wrong
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    for name in sorted(names):
        beside = [p for p in (Path(folder) / f"{name}.py", Path(folder) / name / "__init__.py") if p.is_file()]
        if not beside:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = spec.origin if spec else None
        if origin and Path(origin).resolve() != beside[0].resolve():
            sys.stderr.write(
                f"warning: {beside[0]} beside {path.name} is not what `import {name}` finds there: {origin} is"
                f" (the standard library, realtalk and installed packages come first); rename {beside[0].name}\n"
            )


def build_memory(loaded: Loaded, options: dict[str, str]) -> Memory:
    spec = loaded.spec
    try:
        memory = loaded.factory(**options)
    except TypeError as e:
        raise RealtalkError(f"--memory {spec}: options {sorted(options)} not accepted: {e}") from None
    except (Exception, SystemExit) as e:  # a plug-in's bug while building: one line, not a traceback
        raise RealtalkError(f"--memory {spec}: building it failed: {type(e).__name__}: {e}") from None
    if not isinstance(memory, Memory):
        raise RealtalkError(f"--memory {spec}: the object built has no ingest(chat, tools) or recall(question, budget)")
    return memory


def memory_identity(loaded: Loaded, options: dict[str, str]) -> dict:
    """What names a memory in a run's identity: its spec, options, version (the class's `version`) and, for a
    plug-in, the sha256 of its source file (an edit without a `version` bump is another memory too)."""
    factory, spec = loaded.factory, loaded.spec
    version = getattr(getattr(factory, "func", factory), "version", None)  # BUILTIN holds partials
    if version is not None and not isinstance(version, (str, int, float)):
        # e.g. a property: its repr changes every run, so every resume would look like another memory
        raise RealtalkError(f"--memory {spec}: `version` must be a plain string class attribute, not {version!r}")
    identity = {
        "spec": spec,
        "options": dict(sorted(options.items())),
        "version": None if version is None else str(version),
    }
    if loaded.source_sha256 is not None:
        identity["source_sha256"] = loaded.source_sha256
    return identity
