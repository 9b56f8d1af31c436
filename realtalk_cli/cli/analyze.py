"""`analyze`: statistics, EI metrics, persona consistency, dataset comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from realtalk_cli.cli.common import (
    AsJson,
    HfModels,
    cell,
    concurrency_option,
    handles_errors,
    out,
    print_json,
    progress,
)

app = typer.Typer(
    help="Statistics, the paper's EI metrics, persona consistency, dataset comparison.", no_args_is_help=True
)


@app.command("stats")
@handles_errors
def analyze_stats(
    files: Annotated[list[Path], typer.Argument(help="Chat files or directories (REALTALK or LoCoMo).")],
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Per chat and in total: sessions, messages, turns, words, tokens, pictures, events, QA, days, gaps.

    Example: `realtalk analyze stats ../shared/realtalk --csv > realtalk.csv`
    """
    import csv
    import io

    from realtalk_cli.analysis.stats import chat_stats, stats_rows
    from realtalk_cli.data.formats import chat_paths, load_chat

    rows = stats_rows([chat_stats(load_chat(p)) for p in chat_paths(files)])
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if as_json:
        print_json(rows)
    elif as_csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        out.out(buffer.getvalue(), end="")
    else:
        table = Table(title="chat statistics")
        table.add_column("", no_wrap=True)
        for r in rows:
            table.add_column(r["chat"], justify="right")
        for c in columns[1:]:
            table.add_row(c, *(cell(r.get(c)) for r in rows))
        out.print(table)


@app.command("ei")
@handles_errors
def analyze_ei(
    files: Annotated[list[Path], typer.Argument(help="Chat files or directories.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for annotations.jsonl and metrics.json.")],
    backend: Annotated[str, typer.Option("--backend", help="lexicon (offline), llm or hf.")] = "lexicon",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for --backend llm.")] = None,
    per: Annotated[str, typer.Option("--per", help="llm: one call per message or per session.")] = "message",
    concurrency: Annotated[int, concurrency_option(" (llm backend)")] = 8,
    hf_model: HfModels = None,
    as_json: AsJson = False,
) -> None:
    """The paper's emotional-intelligence metrics per speaker; resumable per-message annotations.

    Example: `realtalk analyze ei ../shared/realtalk --out runs/ei-realtalk`
    """
    from realtalk_cli.analysis.ei import METRIC_NAMES, run_ei
    from realtalk_cli.analysis.ei_hf import parse_hf_models
    from realtalk_cli.data.formats import chat_paths, load_chat

    chats = [load_chat(p) for p in chat_paths(files)]
    hf_models = parse_hf_models(hf_model)
    with progress("ei", as_json) as show:
        metrics = run_ei(
            chats, out_dir, backend, model, per, concurrency, progress=lambda a: show(a, None), hf_models=hf_models
        )
    if as_json:
        print_json(metrics)
        return
    table = Table(title=f"EI metrics ({metrics['backend']})")
    table.add_column("metric")
    speakers = [(c, sp) for c, e in metrics["chats"].items() for sp in e["speakers"]]
    for chat, sp in speakers:
        table.add_column(f"{sp}\n{chat}", justify="right")
    for m in ("messages", *METRIC_NAMES):
        table.add_row(m, *(cell(metrics["chats"][c]["speakers"][sp][m]) for c, sp in speakers))
    out.print(table)
    if metrics["unavailable"]:
        out.print(f"unavailable with this backend: {', '.join(metrics['unavailable'])} (use --backend llm or hf)")
    out.print(f"written to {out_dir / 'metrics.json'}")


@app.command("consistency")
@handles_errors
def analyze_consistency(
    run: Annotated[Path, typer.Argument(help="An `analyze ei` output directory (or its metrics.json).")],
    as_json: AsJson = False,
) -> None:
    """Persona consistency: for each person in two chats, |metric difference| between their chats.

    Example: `realtalk analyze consistency runs/ei-realtalk`
    """
    from realtalk_cli.analysis.compare import consistency, load_metrics
    from realtalk_cli.analysis.ei import METRIC_NAMES

    result = consistency(load_metrics(run))
    if as_json:
        print_json(result)
        return
    if not result["people"]:
        out.print("no person appears in more than one chat")
        return
    table = Table(title=f"persona consistency: |difference| between a person's chats ({result['backend']})")
    table.add_column("metric")
    for person, p in result["people"].items():
        table.add_column(f"{person}\n{len(p['chats'])} chats", justify="right")
    table.add_column("mean", justify="right", style="bold")
    for m in METRIC_NAMES:
        table.add_row(m, *(cell(p["abs_diff"][m]) for p in result["people"].values()), cell(result["mean_abs_diff"][m]))
    out.print(table)


@app.command("compare")
@handles_errors
def analyze_compare(
    a_dir: Annotated[Path, typer.Argument(help="First dataset directory (e.g. REALTALK).")],
    b_dir: Annotated[Path, typer.Argument(help="Second dataset directory (e.g. LoCoMo).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for tables, PNG plots and report.md.")],
    backend: Annotated[str, typer.Option("--backend", help="lexicon (offline), llm or hf.")] = "lexicon",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for --backend llm.")] = None,
    per: Annotated[str, typer.Option("--per", help="llm: one call per message or per session.")] = "message",
    hf_model: HfModels = None,
    as_json: AsJson = False,
) -> None:
    """Two datasets side by side: statistics, EI metrics, plots, and a report.md that embeds them.

    Example: `realtalk analyze compare ../shared/realtalk ../shared/locomo --out runs/compare`
    """
    from realtalk_cli.analysis.compare import compare
    from realtalk_cli.analysis.ei_hf import parse_hf_models

    hf_models = parse_hf_models(hf_model)
    with progress("compare", as_json) as show:
        summary = compare(
            a_dir, b_dir, out_dir, backend, model, per, progress=lambda a: show(a, None), hf_models=hf_models
        )
    if as_json:
        print_json(summary)
        return
    a, b = summary["datasets"]
    table = Table(title=f"{a} vs {b} (EI: {summary['backend']})")
    for column in ("metric", a, b):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m, value in summary["metrics"][a].items():
        table.add_row(m, value, summary["metrics"][b][m])
    out.print(table)
    out.print(f"report: {out_dir / 'report.md'} (plots: {', '.join(summary['plots'].values())})")
