"""What every command shares: the consoles, one-line errors, JSON printing, progress, and the option declarations.

Options that several commands take are declared once here, so every command spells them the same way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from realtalk_cli.errors import RealtalkError

if TYPE_CHECKING:
    import click

# Control characters as their visible pictures (ESC as ␛), C1 controls as U+FFFD; newline and tab kept.
_VISIBLE = {c: 0x2400 + c for c in range(32) if chr(c) not in "\n\t"} | {0x7F: 0x2421}
_VISIBLE |= dict.fromkeys(range(0x80, 0xA0), 0xFFFD)


@functools.cache
def _text_console() -> type:
    """The console class for text from files and endpoints: a model reply or a file name holding ESC sequences is
    shown, never obeyed by the terminal (rich itself passes ESC through). Made on first use: rich costs ~35 ms to
    import, which a run printing only JSON need not pay."""
    from rich.console import Console

    class TextConsole(Console):
        def render_str(self, text: str, **kwargs):
            return super().render_str(text.translate(_VISIBLE), **kwargs)

        def on_broken_pipe(self) -> None:
            # The reader closed the pipe (`realtalk ... | head`): the rest of this stream goes nowhere and the command
            # ends with its own exit code (rich's default exits 1, which here means "under --fail-under").
            self.quiet = True
            _silence(self.file)

    return TextConsole


def _silence(stream) -> None:
    """What is still written to a stream whose reader is gone goes to /dev/null."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _Console:
    """A rich console made when first used (every attribute is the console's)."""

    def __init__(self, **options) -> None:
        self._options = options
        self._console = None

    def real(self):
        if self._console is None:
            self._console = _text_console()(**self._options)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.real(), name)


def escape(text: str) -> str:
    """Text shown inside rich markup as typed (rich's own escape, imported when used)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# markup and emoji off: run text, chat text, file names and specs print as typed ("[/x]" is no rich tag,
# `x.py:X:` no emoji); the few styled lines pass markup=True and escape what they embed
out = _Console(highlight=False, markup=False, emoji=False)
err = _Console(stderr=True, highlight=False, markup=False, emoji=False)
debug = {"on": bool(os.environ.get("REALTALK_DEBUG"))}

# --- shared option declarations ------------------------------------------------------------------

Model = Annotated[str | None, typer.Option("--model", "-m", help="provider:model, an OpenAI model, or offline:NAME.")]
JudgeModel = Annotated[str | None, typer.Option("--judge-model", help="Model that grades the answers.")]
JudgeProtocolName = Annotated[
    str | None,
    typer.Option(
        "--judge-protocol",
        help="The judge alone, another harness's: realtalk, paper, mem0 (mem0's J), longmemeval (LongMemEval's "
        "per-type yes/no prompts, for LongMemEval questions only); without it, the --compat protocol's own. Each "
        "judge's verdicts are kept on the rows under judges, keyed "
        "protocol/model: a run can carry several. Example: --judge-protocol mem0 --judge-model gpt-4o-mini",
    ),
]


def output_path(value: str) -> Path:
    """An output path as typed: an empty one (`-o "$UNSET"`) is a usage error, not the current directory."""
    if not str(value).strip():
        raise typer.BadParameter("empty path (an unset shell variable?)")
    return Path(value)


def out_option(*names: str, help: str) -> object:
    return typer.Option("--out", "-o", *names, parser=output_path, metavar="PATH", help=help)


OutDir = Annotated[Path | None, out_option(help="Run directory for predictions and reports.")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="Override the provider's endpoint.")]
ApiKeyEnv = Annotated[str | None, typer.Option("--api-key-env", help="Environment variable with the key.")]
MemorySpec = Annotated[
    str | None,
    typer.Option(
        "--memory",
        help="A memory system choosing the context: module:Name, path/to/file.py:Name, or a built-in "
        "(bm25, dense, hybrid, observations, session-summaries, llm-summaries).",
    ),
]
MemoryOptions = Annotated[
    list[str] | None, typer.Option("--memory-option", help="key=value passed to the memory (repeatable).")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Count requests, tokens and cost; call nothing.")]
MaxCost = Annotated[float | None, typer.Option("--max-cost", help="Stop cleanly once this many USD are spent.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")]
Batch = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Send the requests as batch jobs (/v1/batches, about half price, within a day): submit and return; "
        "run the same command again to collect.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="Overwrite existing outputs; a run folder starts afresh (its earlier answers discarded)."
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout", min=0.1, help="Seconds allowed for a whole request (reply included).", show_default="120"
    ),
]
PriceIn = Annotated[float | None, typer.Option("--price-in", min=0, help="USD per million prompt tokens.")]
PriceOut = Annotated[float | None, typer.Option("--price-out", min=0, help="USD per million completion tokens.")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N items.")]
ErrataFile = Annotated[
    Path | None,
    typer.Option(
        "--errata",
        metavar="FILE",
        help="Corrected gold answers (the LoCoMo audit's errors.json, or REALTALK reference fixes, as JSON): scores "
        "against the corrected gold beside the published one, the ceiling per category, the changed items. "
        "Example: --errata errors.json",
    ),
]
HfModels = Annotated[
    list[str] | None, typer.Option("--hf-model", help="hf backend: KIND=MODEL (sentiment, emotion, intimacy).")
]


def concurrency_option(note: str = "", default: str | None = None) -> object:
    """`default` is shown for options whose real default is None (so that --config can fill them)."""
    return typer.Option("--concurrency", min=1, help=f"Requests in flight at once{note}.", show_default=default or True)


def fail_under_option(score: str) -> object:
    return typer.Option("--fail-under", help=f"Exit 1 when {score} is below this.")


# --- help text ---------------------------------------------------------------------------------
# Typer's help prints Python types (`<bool>` after a flag, `<Path>`, `list[Path]`) and arguments as
# `{run_dir}`. Ours shows what a shell user types: nothing after a flag, INTEGER/TEXT/PATH/[a|b] after
# an option, and arguments as RUN_DIR or CHATS... (click's own conventions).


def _option_value_name(self: TyperOption, ctx: click.Context) -> str | None:
    if self.is_flag or self.count:
        return None
    if self.metavar is not None:
        return self.metavar
    desc = self.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        return "PATH"
    label = self.display_type(ctx)  # "<int>", "<float>", "<str>", "<list[int]>"...
    for python, shown in (("int", "INTEGER"), ("float", "NUMBER"), ("str", "TEXT")):
        if python in label:
            return shown
    return "VALUE"


def _argument_name(self: TyperArgument) -> str:
    return self.metavar or (self.name or "").upper()


def _argument_usage(self: TyperArgument) -> str:
    name = _argument_name(self) + ("..." if self.nargs != 1 else "")
    return name if self.required else f"[{name}]"


def _default_text(obj, *, ctx, show_default_is_str: bool, default_value) -> str:
    # Defaults stated for None-valued options (filled from --config) read like the others: [default: 8].
    if show_default_is_str:
        return str(obj.show_default)
    return _typer_default_text(obj, ctx=ctx, show_default_is_str=False, default_value=default_value)


_typer_default_text = typer.core._get_default_string
typer.core._get_default_string = _default_text
TyperOption.display_type_rich = _option_value_name
TyperArgument.display_type_rich = lambda self, ctx: None
TyperArgument.display_name_raw = property(_argument_name)
TyperArgument._usage_display_name = _argument_usage


class DefaultGroup(TyperGroup):
    """A command group that runs its `run` command when the first argument names no other sub-command, so
    `realtalk probe CHAT... --model M` is `realtalk probe run CHAT... --model M` while `probe rescore` and
    `probe show` are real sub-commands with their own help."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[run] ARGS... | COMMAND [ARGS]...")

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's commands, then the run command's own help and options (what `probe CHAT...` takes)."""
        super().format_help(ctx, formatter)
        run = self.commands[self.default_command]
        run.format_help(type(ctx)(run, info_name=self.default_command, parent=ctx), formatter)


# --- errors, output, progress --------------------------------------------------------------------


def fail(message: str, code: int = 2) -> typer.Exit:
    # The message is text (file names, a plug-in's error), never markup.
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(fn: Callable) -> Callable:
    """Turn a RealtalkError into one line on stderr and its exit code, 2 or 3 (a traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RealtalkError as e:
            if debug["on"]:
                raise
            raise fail(str(e), e.exit_code) from None
        except OSError as e:  # a full disk, a folder made read-only mid-run: one line, not a traceback
            if debug["on"]:
                raise
            where = f"{e.filename}: " if e.filename else ""
            raise fail(f"{where}{e.strerror or e}") from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def exit_if_pending(result: dict, as_json: bool) -> None:
    """A batch job still running: what is pending (with --json, the whole result) and exit 3."""
    if "pending" in result:
        if as_json:
            print_json(result)
        else:
            err.print(result["pending"], soft_wrap=True)
        raise typer.Exit(3)


def print_json(obj: object) -> None:
    text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
    # orjson leaves DEL and C1 controls raw; as \u escapes the terminal never sees them and the data is unchanged
    text = re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)
    # As it is, without rich (the text holds no control character rich would show otherwise); a reader that
    # closed the pipe gets no more, as from the consoles.
    if sys.stdout is None:  # started with stdout closed (`realtalk ... >&-`): nowhere to write, as rich does
        return
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence(sys.stdout)


def cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _fold(header: str, width: int) -> str:
    import textwrap

    return "\n".join(line for word in header.split(" ") for line in textwrap.wrap(word, width) or [""])


def print_wide_table(title: str, key: str, headers: list[str], rows: list[tuple[str, list[str]]]) -> None:
    """A table with one row per item (chat, run, person) and many value columns, fitted to the terminal: headers
    fold, and columns that do not fit go to a further table (the key column repeated), so no number is cut."""
    from rich import box
    from rich.table import Table

    def width(i: int) -> int:
        cells = [line for _, values in rows for line in str(values[i]).splitlines()] or ["-"]
        words = [len(w) for w in headers[i].split(" ")]
        return max(max(len(c) for c in cells), min(max(words), 12), 4)

    def build(columns: list[int]) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column(key, no_wrap=True)
        for i in columns:
            w = width(i)
            table.add_column(_fold(headers[i], w), justify="right", no_wrap=True, min_width=w)
        for name, values in rows:
            table.add_row(name, *(str(values[i]) for i in columns))
        return table

    def fits(table: Table) -> bool:
        return out.measure(table, options=out.options.update_width(100_000)).maximum <= out.width

    out.print(title, soft_wrap=False)
    shown: list[int] = []
    for i in range(len(headers)):
        if shown and not fits(build([*shown, i])):
            out.print(build(shown))
            shown = []
        shown.append(i)
    out.print(build(shown))


def print_plan(plan: dict, unit: str, as_json: bool) -> None:
    """What a --dry-run would send: requests, prompt tokens, estimated cost; the judge's apart."""
    if as_json:
        print_json(plan)
        return

    def line(p: dict, what: str, per: str = unit) -> str:
        cost = f"${p['estimated_cost_usd']:.4f}" if p["priced"] else "unknown (model not in prices.toml)"
        estimated = "" if p.get("tokens_exact", True) else ", estimated: no tokenizer for this model"
        cached = p.get("cached_tokens_estimate") or 0
        cached_note = f", ~{cached} of them likely served from the provider's prompt cache" if cached else ""
        batch_note = " at batch prices" if p.get("batch") else ""
        return (
            f"{what}: {p['requests']} requests ({p['already_done']} already done), {p['prompt_tokens']} prompt "
            f"tokens ({p[f'prompt_tokens_per_{per}']} per {per}{estimated}{cached_note}), "
            f"estimated cost {cost}{batch_note}"
        )

    out.print(line(plan, "dry run"), soft_wrap=True)
    if plan.get("judge"):
        out.print(line(plan["judge"], f"judge {plan['judge']['model']}"), soft_wrap=True)
    if plan.get("labels"):
        out.print(line(plan["labels"], f"EI labels {plan['labels']['model']}", "request"), soft_wrap=True)
    if plan.get("recall_timeouts"):
        out.print(
            f"{plan['recall_timeouts']} questions left out: the memory's recall took longer than --memory-timeout",
            soft_wrap=True,
        )
    if plan.get("memory"):
        memory = plan["memory"]
        out.print(line(memory, "memory ingest (its own requests)", "request"), soft_wrap=True)
        out.print(
            f"the answers' prompts above leave out what the memory will write (unknown before it runs): up to "
            f"{memory['answer_context_tokens_max']} more prompt tokens (--context-tokens per question)",
            soft_wrap=True,
        )
    total = plan.get("total")
    if total:
        cost = f"${total['estimated_cost_usd']:.4f}" if total["priced"] else "unknown (a model not in prices.toml)"
        spent = f"; the run folder has spent ${total['spent_usd']:.4f} so far" if total["spent_usd"] else ""
        cap = f"; --max-cost {total['max_cost']:g} covers both" if total["max_cost"] is not None else ""
        what = ", ".join(["answers", *(k for k in ("judge", "memory ingestion", "labels") if plan.get(k.split()[0]))])
        out.print(f"estimated total ({what}): {cost}{spent}{cap}", soft_wrap=True)


def finish_run(report: dict, score: float | None, fail_under: float | None, score_name: str) -> None:
    """Exit codes a CI script can rely on: 3 incomplete, 1 under --fail-under, else 0."""
    from realtalk_cli.tasks.runs.results import status_lines

    for line in status_lines(report):
        err.print(line, soft_wrap=True)
    if not report.get("complete", True):
        raise typer.Exit(3)
    if fail_under is not None and (score is None or score < fail_under):
        err.print(f"{score_name} {score} is under --fail-under {fail_under}")
        raise typer.Exit(1)


class Shown:
    """The callback a task calls per finished item; `start` tells the total and what a resume skips. `bar` is
    a rich Progress (None: nothing shown) and `task` its line; `brief` shows the spend alone (a suite's cell)."""

    def __init__(self, bar, task, quiet: bool = False, brief: bool = False) -> None:
        self.bar, self.task, self.quiet, self.brief = bar, task, quiet, brief

    @contextlib.contextmanager
    def stage(self, label: str, total: int):
        """A slow step before the items run (e.g. encoding a chat): the bar shows its label and total on a
        terminal; otherwise one line on stderr (none when quiet)."""
        if self.bar is None or self.bar.disable:
            if not self.quiet:
                err.print(f"{label} ...", markup=False, highlight=False, soft_wrap=True)
            yield lambda n: None
            return
        description = next(t for t in self.bar.tasks if t.id == self.task).description
        self.bar.update(self.task, description=label, total=total, completed=0)
        try:
            yield lambda n: self.bar.update(self.task, advance=n)
        finally:
            self.bar.update(self.task, description=description, total=None, completed=0)

    def start(self, total: int, already: int = 0, verb: str = "done") -> None:
        if self.bar is None:
            return
        note = f"{already} already {verb} " if already else ""
        self.bar.update(self.task, total=total, completed=0, note=note)

    def __call__(self, row, totals=None) -> None:
        if self.bar is None:
            return
        if self.brief:
            self.bar.update(self.task, advance=1, info=f"${totals.cost_usd:.4f}" if totals else "")
            return
        info = f"· retries {totals.retries} · cached {totals.cached} · ${totals.cost_usd:.4f}" if totals else ""
        self.bar.update(self.task, advance=1, info=info)
        speed = next(t for t in self.bar.tasks if t.id == self.task).speed
        self.bar.update(self.task, rate=f"{speed:.1f}/s" if speed else "")


@contextlib.contextmanager
def progress(label: str, quiet: bool):
    """A progress bar on stderr: done/total, rate, elapsed and remaining time, retries, cache hits, spend;
    on a resumed run, how many items were already done. `quiet` shows nothing (and imports no rich)."""
    if quiet:
        yield Shown(None, None, quiet=True)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}{task.fields[info]}"),
    )
    with Progress(*columns, console=err.real(), disable=not err.is_terminal, transient=True) as bar:
        task = bar.add_task(label, total=None, info="", note="", rate="")
        yield Shown(bar, task, quiet)
