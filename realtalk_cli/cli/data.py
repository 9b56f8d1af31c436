"""`convert`, `validate`, `download`: the dataset files."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from realtalk_cli.cli.common import (
    AsJson,
    Timeout,
    err,
    escape,
    handles_errors,
    out,
    out_option,
    print_json,
)
from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError

app = typer.Typer()


_PLACEHOLDERS_HELP = (
    "Placeholders with an author are dropped, each kind as a whole, and counted in the summary: deleted or unsent "
    "messages, call notices, view-once media (Android's 'null') and polls without text. System lines (encryption "
    "notices, joins, group settings, Telegram service entries, Discord non-message types, Messenger "
    "(un)subscriptions) are no messages: skipped and counted. Media messages are kept, with img_file naming the "
    "file (or the export's placeholder) and the caption as clean_text."
)


@app.command(epilog=_PLACEHOLDERS_HELP)
@handles_errors
def convert(
    source: Annotated[
        Path,
        typer.Argument(
            help="A raw REALTALK sheet (.xlsx) or a folder of them; or a chat-app export: WhatsApp .txt/.zip, "
            "Telegram result.json, DiscordChatExporter JSON, Messenger message_N.json (or its folder)."
        ),
    ],
    output: Annotated[
        Path | None,
        out_option("--output", help="Output .json (or directory for a directory of sheets)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
    images_dir: Annotated[
        Path | None,
        typer.Option(
            "--images-dir",
            help="Write the pictures here: a sheet's embedded ones in one folder per chat; the media files an "
            "export holds (a WhatsApp .zip, Telegram's or Messenger's folders) under their img_file names.",
        ),
    ] = None,
    captions_from: Annotated[
        Path | None,
        typer.Option("--captions-from", help="Published chat JSON (or a directory of them) to take captions from."),
    ] = None,
    caption_model: Annotated[
        str | None, typer.Option("--caption-model", help="A vision model (provider:model) that writes the captions.")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="auto (read from the content), xlsx, whatsapp, telegram, discord or messenger.",
        ),
    ] = "auto",
    chat: Annotated[
        str | None,
        typer.Option(
            "--chat",
            help="Telegram full export: the chat to convert, by name (or id); without it the chats are listed.",
        ),
    ] = None,
    anonymize: Annotated[
        bool,
        typer.Option(
            "--anonymize",
            help="Speakers become Person 1, Person 2... (also where their names, or capitalised parts of them, "
            "stand in texts and file names); phone numbers, e-mails and URLs are masked.",
        ),
    ] = False,
    anonymize_map: Annotated[
        Path | None,
        typer.Option("--anonymize-map", help="Write the name -> pseudonym mapping to this file (implies --anonymize)."),
    ] = None,
    session_gap: Annotated[
        float | None,
        typer.Option(
            "--session-gap",
            metavar="HOURS",
            help="Start a new session after this many hours of silence.",
            show_default="one session per calendar day",
        ),
    ] = None,
    date_order: Annotated[
        str | None,
        typer.Option(
            "--date-order",
            metavar="dmy|mdy|ymd",
            help="WhatsApp: the order of day, month and year, for a file whose every date reads both ways.",
            show_default="read from the file",
        ),
    ] = None,
    as_json: AsJson = False,
    timeout: Timeout = None,
) -> None:
    """Convert a chat export into the REALTALK JSON: the dataset's raw sheets (xlsx), or your own chat exported
    from WhatsApp (Android or iOS, .txt or .zip), Telegram Desktop, DiscordChatExporter or Facebook Messenger.

    Group chats keep every speaker (speaker_3...). Messages are in time order, one session per calendar day
    (or --session-gap), dates as the dataset writes them (dd.mm.yyyy, HH:MM:SS, the export's wall clock).
    Lines that fit no rule are reported with their line numbers. Existing files are kept without --force.

    Example: `realtalk convert "WhatsApp Chat with Ana.zip" -o chat.json --images-dir images --anonymize`
    (the dataset's sheets: `realtalk convert data/sample/raw/Chat_S_Ana_Ben.xlsx -o chat.json`)
    """
    from realtalk_cli.data.convert import ExportOptions, convert_source

    captioner = None
    if caption_model is not None:
        from realtalk_cli.analysis.captions import ModelCaptioner

        captioner = ModelCaptioner(caption_model, timeout or 120.0)
    options = ExportOptions(
        fmt, chat, date_order, session_gap, anonymize or anonymize_map is not None, anonymize_map, images_dir, force
    )
    reports, failures = convert_source(source, output, options, captions_from, captioner)
    if as_json:
        print_json({"files": [asdict(r) for r in reports], "failed": failures})
    elif reports and hasattr(reports[0], "format"):
        _print_export_report(reports[0])
    else:
        _print_convert_reports(reports, captions_from is not None or caption_model is not None)
    for failure in failures:
        err.print(f"[red]error:[/red] {escape(str(failure))}", markup=True, soft_wrap=True)
    if failures:
        raise typer.Exit(2)


_SHOWN_UNPARSED = 20


def _print_export_report(r) -> None:
    dropped = ", ".join(f"{n} {kind}" for kind, n in r.placeholders_dropped.items()) or "none"
    lines = [
        f"{r.format} export {Path(r.source).name} -> {r.output}",
        f"  speakers: {len(r.speakers)} ({', '.join(r.speakers)})",
        f"  sessions: {r.sessions}, messages: {r.messages} (with media: {r.media}"
        + (f", files copied: {r.media_copied}" if r.media_copied else "")
        + ")",
        f"  system lines skipped: {r.system_skipped}; placeholders dropped: {dropped}",
        f"  lines that fit no rule: {r.unparsed_lines}",
    ]
    if r.bots:
        lines.append(f"  bots (kept): {', '.join(r.bots)}")
    if r.anonymized:
        lines.append("  anonymized" + (f"; mapping in {r.anonymize_map}" if r.anonymize_map else " (no mapping kept)"))
    for line in lines:
        out.print(line, soft_wrap=True)
    for u in r.unparsed[:_SHOWN_UNPARSED]:
        out.print(f"[yellow]unparsed:[/yellow] {escape(u['where'])}: {escape(u['text'])}", markup=True, soft_wrap=True)
    if len(r.unparsed) > _SHOWN_UNPARSED:
        out.print(f"... and {len(r.unparsed) - _SHOWN_UNPARSED} more (all of them with --json)")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(w)}", markup=True, soft_wrap=True)


def _print_convert_reports(reports: list, with_captions: bool) -> None:
    if not reports:
        return
    from rich.table import Table

    table = Table(title="convert")
    for column in ("file", "sessions", "msgs", "QA", "pics", "attached", "dropped", "unnamed", "warns"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for r in reports:
        table.add_row(
            Path(r.output).stem,
            *map(str, (r.sessions, r.messages, r.qa, r.pictures, r.pictures_attached, r.pictures_dropped)),
            str(r.pictures_unnamed),
            str(len(r.warnings)),
        )
    out.print(table)
    for r in reports:
        for w in r.warnings:
            out.print(f"[yellow]warning:[/yellow] {escape(f'{Path(r.source).name}: {w}')}", markup=True, soft_wrap=True)
    if not with_captions:
        out.print(
            "note: no captions source given, so messages carry no 'blip_caption' "
            "(use --captions-from PUBLISHED.json, or --caption-model MODEL to ask a vision model)"
        )


@app.command()
@handles_errors
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="REALTALK, LoCoMo or LongMemEval JSON files, or directories of them.")
    ],
    as_json: AsJson = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary line per file.")] = False,
) -> None:
    """Check REALTALK and LoCoMo files: schema, session numbering, dates, speakers, dia_ids, evidence, categories.

    LongMemEval files are read one instance at a time: a missing or mistyped field, or a truncated file, makes the
    file unreadable (one line naming the instance and field, exit 2); sessions out of date order, a question date
    before the last session and integer answers (quirks of the real files) are warnings.

    Exit code 0 when clean (warnings allowed), 1 when a file has errors, 2 when a file cannot be read.

    Example: `realtalk validate ../shared/realtalk ../shared/locomo/Chat_1_Caroline_Melanie.json`
    """
    from realtalk_cli.data.formats import chat_paths
    from realtalk_cli.data.validate import validate_file

    reports, unreadable = [], []
    for path in chat_paths(files):
        try:
            reports.append(validate_file(path))
        except RealtalkError as e:
            unreadable.append(str(e))
    if as_json:
        print_json({"files": [r.as_dict() for r in reports], "unreadable": unreadable})
    else:
        for r in reports:
            mark = "[red]FAIL[/red]" if r.errors else "[green]ok[/green]"
            out.print(
                f"{mark} {escape(f'{r.file} ({r.layout})')}: "
                f"{plural(len(r.errors), 'error')}, {plural(len(r.warnings), 'warning')}",
                markup=True,
                soft_wrap=True,
            )
            if not quiet:
                for f in r.findings:
                    color = "red" if f.level == "error" else "yellow"
                    where = escape(f"{f.where}: {f.message}")
                    out.print(f"  [{color}]{f.level}[/{color}] {where}", markup=True, soft_wrap=True)
    for line in unreadable:
        err.print(f"[red]error:[/red] {escape(line)}", markup=True, soft_wrap=True)
    if unreadable:
        raise typer.Exit(2)
    if any(r.errors for r in reports):
        raise typer.Exit(1)


@app.command()
@handles_errors
def download(
    chats: Annotated[
        list[str] | None, typer.Argument(help="Chats to fetch, e.g. Chat_1 or Chat_1_Emi_Elise.", show_default="all")
    ] = None,
    to: Annotated[Path, out_option("--to", help="Destination directory.")] = Path("data/realtalk"),
    raw: Annotated[bool, typer.Option("--raw", help="Also fetch the raw xlsx sheets (under raw/).")] = False,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Where the files live.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace local files whose sha256 differs.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds allowed for each whole file.")] = 600.0,
) -> None:
    """Fetch the published REALTALK files over HTTPS, verified against the sha256 sums in this package.

    Resumable (partial files continue where they stopped) and idempotent (verified files are skipped).

    Example: `realtalk download Chat_1 Chat_2 --raw --to data/realtalk`
    """
    from realtalk_cli.data.download import DEFAULT_BASE_URL, select_files
    from realtalk_cli.data.download import download as fetch

    files = select_files(chats or [], raw)
    colors = {"downloaded": "green", "resumed": "green", "present": "dim", "failed": "red"}

    def show(r) -> None:
        c = colors[r.status]
        detail = escape(f"{r.path}" + (f": {r.detail}" if r.detail else ""))
        out.print(f"[{c}]{r.status:>10}[/{c}] {detail}", markup=True, soft_wrap=True)

    results = fetch(to, files, base_url or DEFAULT_BASE_URL, force, on_file=show, deadline_s=timeout)
    failed = [r for r in results if r.status == "failed"]
    out.print(f"{len(results) - len(failed)} of {len(results)} files in {to}")
    if failed:
        raise typer.Exit(2)
