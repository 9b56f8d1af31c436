"""The `realtalk` command: parses options, calls one function per command, prints the result."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import RealtalkError

app = typer.Typer(
    help="Long-term conversation benchmarks on REALTALK and LoCoMo: convert, validate, analyze, simulate, probe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never print locals: they can hold API keys
    rich_markup_mode="markdown",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
_debug = {"on": bool(os.environ.get("REALTALK_DEBUG"))}


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(fn: Callable) -> Callable:
    """Turn a RealtalkError into one line on stderr and exit code 2 (a traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RealtalkError as e:
            if _debug["on"]:
                raise
            raise fail(str(e)) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def print_json(obj: object) -> None:
    out.out(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode(), highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"realtalk {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    _debug["on"] = debug or bool(os.environ.get("REALTALK_DEBUG"))


# --- convert -------------------------------------------------------------------------------------


@app.command()
@handles_errors
def convert(
    source: Annotated[Path, typer.Argument(help="A raw chat export (.xlsx) or a directory of them.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output .json (or directory for a directory).")
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert a raw REALTALK export (xlsx) into the REALTALK JSON.

    Example: `realtalk convert data/sample/raw/Chat_S_Ana_Ben.xlsx -o chat.json`
    """
    from .convert import convert_many

    reports, failures = convert_many(source, output, force, images_dir, captions_from, caption_model)
    if as_json:
        print_json({"files": [asdict(r) for r in reports], "failed": failures})
    else:
        _print_convert_reports(reports, captions_from is not None or caption_model is not None)
    for failure in failures:
        err.print(f"[red]error:[/red] {failure}", soft_wrap=True)
    if failures:
        raise typer.Exit(2)


def _print_convert_reports(reports: list, with_captions: bool) -> None:
    if not reports:
        return
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
            out.print(f"[yellow]warning:[/yellow] {Path(r.source).name}: {w}", soft_wrap=True)
    if not with_captions:
        out.print(
            "note: no captions source given, so messages carry no 'blip_caption' "
            "(use --captions-from PUBLISHED.json, or --caption-model MODEL to ask a vision model)"
        )


# --- validate ------------------------------------------------------------------------------------


@app.command()
@handles_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="REALTALK or LoCoMo JSON files, or directories of them.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary line per file.")] = False,
) -> None:
    """Check REALTALK and LoCoMo files: schema, session numbering, dates, speakers, dia_ids, evidence, categories.

    Exit code 0 when clean (warnings allowed), 1 when a file has errors, 2 when a file cannot be read.

    Example: `realtalk validate ../shared/realtalk ../shared/locomo/Chat_1_Caroline_Melanie.json`
    """
    from .formats import chat_paths
    from .validate import validate_file

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
                f"{mark} {r.file} ({r.layout}): {len(r.errors)} errors, {len(r.warnings)} warnings", soft_wrap=True
            )
            if not quiet:
                for f in r.findings:
                    color = "red" if f.level == "error" else "yellow"
                    out.print(f"  [{color}]{f.level}[/{color}] {f.where}: {f.message}", soft_wrap=True)
    for line in unreadable:
        err.print(f"[red]error:[/red] {line}", soft_wrap=True)
    if unreadable:
        raise typer.Exit(2)
    if any(r.errors for r in reports):
        raise typer.Exit(1)


# --- download ------------------------------------------------------------------------------------


@app.command()
@handles_errors
def download(
    chats: Annotated[
        list[str] | None, typer.Argument(help="Chats to fetch, e.g. Chat_1 or Chat_1_Emi_Elise (default: all).")
    ] = None,
    to: Annotated[Path, typer.Option("--to", help="Destination directory.")] = Path("data/realtalk"),
    raw: Annotated[bool, typer.Option("--raw", help="Also fetch the raw xlsx sheets (under raw/).")] = False,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Where the files live.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace local files whose sha256 differs.")] = False,
) -> None:
    """Fetch the published REALTALK files over HTTPS, verified against the sha256 sums in this package.

    Resumable (partial files continue where they stopped) and idempotent (verified files are skipped).

    Example: `realtalk download Chat_1 Chat_2 --raw --to data/realtalk`
    """
    from .download import DEFAULT_BASE_URL, select_files
    from .download import download as fetch

    files = select_files(chats or [], raw)
    colors = {"downloaded": "green", "resumed": "green", "present": "dim", "failed": "red"}

    def show(r) -> None:
        c = colors[r.status]
        out.print(f"[{c}]{r.status:>10}[/{c}] {r.path}" + (f": {r.detail}" if r.detail else ""), soft_wrap=True)

    results = fetch(to, files, base_url or DEFAULT_BASE_URL, force, on_file=show)
    failed = [r for r in results if r.status == "failed"]
    out.print(f"{len(results) - len(failed)} of {len(results)} files in {to}")
    if failed:
        raise typer.Exit(2)


# --- probe ---------------------------------------------------------------------------------------


@app.command()
@handles_errors
def probe(
    chats: Annotated[
        list[Path] | None, typer.Argument(help="Chat files or directories; or `rescore RUN_DIR`.", show_default=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="provider:model, an OpenAI model, or offline:bm25.")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory for predictions and reports.")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Model that grades the answers.")] = None,
    context: Annotated[str | None, typer.Option("--context", help="full (default), retrieval or events.")] = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Messages retrieved with --context retrieval [10].")
    ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Requests in flight at once [8].")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N questions.")] = None,
    skip_adversarial: Annotated[bool | None, typer.Option("--skip-adversarial", help="Skip LoCoMo category 5.")] = None,
    max_context_tokens: Annotated[
        int | None, typer.Option("--max-context-tokens", help="Context budget [120000].")
    ] = None,
    compat: Annotated[str | None, typer.Option("--compat", help="official: the paper's prompt layout.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A run written down as TOML; flags override it.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count requests, tokens and cost; call nothing.")] = False,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Stop cleanly once this many USD are spent.")
    ] = None,
    fail_under: Annotated[
        float | None, typer.Option("--fail-under", help="Exit 1 when the overall F1 is below.")
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Override the provider's endpoint.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help="Environment variable with the key.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Memory probing: a model answers every question about the whole chat; token F1 and LLM-judge scores.

    Re-running the same command resumes: answered questions are skipped, failed ones are asked again.
    `realtalk probe rescore RUN_DIR --judge-model M` scores saved predictions again without asking the model.

    Example: `realtalk probe data/sample/Chat_S_Ana_Ben.json --model offline:bm25 --out runs/bm25`
    """
    from .probe import probe_settings, rescore, run_probe

    if chats and str(chats[0]) == "rescore" and not chats[0].exists():
        if len(chats) != 2:
            raise RealtalkError("usage: realtalk probe rescore RUN_DIR [--judge-model MODEL]")
        with _progress("rescore", as_json) as show:
            report = rescore(chats[1], judge_model, concurrency or 8, base_url, api_key_env, not no_cache, show)
        _finish_probe(report, chats[1], as_json, fail_under)
        return

    given = {
        "chats": chats,
        "model": model,
        "out": out_dir,
        "judge_model": judge_model,
        "context": context,
        "top_k": top_k,
        "concurrency": concurrency,
        "limit": limit,
        "skip_adversarial": skip_adversarial,
        "max_context_tokens": max_context_tokens,
        "max_cost": max_cost,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "compat": compat,
        "fail_under": fail_under,
        "use_cache": False if no_cache else None,
    }
    files, opts, fail_under = probe_settings(config, given)

    if dry_run:
        _print_plan(run_probe(files, opts, dry_run=True), "question", as_json)
        return
    with _progress("probe", as_json) as show:
        report = run_probe(files, opts, progress=show)
    _finish_probe(report, opts.out, as_json, fail_under)


def _print_plan(plan: dict, unit: str, as_json: bool) -> None:
    """What a --dry-run would send: requests, prompt tokens, estimated cost."""
    if as_json:
        print_json(plan)
        return
    cost = f"${plan['estimated_cost_usd']:.4f}" if plan["priced"] else "unknown (model not in prices.toml)"
    estimated = "" if plan.get("tokens_exact", True) else ", estimated: no tokenizer for this model"
    out.print(
        f"dry run: {plan['requests']} requests ({plan['already_done']} already done), {plan['prompt_tokens']} prompt "
        f"tokens ({plan[f'prompt_tokens_per_{unit}']} per {unit}{estimated}), estimated cost {cost}",
        soft_wrap=True,
    )


@contextlib.contextmanager
def _progress(label: str, quiet: bool):
    """A progress bar on stderr showing retries, cache hits and spend as rows finish."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=err, disable=quiet or not err.is_terminal, transient=True) as bar:
        task = bar.add_task(label, total=None, info="")

        def show(row, totals) -> None:
            info = f"retries {totals.retries} · cached {totals.cached} · ${totals.cost_usd:.4f}" if totals else ""
            bar.update(task, advance=1, info=info)

        yield show


def _finish_probe(report: dict, run_dir: Path, as_json: bool, fail_under: float | None) -> None:
    if as_json:
        print_json(report)
    else:
        _print_probe_report(report, run_dir)
    f1 = report["overall"]["overall"]["f1"]
    if fail_under is not None and (f1 is None or f1 < fail_under):
        err.print(f"overall F1 {f1} is under --fail-under {fail_under}")
        raise typer.Exit(1)


def _print_probe_report(report: dict, run_dir: Path) -> None:
    table = Table(title=f"probe: {report['manifest']['model']}")
    for column in ("category", "count", "F1", "judge"):
        table.add_column(column, justify="left" if column == "category" else "right")

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    for cat, s in report["overall"]["categories"].items():
        table.add_row(cat, str(s["count"]), fmt(s["f1"]), fmt(s["judge"]))
    o = report["overall"]["overall"]
    table.add_row("overall", str(o["count"]), fmt(o["f1"]), fmt(o["judge"]), style="bold")
    out.print(table)
    run = report.get("run") or {}
    if not run:
        return
    out.print(
        f"{run['requests']} requests ({run['cached']} cached, {run['retries']} retries, {run['errors']} errors), "
        f"{run['wall_time_s']} s, ${report['overall']['cost_usd']:.4f}; written to {run_dir}",
        soft_wrap=True,
    )
    if run["errors"] or report["failed_questions"]:
        out.print(f"{report['failed_questions']} questions failed; run the same command again to retry them")
    if run["stopped_for_max_cost"]:
        out.print("stopped at --max-cost; run again with a higher limit to continue")
    if run["dropped_sessions"]:
        dropped = run["dropped_sessions"]
        out.print(f"note: the chat did not fit --max-context-tokens; the {dropped} oldest sessions were left out")


# --- simulate ------------------------------------------------------------------------------------


@app.command()
@handles_errors
def simulate(
    chats: Annotated[list[Path], typer.Argument(help="Chat files or directories; or `export-sft CHAT.json`.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="provider:model or an OpenAI model.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory for predictions and reports.")] = None,
    speaker: Annotated[str | None, typer.Option("--speaker", help="Only this participant (default: both).")] = None,
    sessions: Annotated[int, typer.Option("--sessions", help="Sessions of history in the prompt.")] = 3,
    targets: Annotated[str, typer.Option("--targets", help="messages, or turns (merged messages).")] = "messages",
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N targets.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")] = 8,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count requests, tokens and cost; call nothing.")] = False,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Stop cleanly once this many USD are spent.")
    ] = None,
    fail_under: Annotated[float | None, typer.Option("--fail-under", help="Exit 1 when mean ROUGE-L is below.")] = None,
    bertscore_model: Annotated[
        str | None, typer.Option("--bertscore-model", help="Local model directory or name [roberta-large].")
    ] = None,
    bertscore_layers: Annotated[int | None, typer.Option("--bertscore-layers", help="Layer for the model.")] = None,
    no_bertscore: Annotated[bool, typer.Option("--no-bertscore", help="Skip BERTScore.")] = False,
    ei_backend: Annotated[str, typer.Option("--ei-backend", help="EI labels: lexicon, llm or hf.")] = "lexicon",
    ei_model: Annotated[str | None, typer.Option("--ei-model", help="Model for --ei-backend llm.")] = None,
    hf_model: Annotated[
        list[str] | None, typer.Option("--hf-model", help="hf backend: KIND=MODEL (sentiment, emotion, intimacy).")
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Override the provider's endpoint.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help="Environment variable with the key.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="export-sft: the training file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Persona simulation: a model continues each chat as one participant; scored against the real message.

    Scores per target, per speaker, then mean ± std over speakers: ROUGE-L, BERTScore F1, agreement on
    EI labels (reflective, grounding, sentiment, emotion) and |intimacy|, |empathy| differences.
    `realtalk simulate export-sft CHAT.json --speaker NAME -o train.jsonl` writes a person's other chat
    as chat fine-tuning data.

    Example: `realtalk simulate data/sample/Chat_S_Ana_Ben.json --model gpt-4o-mini --out runs/sim --dry-run`
    """
    from .ei import parse_hf_models
    from .simulate import SimulateOptions, export_sft, run_simulate

    if chats and str(chats[0]) == "export-sft" and not chats[0].exists():
        if len(chats) != 2 or not speaker or output is None:
            raise RealtalkError("usage: realtalk simulate export-sft CHAT.json --speaker NAME -o train.jsonl")
        n = export_sft(chats[1], speaker, output, sessions, targets)
        out.print(f"wrote {n} training examples to {output}")
        return
    if not model or out_dir is None:
        raise RealtalkError("--model and --out are required")
    opts = SimulateOptions(
        model=model,
        out=out_dir,
        speaker=speaker,
        sessions=sessions,
        targets=targets,
        limit=limit,
        concurrency=concurrency,
        max_cost=max_cost,
        base_url=base_url,
        api_key_env=api_key_env,
        use_cache=not no_cache,
        bertscore=not no_bertscore,
        bertscore_model=bertscore_model,
        bertscore_layers=bertscore_layers,
        ei_backend=ei_backend,
        ei_model=ei_model,
        hf_models=parse_hf_models(hf_model),
    )
    if dry_run:
        _print_plan(run_simulate(chats, opts, dry_run=True), "target", as_json)
        return
    with _progress("simulate", as_json) as show:
        report = run_simulate(chats, opts, progress=show)
    if as_json:
        print_json(report)
    else:
        _print_simulate_report(report, out_dir)
    rouge = report["overall"]["rouge_l"]["mean"]
    if fail_under is not None and (rouge is None or rouge < fail_under):
        err.print(f"mean ROUGE-L {rouge} is under --fail-under {fail_under}")
        raise typer.Exit(1)


def _print_simulate_report(report: dict, run_dir: Path) -> None:
    from .simulate import SCORES

    table = Table(title=f"simulate: {report['manifest']['model']}")
    table.add_column("speaker")
    table.add_column("targets", justify="right")
    for s in SCORES:
        table.add_column(s.replace("_agreement", " agr.").replace("_", " "), justify="right")
    for person, p in report["speakers"].items():
        table.add_row(person, str(p["targets"]), *(_cell(p[s]) for s in SCORES))
    table.add_row("mean", "", *(_cell(report["overall"][s]["mean"]) for s in SCORES), style="bold")
    table.add_row("std", "", *(_cell(report["overall"][s]["std"]) for s in SCORES))
    out.print(table)
    run = report["run"]
    out.print(
        f"{run['requests']} requests ({run['cached']} cached, {run['retries']} retries, {run['errors']} errors), "
        f"{run['wall_time_s']} s, ${run['cost_usd']:.4f}; written to {run_dir}",
        soft_wrap=True,
    )
    if report["failed_targets"]:
        out.print(f"{report['failed_targets']} targets failed; run the same command again to retry them")


# --- analyze -------------------------------------------------------------------------------------

analyze_app = typer.Typer(
    help="Statistics, the paper's EI metrics, persona consistency, dataset comparison.", no_args_is_help=True
)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("stats")
@handles_errors
def analyze_stats(
    files: Annotated[list[Path], typer.Argument(help="Chat files or directories (REALTALK or LoCoMo).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Per chat and in total: sessions, messages, turns, words, tokens, pictures, events, QA, days, gaps.

    Example: `realtalk analyze stats ../shared/realtalk --csv > realtalk.csv`
    """
    import csv
    import io

    from .formats import chat_paths, load_chat
    from .stats import chat_stats, stats_rows

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
            table.add_row(c, *(_cell(r.get(c)) for r in rows))
        out.print(table)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@analyze_app.command("ei")
@handles_errors
def analyze_ei(
    files: Annotated[list[Path], typer.Argument(help="Chat files or directories.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for annotations.jsonl and metrics.json.")],
    backend: Annotated[str, typer.Option("--backend", help="lexicon (offline), llm or hf.")] = "lexicon",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for --backend llm.")] = None,
    per: Annotated[str, typer.Option("--per", help="llm: one call per message or per session.")] = "message",
    concurrency: Annotated[int, typer.Option("--concurrency", help="llm: requests in flight.")] = 8,
    hf_model: Annotated[
        list[str] | None, typer.Option("--hf-model", help="hf backend: KIND=MODEL (sentiment, emotion, intimacy).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json.")] = False,
) -> None:
    """The paper's emotional-intelligence metrics per speaker; resumable per-message annotations.

    Example: `realtalk analyze ei ../shared/realtalk --out runs/ei-realtalk`
    """
    from .ei import METRIC_NAMES, parse_hf_models, run_ei
    from .formats import chat_paths, load_chat

    chats = [load_chat(p) for p in chat_paths(files)]
    hf_models = parse_hf_models(hf_model)
    with _progress("ei", as_json) as show:
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
        table.add_row(m, *(_cell(metrics["chats"][c]["speakers"][sp][m]) for c, sp in speakers))
    out.print(table)
    if metrics["unavailable"]:
        out.print(f"unavailable with this backend: {', '.join(metrics['unavailable'])} (use --backend llm or hf)")
    out.print(f"written to {out_dir / 'metrics.json'}")


@analyze_app.command("consistency")
@handles_errors
def analyze_consistency(
    run: Annotated[Path, typer.Argument(help="An `analyze ei` output directory (or its metrics.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Persona consistency: for each person in two chats, |metric difference| between their chats.

    Example: `realtalk analyze consistency runs/ei-realtalk`
    """
    from .compare import consistency, load_metrics
    from .ei import METRIC_NAMES

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
        table.add_row(
            m, *(_cell(p["abs_diff"][m]) for p in result["people"].values()), _cell(result["mean_abs_diff"][m])
        )
    out.print(table)


@analyze_app.command("compare")
@handles_errors
def analyze_compare(
    a_dir: Annotated[Path, typer.Argument(help="First dataset directory (e.g. REALTALK).")],
    b_dir: Annotated[Path, typer.Argument(help="Second dataset directory (e.g. LoCoMo).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for tables, PNG plots and report.md.")],
    backend: Annotated[str, typer.Option("--backend", help="lexicon (offline), llm or hf.")] = "lexicon",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model for --backend llm.")] = None,
    per: Annotated[str, typer.Option("--per", help="llm: one call per message or per session.")] = "message",
    hf_model: Annotated[
        list[str] | None, typer.Option("--hf-model", help="hf backend: KIND=MODEL (sentiment, emotion, intimacy).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Two datasets side by side: statistics, EI metrics, plots, and a report.md that embeds them.

    Example: `realtalk analyze compare ../shared/realtalk ../shared/locomo --out runs/compare`
    """
    from .compare import compare
    from .ei import parse_hf_models

    hf_models = parse_hf_models(hf_model)
    with _progress("compare", as_json) as show:
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


def main() -> None:
    app()
