"""The run record of a batch run (batch.json's `run`): the task, its chats and its options, written when a
batch run starts and read back by `realtalk batch status RUN`. Shared by probe and simulate.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm import batch
from realtalk_cli.tasks.runs.settings import check_settings


def record_run(folder: batch.BatchFolder, task: str, files: list[Path], opts) -> None:
    """What `saved_run` reads back: the task, its chats and its options but the run folder and --force. The
    chats as absolute paths, so that `batch status RUN` goes on from any directory (the run's identity names
    them by file name: this changes no identity)."""
    options = {k: v for k, v in asdict(opts).items() if k not in ("out", "force")}
    folder.state["run"] = {"task": task, "chats": [str(p.resolve()) for p in files], "options": options}
    folder.save()


# What a run folder never chooses: the endpoint, the variable whose key is sent there, and code to import.
# `batch status` takes them from its command line (None: not given) and refuses a record that names others.
FROM_COMMAND_LINE = {
    "base_url": "--base-url",
    "api_key_env": "--api-key-env",
    "memory": "--memory",
    "memory_options": "--memory-option",
}


def saved_run(run_dir: Path, options_of: dict[str, type], given: dict) -> tuple[str, list[Path], object]:
    """(task, chats, options) a batch run was started with (for `realtalk batch status RUN`); `options_of`
    gives each task's options class (a record of another task reads as a probe run, as it always did).

    batch.json is data: the options of FROM_COMMAND_LINE are those `given` (from the command line), and a
    record that names other values is refused before anything is imported or sent."""
    folder = batch.BatchFolder(run_dir)
    run = folder.state.get("run")
    if not folder.path.exists() or not isinstance(run, dict) or not isinstance(run.get("options"), dict):
        raise RealtalkError(f"{run_dir}: no batch run here (no {folder.path.name})")
    options = {**run["options"], "out": run_dir.absolute(), "force": False}  # absolute: see probe_settings
    chats = run.get("chats")
    if not isinstance(chats, list) or not all(isinstance(p, str) for p in chats):
        raise RealtalkError(f"{folder.path}: run.chats is not a list of chat paths")
    task = "simulate" if run.get("task") == "simulate" else "probe"
    Options = options_of[task]
    try:
        opts = Options(**options)
    except TypeError as e:  # an option renamed or dropped since, or a damaged record
        raise RealtalkError(f"{folder.path}: run.options do not fit this version of realtalk ({e})") from None
    for f in fields(Options):
        value, default = options.get(f.name), f.default
        expected = str if f.name == "model" else type(default) if default not in (MISSING, None) else None
        if (
            expected is not None
            and value is not None
            and not isinstance(value, (expected, int if expected is float else expected))
        ):
            raise RealtalkError(f"{folder.path}: run.options.{f.name} = {value!r} is not of type {expected.__name__}")
    check_settings({k: v for k, v in options.items() if k != "out"}, Options, f"{folder.path}: run.options")
    _check_given(folder.path, task, options, {f.name for f in fields(Options)}, given)
    return task, [_saved_chat(Path(p), run_dir, folder.path) for p in chats], opts


def _saved_chat(path: Path, run_dir: Path, record: Path) -> Path:
    """A chat of the run record. Runs of earlier versions saved it as typed, relative to the directory the run
    was started in, which they do not name: that is the current one, or one above the run folder (runs/b
    started from the project folder). The run's identity pins each chat's sha256, so another file of the same
    name is refused as another run's, never scored."""
    if path.is_absolute() or path.exists():
        return path
    for base in run_dir.resolve().parents:
        if (base / path).exists():
            return base / path
    raise RealtalkError(
        f"{record}: chat {path} is not found from here nor from a folder above the run; run `realtalk batch "
        "status` from the directory the run was started in (it then records the chat's absolute path)"
    )


def _check_given(record: Path, task: str, saved: dict, known: set[str], given: dict) -> None:
    """The record's endpoint, key variable and memory must be what the command line says (one line, exit 2)."""

    def flags(name: str, value) -> str:
        if name == "memory_options":
            return " ".join(f"--memory-option {k}={v}" for k, v in value.items())
        return f"{FROM_COMMAND_LINE[name]} {value}"

    for name, flag in FROM_COMMAND_LINE.items():
        value = given.get(name) or None  # None and {} alike: not given
        if name not in known:
            if value is not None:
                raise RealtalkError(f"{flag}: a {task} run takes none")
            continue
        recorded = saved.get(name) or None
        if name == "memory_options" and recorded is not None and not _strings(recorded):
            raise RealtalkError(f"{record}: run.options.memory_options = {recorded!r} is not a table of strings")
        if name != "memory_options" and recorded is not None and not isinstance(recorded, str):
            raise RealtalkError(f"{record}: run.options.{name} = {recorded!r} is not a string")
        if recorded == value:
            continue
        if recorded is None:
            fix = f"the run was made without {flag}: drop {flags(name, value)}"
        else:
            fix = f"the run was made with {flags(name, recorded)}: pass {flags(name, recorded)}"
            if value is not None:
                fix += f", not {flags(name, value)}"
        raise RealtalkError(
            f"{record}: {fix} (a run folder never chooses the endpoint, key variable or memory; they come from "
            "the command line)"
        )


def _strings(table) -> bool:
    return isinstance(table, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in table.items())
