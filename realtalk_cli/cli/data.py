"""`convert`, `validate`, `download`: the dataset files."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from realtalk_cli.cli.common import (
    AsJson,
    Timeout,
    err,
    handles_errors,
    out,
    out_option,
    print_json,
)
from realtalk_cli.errors import RealtalkError

app = typer.Typer()


@app.command()
@handles_errors
def convert(
    source: Annotated[Path, typer.Argument(help="A raw chat export (.xlsx) or a directory of them.")],
    output: Annotated[
        Path | None,
        out_option("--output", help="Output .json (or directory for a directory)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
    images_dir: Annotated[
        Path | None, typer.Option("--images-dir", help="Write the embedded pictures here, one folder per chat.")
    ] = None,
    captions_from: Annotated[
        Path | None,
        typer.Option("--captions-from", help="Published chat JSON (or a directory of them) to take captions from."),
    ] = None,
    caption_model: Annotated[
        str | None, typer.Option("--caption-model", help="A vision model (provider:model) that writes the captions.")
    ] = None,
    as_json: AsJson = False,
    timeout: Timeout = None,
) -> None:
    """Convert a raw REALTALK export (xlsx) into the REALTALK JSON.

    Example: `realtalk convert data/sample/raw/Chat_S_Ana_Ben.xlsx -o chat.json`
    """
    from realtalk_cli.data.convert import convert_many

    captioner = None
    if caption_model is not None:
        from realtalk_cli.analysis.captions import ModelCaptioner

        captioner = ModelCaptioner(caption_model, timeout or 120.0)
    reports, failures = convert_many(source, output, force, images_dir, captions_from, captioner)
    if as_json:
        print_json({"files": [asdict(r) for r in reports], "failed": failures})
    else:
        _print_convert_reports(reports, captions_from is not None or caption_model is not None)
    for failure in failures:
        err.print(f"[red]error:[/red] {escape(str(failure))}", markup=True, soft_wrap=True)
    if failures:
        raise typer.Exit(2)


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
                f"{mark} {escape(f'{r.file} ({r.layout})')}: {len(r.errors)} errors, {len(r.warnings)} warnings",
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
