"""The `realtalk` command: each command group lives in its own module; this file only assembles them."""

from __future__ import annotations

import atexit
import copy
import os
import sys
import threading
from typing import Annotated

import typer

from realtalk_cli import __version__
from realtalk_cli.cli import analyze, batch, data, probe, report, simulate, suite
from realtalk_cli.cli.common import debug, out

app = typer.Typer(
    help="Long-term conversation benchmarks on REALTALK and LoCoMo: convert, validate, analyze, simulate, probe, "
    "suite, report.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,  # never print locals: they can hold API keys
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        out.print(f"realtalk {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
    debug_flag: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    debug["on"] = debug_flag or bool(os.environ.get("REALTALK_DEBUG"))


for group in (data, report, suite):
    for command in group.app.registered_commands:
        app.registered_commands.append(command)
app.add_typer(probe.app, name="probe")
app.add_typer(simulate.app, name="simulate")
app.add_typer(analyze.app, name="analyze")
app.add_typer(batch.app, name="batch")


def _app_for(args: list[str]) -> typer.Typer:
    """The app a command line needs: `realtalk probe ...` holds the probe group alone, and `realtalk probe CHAT...`
    (or `probe rescore ...`) that group's one command (typer builds the options of every command an app holds
    before it runs one: ~50 ms for all of them); any other command line, every command."""
    named = [g for g in app.registered_groups if args and g.name == args[0]]
    if not named:
        return app
    group = named[0]
    commands = group.typer_instance.registered_commands
    wanted = args[1] if len(args) > 1 else None
    chosen = [c for c in commands if c.name == wanted]
    default = getattr(group.typer_instance.info.cls, "default_command", None)
    if not chosen and wanted is not None and not wanted.startswith("-"):  # `probe CHAT...`: the default command
        chosen = [c for c in commands if c.name == default]
    if chosen:  # help (`probe --help`) and a bare group name keep every command
        group = copy.copy(group)
        group.typer_instance = copy.copy(group.typer_instance)
        group.typer_instance.registered_commands = chosen
    only = copy.copy(app)  # the same settings and top-level options
    only.registered_commands, only.registered_groups = [], [group]
    return only


def _must_wait() -> bool:
    """Whether a thread is alive that the normal exit would rightly wait for. Daemon threads are waited for by
    neither exit; threads a memory plug-in left running (a call past --memory-timeout, a thread it started) are
    marked `realtalk_abandoned` by tasks/memory/runner.py and not waited for either."""
    return any(
        t is not threading.current_thread() and not t.daemon and not getattr(t, "realtalk_abandoned", False)
        for t in threading.enumerate()
    )


def _needs_teardown() -> bool:
    """A thread to wait for, or a user's --memory plug-in loaded: a file it left open is flushed only when the
    interpreter's teardown closes it. Not when the plug-in left a thread running: the normal exit would wait
    for it, possibly forever."""
    memory = sys.modules.get("realtalk_cli.tasks.memory.loader")  # imported only by runs that can load a plug-in
    abandoned = any(getattr(t, "realtalk_abandoned", False) and t.is_alive() for t in threading.enumerate())
    return _must_wait() or (bool(memory and memory.plugins_loaded) and not abandoned)


def _plugin_exit_prints_to_stderr() -> None:
    """realtalk's output is written; what a --memory plug-in prints from here on (its atexit handlers, a __del__
    at teardown, a thread it left running) goes to stderr, never after the `--json` output on stdout."""
    memory = sys.modules.get("realtalk_cli.tasks.memory.loader")
    if not (memory and memory.plugins_loaded):
        return
    try:
        sys.stdout.flush()
        os.dup2(2, 1)  # child processes and C code too
    except (OSError, ValueError, AttributeError):
        pass
    sys.stdout = sys.stderr


def main() -> None:
    """The console script. Once everything is written it ends the process without the interpreter's teardown,
    which spends 0.2-0.3 s freeing the openai SDK's thousand classes: atexit handlers still run and output is
    flushed. The normal exit is kept where teardown still has work (`_needs_teardown`)."""
    try:
        _app_for(sys.argv[1:])()
        code = 0
    except SystemExit as end:
        if not isinstance(end.code, int | None):  # a message for Python to print
            raise
        code = end.code or 0
    _plugin_exit_prints_to_stderr()
    if _needs_teardown():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with the stream closed (`realtalk ... >&-`)
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (`realtalk ... | head`) or a closed stream
            pass
    os._exit(code)
