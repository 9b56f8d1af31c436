"""`analyze`: statistics, EI metrics, persona consistency, dataset comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from realtalk_cli.cli.common import (
    ApiKeyEnv,
    AsJson,
    BaseUrl,
    Batch,
    DryRun,
    Force,
    HfModels,
    MaxCost,
    Timeout,
    cell,
    concurrency_option,
    err,
    exit_if_pending,
    finish_run,
    handles_errors,
    out,
    out_option,
    print_json,
    print_plan,
    print_wide_table,
    progress,
)

app = typer.Typer(
    help="Statistics, the paper's EI metrics, persona consistency, dataset comparison.", no_args_is_help=True
)


@app.command("stats")
@handles_errors
def analyze_stats(
    files: Annotated[
        list[Path], typer.Argument(help="Chat files or directories (REALTALK, LoCoMo, or LongMemEval files).")
    ],
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Per chat and in total: sessions, messages, turns, words, tokens, pictures, events, QA, days, gaps.

    A LongMemEval file is one row, its instances' haystacks pooled (tokens: about what a full-context run sends).

    Example: `realtalk analyze stats ../shared/realtalk --csv > realtalk.csv`
    """
    import csv
    import io

    from realtalk_cli.analysis.stats import file_stats, stats_rows
    from realtalk_cli.data.formats import chat_paths

    rows = stats_rows([file_stats(p) for p in chat_paths(files)])
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
        from realtalk_cli.data.model import DATASET_NAMES

        def shown(r: dict, c: str) -> str:
            if c == "dataset":  # as the papers write them: REALTALK, LoCoMo
                return "+".join(DATASET_NAMES.get(d, d) for d in str(r.get(c)).split("+"))
            return cell(r.get(c))

        columns = [c for c in columns if c != "aggregation"]  # said once, in the title
        headers = [c.replace("_", " ") for c in columns[1:]]
        table_rows = [(r["chat"], [shown(r, c) for c in columns[1:]]) for r in rows]
        title = (
            "chat statistics (one row per chat; totals last: counts are sums over the chats, days spanned the "
            "mean per chat, per-session and gap figures over all their sessions)"
        )
        print_wide_table(title, "chat", headers, table_rows)


@app.command("ei")
@handles_errors
def analyze_ei(
    files: Annotated[list[Path], typer.Argument(help="Chat files or directories.")],
    out_dir: Annotated[Path, out_option(help="Directory for annotations.jsonl and metrics.json.")],
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="lexicon (offline), llm, hf, or paper: the paper's labellers (its cardiffnlp models and its "
            "reflective/grounding/empathy prompts through --model, default gpt-4o-mini).",
        ),
    ] = "lexicon",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model for --backend llm, or paper [gpt-4o-mini].")
    ] = None,
    per: Annotated[str, typer.Option("--per", help="llm: one call per message or per session.")] = "message",
    unit: Annotated[
        str, typer.Option("--unit", help="Label messages (as the paper) or turns (a speaker's consecutive messages).")
    ] = "messages",
    concurrency: Annotated[int, concurrency_option(" (llm backend)")] = 8,
    hf_model: HfModels = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    dry_run: DryRun = False,
    max_cost: MaxCost = None,
    as_json: AsJson = False,
    timeout: Timeout = None,
    force: Force = False,
    batch: Batch = False,
) -> None:
    """The paper's emotional-intelligence metrics per speaker; resumable per-message annotations.

    --out holds one labelling: the same command resumes it; another backend, model or chat set exits 2
    naming what differs (a new --out, or --force to start afresh). Exit 3 when messages are left without
    labels (failed or unreadable replies, or --max-cost); the next run asks for exactly those.

    With `--backend llm --batch` the labelling calls go as a batch job (half price, within a day): submit,
    exit 3, and run the same command again to collect the labels and compute the metrics.

    Example: `realtalk analyze ei ../shared/realtalk --out runs/ei-realtalk`;
    the paper's labellers: `realtalk analyze ei ../shared/realtalk --out runs/ei-paper --backend paper`
    """
    from realtalk_cli.analysis.ei import METRIC_NAMES, run_ei
    from realtalk_cli.analysis.ei_hf import parse_hf_models
    from realtalk_cli.data.formats import chat_files

    chat_list, notes = chat_files(files)  # each content once, named by its id in the run
    chats = [c.load() for c in chat_list]
    for note in notes:
        err.print(f"note: {note}", soft_wrap=True)
    hf_models = parse_hf_models(hf_model)
    llm = {"base_url": base_url, "api_key_env": api_key_env, "max_cost": max_cost, "force": force}
    llm["timeout"] = timeout or 120.0
    llm["batch"] = batch
    if dry_run:
        print_plan(run_ei(chats, out_dir, backend, model, per, **llm, dry_run=True, unit=unit), "request", as_json)
        return
    with progress("ei", as_json) as show:
        metrics = run_ei(
            chats, out_dir, backend, model, per, concurrency, progress=show, hf_models=hf_models, unit=unit, **llm
        )
    exit_if_pending(metrics, as_json)
    if as_json:
        print_json(metrics)
        finish_run(metrics, None, None, "")
        return
    columns = ("messages", *METRIC_NAMES)
    rows = [
        (f"{sp}\n{chat}", [cell(values[m]) for m in columns])
        for chat, entry in metrics["chats"].items()
        for sp, values in entry["speakers"].items()
    ]
    headers = [m.replace("_", " ") for m in columns]
    print_wide_table(f"EI metrics per speaker and chat ({metrics['backend']})", "speaker, chat", headers, rows)
    out.print(f"note: {metrics['warning']}")
    if metrics["unavailable"]:
        out.print(f"unavailable with this backend: {', '.join(metrics['unavailable'])} (use --backend llm or hf)")
    out.print(f"written to {out_dir / 'metrics.json'}")
    finish_run(metrics, None, None, "")


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
        out.print(result["matching"])
        return
    from rich.table import Table

    from realtalk_cli.data.model import DATASET_NAMES

    matched = Table(title="persons matched across chats", title_justify="left")
    matched.add_column("person", no_wrap=True)
    matched.add_column("dataset")
    matched.add_column("appears as (chat: name)", overflow="fold")
    for pid, p in result["people"].items():
        names = "; ".join(f"{c}: {n}" for c, n in p["names"].items())
        matched.add_row(pid.split(":")[-1], DATASET_NAMES.get(p["dataset"], p["dataset"]), names)
    out.print(matched)
    out.print(result["matching"])
    rows = [(pid.split(":")[-1], [cell(p["abs_diff"][m]) for m in METRIC_NAMES]) for pid, p in result["people"].items()]
    rows.append(("mean (same person)", [cell(result["mean_abs_diff"][m]) for m in METRIC_NAMES]))
    rows.append(("between persons", [cell(result["between_person_abs_diff"][m]) for m in METRIC_NAMES]))
    rows.append(("same / between", [cell(result["within_over_between"][m]) for m in METRIC_NAMES]))
    headers = [m.replace("_", " ") for m in METRIC_NAMES]
    title = f"persona consistency: mean |difference| between a person's chats ({result['backend']})"
    print_wide_table(title, "person", headers, rows)
    out.print(
        f"between persons: the same |difference| over {result['between_person_pairs']} pairs of chats of two "
        "different people of one dataset; same / between < 1 means more consistent with oneself than with others."
    )


@app.command("compare")
@handles_errors
def analyze_compare(
    a_dir: Annotated[Path, typer.Argument(help="First dataset directory (e.g. REALTALK).")],
    b_dir: Annotated[Path, typer.Argument(help="Second dataset directory (e.g. LoCoMo).")],
    out_dir: Annotated[Path, out_option(help="Directory for tables, PNG plots and report.md.")],
    backend: Annotated[str, typer.Option("--backend", help="lexicon (offline), llm or hf.")] = "lexicon",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for --backend llm.")] = None,
    per: Annotated[str, typer.Option("--per", help="llm: one call per message or per session.")] = "message",
    hf_model: HfModels = None,
    fmt: Annotated[str, typer.Option("--format", help="Plot files: png (200 dpi), svg or pdf.")] = "png",
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    dry_run: DryRun = False,
    max_cost: MaxCost = None,
    as_json: AsJson = False,
    force: Force = False,
    timeout: Timeout = None,
) -> None:
    """Two datasets side by side: statistics, EI metrics, plots, and a report.md that embeds them.

    An --out that holds a comparison is not overwritten without --force.

    Example: `realtalk analyze compare ../shared/realtalk ../shared/locomo --out runs/compare`
    """
    from realtalk_cli.analysis.compare import compare
    from realtalk_cli.analysis.ei_hf import parse_hf_models

    hf_models = parse_hf_models(hf_model)
    llm = {"base_url": base_url, "api_key_env": api_key_env, "max_cost": max_cost, "dry_run": dry_run, "force": force}
    llm["timeout"] = timeout or 120.0
    if dry_run:
        for label, plan in compare(a_dir, b_dir, out_dir, backend, model, per, llm=llm).items():
            if not as_json:
                out.print(f"{label}:")
            print_plan(plan, "request", as_json)
        return
    with progress("compare", as_json) as show:
        summary = compare(
            a_dir, b_dir, out_dir, backend, model, per, progress=show, hf_models=hf_models, fmt=fmt, llm=llm
        )
    if as_json:
        print_json(summary)
        finish_run(summary, None, None, "")
        return
    a, b = summary["datasets"]
    from rich.table import Table

    table = Table(title=f"{' vs '.join(summary['names'])} (EI: {summary['backend']})")
    for column in ("metric", *summary["names"]):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m, value in summary["metrics"][a].items():
        table.add_row(m, value, summary["metrics"][b][m])
    out.print(table)
    out.print(f"note: {summary['warning']}")
    out.print(f"report: {out_dir / 'report.md'} (plots: {', '.join(summary['plots'].values())})")
    finish_run(summary, None, None, "")
