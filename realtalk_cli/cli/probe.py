"""`probe`: memory probing (`probe [run]`), `probe rescore` and `probe show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from realtalk_cli.cli.common import (
    ApiKeyEnv,
    AsJson,
    BaseUrl,
    Batch,
    DefaultGroup,
    DryRun,
    ErrataFile,
    Force,
    JudgeModel,
    JudgeProtocolName,
    Limit,
    MaxCost,
    MemoryOptions,
    MemorySpec,
    Model,
    NoCache,
    OutDir,
    PriceIn,
    PriceOut,
    Timeout,
    concurrency_option,
    err,
    exit_if_pending,
    fail_under_option,
    finish_run,
    handles_errors,
    out,
    out_option,
    print_json,
    print_plan,
    progress,
)
from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError

app = typer.Typer(
    cls=DefaultGroup,
    no_args_is_help=True,
    help="Memory probing: `realtalk probe CHAT... --model M --out DIR` runs it (the `run` command); "
    "`probe rescore` scores a run again; `probe show` prints its questions with their evidence.\n\n"
    "Example: `realtalk probe data/sample/Chat_S_Ana_Ben.json --model offline:bm25 --out runs/bm25`",
)
Html = Annotated[
    bool, typer.Option("--html", help="Also write report.html, the question explorer, into the run directory.")
]


@app.command("run")
@handles_errors
def probe(
    chats: Annotated[list[Path] | None, typer.Argument(help="Chat files or directories.", show_default=False)] = None,
    model: Model = None,
    out_dir: OutDir = None,
    judge_model: JudgeModel = None,
    judge_protocol: JudgeProtocolName = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="full, events, or a retriever: bm25, dense, hybrid, retrieval (hybrid when the "
            "embedder is installed, else bm25).",
            show_default="full",
        ),
    ] = None,
    context_tokens: Annotated[
        int | None,
        typer.Option(
            "--context-tokens",
            min=1,
            help="Retriever/memory budget in prompt tokens per question.",
            show_default="2700",
        ),
    ] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Retrievers: at most this many windows.")] = None,
    memory: MemorySpec = None,
    memory_option: MemoryOptions = None,
    memory_timeout: Annotated[
        float | None,
        typer.Option(
            "--memory-timeout",
            min=0.1,
            help="Seconds allowed for one call into the memory or retriever: ingesting one chat, or recalling "
            "for one question (time waiting on realtalk's LLM client, e.g. llm-summaries', not counted). A recall "
            "past it is an error for that question (exit 3; the same command asks it again); an ingest past it "
            "stops the run (exit 3). Example: --memory-timeout 30",
            show_default="600",
        ),
    ] = None,
    embedder: Annotated[
        str | None,
        typer.Option(
            "--embedder", help="Dense retrieval model: local directory or cached name.", show_default="minilm"
        ),
    ] = None,
    concurrency: Annotated[
        int | None, concurrency_option(", answer and judge requests counted together", default="8")
    ] = None,
    limit: Limit = None,
    category: Annotated[
        str | None,
        typer.Option(
            "--category",
            help="Ask only this category: its number or name, by LoCoMo's numbering (1 multi-hop, 2 temporal, "
            "3 open-domain (REALTALK: commonsense), 4 single-hop, 5 adversarial). Example: --category temporal",
        ),
    ] = None,
    skip_adversarial: Annotated[bool | None, typer.Option("--skip-adversarial", help="Skip LoCoMo category 5.")] = None,
    max_context_tokens: Annotated[
        int | None, typer.Option("--max-context-tokens", min=1, help="Context budget.", show_default="120000")
    ] = None,
    compat: Annotated[
        str | None,
        typer.Option(
            "--compat",
            help="Another harness's protocol, byte for byte (prompts, context layout, sampling parameters, its judge "
            "and its own F1 beside ours). paper: the REALTALK paper's (evaluate_memory.py; no sampling parameters; "
            "its judge graded by the answering model unless --judge-model); paper-once: the same with each session "
            "once; official: alias of paper. locomo: LoCoMo's single-question prompt (temperature 0, max_tokens "
            "32; truncated only for the models LoCoMo names; category 5 asked as its two-choice question with "
            "adversarial_answer; no judge unless --judge-model; f1_locomo rounds each item to 3 places). "
            "locomo-batched: LoCoMo's batched form behind its published numbers (20 questions per request, a JSON "
            "reply keyed by question number). mem0: "
            "mem0's full-context baseline (its system message and prompt, temperature 0; category 5 not asked, "
            "as mem0 never scores it; mem0's J judge with --judge-model; f1_mem0 is its token-set F1); with "
            "--memory SPEC, mem0's memory prompt (search.py: one system message, temperature 0, reply unstripped): "
            "the memory's recall dealt in order to the two speakers, at most 30 each (mem0's top_k), a message id "
            "to its speaker, a Passage to its speaker field, else to its ids' one speaker, else to both; the whole "
            "prompt within --context-tokens (mem0 sets no budget); chats with a third speaker refused. "
            "longmemeval: LongMemEval's long-context setting (run_generation.py: whole history as JSON, chain of "
            "thought, temperature 0, max_tokens 800) and its yes/no judge with --judge-model (its published "
            "numbers: gpt-4o-2024-08-06); LongMemEval files only (others: exit 2), no --context/--memory, no "
            "--batch; the history is cut to 126,200 o200k tokens only for the gpt-4o names LongMemEval lists, other "
            "models get it whole (recorded in the manifest). "
            "Example: --compat locomo --model gpt-4o-mini",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A run written down as TOML; flags override it.")
    ] = None,
    dry_run: DryRun = False,
    max_cost: MaxCost = None,
    fail_under: Annotated[float | None, fail_under_option("the overall F1")] = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    no_cache: NoCache = False,
    html: Html = False,
    as_json: AsJson = False,
    timeout: Timeout = None,
    force: Force = False,
    price_in: PriceIn = None,
    price_out: PriceOut = None,
    batch: Batch = False,
    errata: ErrataFile = None,
) -> None:
    """Memory probing: a model answers every question about the whole chat; token F1 and LLM-judge scores.

    A run folder holds one run: re-running the same command resumes it (answered questions are skipped,
    failed ones asked again; a larger --limit asks the rest). Other settings into the same --out exit 2
    naming what differs: use a new --out, or --force to start it afresh. A --judge-model added or changed
    on a resume judges the answers that lack its score; `realtalk probe rescore RUN_DIR --judge-model M`
    judges every saved answer again without asking the answering model.
    `realtalk probe CHAT...` and `realtalk probe run CHAT...` are the same command.

    Exit codes: 0 complete, 1 under --fail-under, 2 bad input (nothing run), 3 incomplete (questions failed
    after retries, or stopped by --max-cost); report.json says `"complete": false` and why.

    With `--batch` the requests go to the provider as batch jobs (about half price, done within a day): the
    command submits and returns (exit 3) with the batch id saved in the run folder; running it again, or
    `realtalk batch status RUN`, collects the answers, submits the judge batch, and writes the reports.
    Example: `realtalk probe ../shared/realtalk --model gpt-4o-mini --judge-model gpt-4o --out runs/b --batch`

    Example: `realtalk probe data/sample/Chat_S_Ana_Ben.json --model offline:bm25 --out runs/bm25`

    Example: `realtalk probe ../shared/locomo --model gpt-4o-mini --context hybrid --context-tokens 2700 --out runs/h`

    Example: `realtalk probe CHATS --model M --memory my_memory.py:MyMemory --memory-option k=5 --out runs/mine`

    LongMemEval files (longmemeval_s.json, _m, _oracle, _cleaned): each instance is its own haystack and question,
    read one at a time; the report adds LongMemEval's per-type, task-averaged, overall and abstention figures.
    Example: `realtalk probe longmemeval_s.json --compat longmemeval --model gpt-4o --judge-model gpt-4o-2024-08-06
    --out runs/lme --dry-run`
    """
    from realtalk_cli.tasks.memory.loader import parse_options
    from realtalk_cli.tasks.probe.options import probe_settings
    from realtalk_cli.tasks.probe.run import run_probe

    given = {
        "chats": chats,
        "model": model,
        "out": out_dir,
        "judge_model": judge_model,
        "judge_protocol": judge_protocol,
        "context": context,
        "top_k": top_k,
        "context_tokens": context_tokens,
        "memory": memory,
        "memory_options": parse_options(memory_option) if memory_option else None,
        "memory_timeout": memory_timeout,
        "embedder": embedder,
        "concurrency": concurrency,
        "limit": limit,
        "category": category,
        "skip_adversarial": skip_adversarial,
        "max_context_tokens": max_context_tokens,
        "max_cost": max_cost,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "compat": compat,
        "fail_under": fail_under,
        "use_cache": False if no_cache else None,
        "timeout": timeout,
        "force": force or None,
        "price_in": price_in,
        "price_out": price_out,
        "errata": errata,
    }
    files, opts, fail_under = probe_settings(config, given)
    if batch and opts.errata is not None:
        raise RealtalkError(
            "--errata applies to live runs; once the batch run is done: `realtalk probe rescore RUN --errata FILE`"
        )

    if dry_run:
        print_plan(run_probe(files, opts, dry_run=True, batch=batch), "question", as_json)
        return
    if batch:
        finish_batch_run(files, opts, as_json, fail_under, html)
        return
    with progress("probe", as_json) as show:
        report = run_probe(files, opts, progress=show)
    _write_html(opts.out, html, as_json, files)
    _finish_probe(report, opts.out, as_json, fail_under)


@app.command("rescore")
@handles_errors
def probe_rescore(
    run_dir: Annotated[Path, typer.Argument(help="A probe run directory.", show_default=False)],
    judge_model: JudgeModel = None,
    judge_protocol: JudgeProtocolName = None,
    concurrency: Annotated[int, concurrency_option()] = 8,
    fail_under: Annotated[float | None, fail_under_option("the overall F1")] = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    no_cache: NoCache = False,
    html: Html = False,
    as_json: AsJson = False,
    timeout: Timeout = None,
    errata: ErrataFile = None,
) -> None:
    """Score a run's saved predictions again (F1, and the judge when --judge-model is given) without asking
    the answering model; rewrites predictions.jsonl, report.json and report.md in the run directory.

    Example: `realtalk probe rescore runs/bm25 --judge-model gpt-4o-mini`
    """
    from realtalk_cli.tasks.probe.rescore import rescore

    with progress("rescore", as_json) as show:
        report = rescore(
            run_dir,
            judge_model,
            concurrency,
            base_url,
            api_key_env,
            not no_cache,
            show,
            timeout or 120.0,
            errata,
            judge_protocol,
        )
    _write_html(run_dir, html, as_json)
    _finish_probe(report, run_dir, as_json, fail_under)


@app.command("judge-audit")
@handles_errors
def probe_judge_audit(
    data: Annotated[list[Path], typer.Argument(help="Chat files or directories.", show_default=False)],
    judge_model: Annotated[str, typer.Option("--judge-model", help="The judge model to audit.", show_default=False)],
    out_dir: Annotated[Path, out_option(help="Run directory for the verdicts and the report.")],
    judge_protocol: Annotated[
        str,
        typer.Option(
            "--judge-protocol", help="The judge's prompt and verdict rule: realtalk, paper or mem0 (mem0's J)."
        ),
    ] = "realtalk",
    concurrency: Annotated[int, concurrency_option()] = 8,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions (5 answers each).")
    ] = None,
    dry_run: DryRun = False,
    max_cost: MaxCost = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    no_cache: NoCache = False,
    as_json: AsJson = False,
    timeout: Timeout = None,
    force: Force = False,
    price_in: PriceIn = None,
    price_out: PriceOut = None,
) -> None:
    """How lenient is a judge? It grades answers of known correctness built from each question's gold: the gold,
    a paraphrase (case, punctuation, a date written another way), a specific wrong answer (another question's
    gold of the same type), a vague on-topic answer (the question's words without the fact) and an abstention
    ("Not mentioned in the conversation"). A score of at least 0.5 counts as accepted. Writes report.json and
    report.md: accept rate per kind, the false-accept rate (the three wrong kinds pooled) and the true-accept
    rate (gold and paraphrase), with 95% bootstrap intervals. Cached and resumable like every run; give the
    audit folder to `realtalk report` beside runs graded by the same judge to show its false-accept rate there.

    Exit codes: 0 complete, 2 bad input (nothing run), 3 incomplete (verdicts missing, or stopped by --max-cost).

    Example: `realtalk probe judge-audit ../shared/locomo --judge-model gpt-4o-mini --judge-protocol mem0 --out
    runs/audit-mem0`
    """
    from realtalk_cli.tasks.probe.audit import AuditOptions, run_audit

    opts = AuditOptions(
        judge_model=judge_model,
        out=out_dir,
        judge_protocol=judge_protocol,
        concurrency=concurrency,
        limit=limit,
        max_cost=max_cost,
        base_url=base_url,
        api_key_env=api_key_env,
        use_cache=not no_cache,
        timeout=timeout or 120.0,
        force=force,
        price_in=price_in,
        price_out=price_out,
    )
    if dry_run:
        print_plan(run_audit(data, opts, dry_run=True), "answer", as_json)
        return
    with progress("judge-audit", as_json) as show:
        report = run_audit(data, opts, progress=show)
    if as_json:
        print_json(report)
    else:
        _print_audit(report, out_dir)
    finish_run(report, None, None, "")


def _print_audit(report: dict, run_dir: Path) -> None:
    from realtalk_cli.tasks.probe.audit import rate_text

    out.print(f"judge {report['protocol']}/{report['model']}: {report['questions']} questions", soft_wrap=True)
    for kind, s in report["kinds"].items():
        out.print(f"  {kind}: {s['accepted']} of {s['n']} accepted, {rate_text(s)}")
    out.print(f"false-accept rate (wrong kinds pooled): {rate_text(report['false_accept'])}")
    out.print(f"true-accept rate (gold, paraphrase): {rate_text(report['true_accept'])}")
    run = report["run"]
    out.print(f"{run['requests']} requests ({run['cached']} cached), ${run['cost_usd']:.4f}; written to {run_dir}")


@app.command("show")
@handles_errors
def probe_show(
    run_dir: Annotated[Path, typer.Argument(help="A probe run directory.", show_default=False)],
    wrong: Annotated[bool, typer.Option("--wrong", help="Only questions with F1 under --threshold.")] = False,
    category: Annotated[
        str | None, typer.Option("--category", help="Only this category: number or name (temporal).")
    ] = None,
    chat: Annotated[str | None, typer.Option("--chat", help="Only this chat (its file name without .json).")] = None,
    question: Annotated[int | None, typer.Option("--question", help="Only question N (0-based, per chat).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="F1 below this counts as wrong.")] = 0.5,
    chat_files: Annotated[
        list[Path] | None, typer.Option("--chats", help="Chat files, when the paths in the run's manifest moved.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Print a run's questions: question, gold, prediction, scores, and the evidence messages with dates.

    Example: `realtalk probe show runs/bm25 --wrong --category temporal`
    """
    from realtalk_cli.report.show import show_questions

    items, warnings = show_questions(run_dir, wrong, category, chat, question, threshold, chat_files)
    if as_json:
        print_json(items)
        return
    for w in warnings:
        err.print(f"note: {w}", soft_wrap=False)
    for item in items:
        _print_question(item)
    out.print(plural(len(items), "question"))


def _print_question(item: dict) -> None:
    from rich.markup import escape

    def score(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    out.rule(f"{item['chat']} · question {item['qa_index']} · {item['category']}", align="left")
    out.print(f"[bold]Q:[/bold] {escape(item['question'])}", markup=True)
    out.print(f"[bold]gold:[/bold] {escape(str(item['gold']))}", markup=True)
    out.print(f"[bold]prediction:[/bold] {escape(str(item['prediction']))}", markup=True)
    out.print(
        f"F1 {score(item['f1'])} · date-normalised F1 {score(item['f1_date_normalised'])} · "
        f"judge {score(item['judge_score'])}"
    )
    for e in item["evidence"]:
        hit = "" if "retrieved" not in e else escape(" [retrieved]" if e["retrieved"] else " [not retrieved]")
        if e["found"]:
            out.print(f"  {e['id']}{hit} {escape(e['speaker'])}, {escape(e['date'])}: {escape(e['text'])}", markup=True)
        else:
            why = "dangling id: no such message" if item["chat_file_found"] else "chat file not found"
            out.print(f"  {escape(e['id'])}{hit} ({why})", markup=True)


def _print_errata(section: dict) -> None:
    c, overall = section["counts"], section["scores"]["overall"]
    ceiling = (section["ceiling"].get("overall") or {}).get("ceiling")
    judged = (
        ""
        if section.get("judge") is None
        else f", judge {_score(overall.get('judge'))} -> {_score(overall.get('judge_corrected'))}"
    )
    out.print(
        f"errata {section['file']}: {c['applied']} golds corrected, {c['evidence-only']} evidence-only, "
        f"{c['not-found']} entries naming no question; ceiling {_score(ceiling)}; overall F1 {_score(overall['f1'])} "
        f"against the published gold, {_score(overall['f1_corrected'])} against the corrected{judged} (report.md lists "
        "the changed items)",
        soft_wrap=True,
    )


def _score(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def finish_batch_run(files: list[Path], opts, as_json: bool, fail_under: float | None, html: bool) -> None:
    """One step of a batch run: the report when complete, else what is pending and exit 3."""
    from realtalk_cli.tasks.probe.batch import run_probe_batch

    report, pending = run_probe_batch(files, opts)
    if report is None:
        exit_if_pending({"complete": False, "pending": pending}, as_json)
    _write_html(opts.out, html, as_json, files)
    _finish_probe(report, opts.out, as_json, fail_under)


def _write_html(run_dir: Path, wanted: bool, quiet: bool, chats: list[Path] | None = None) -> None:
    if not wanted:
        return
    from realtalk_cli.report.build import write_run_html

    path = write_run_html(run_dir, chat_files=chats)
    if not quiet:
        err.print(f"question explorer: {path}")


def _finish_probe(report: dict, run_dir: Path, as_json: bool, fail_under: float | None) -> None:
    if as_json:
        print_json(report)
    else:
        _print_probe_report(report, run_dir)
    finish_run(report, report["overall"]["overall"]["f1"], fail_under, "overall F1")


def _print_probe_report(report: dict, run_dir: Path) -> None:
    from realtalk_cli.tasks.probe.report import (
        category_label,
        judge_cell,
        memory_lines,
        overall_labels,
        recall_lines,
    )

    recall = "recall" in report["overall"]["overall"]
    from rich.table import Table

    table = Table(title=f"probe: {report['manifest']['model']}")
    columns = ("category", "count", "F1", "F1 dates normalised", "judge")
    for column in (*columns, *(("evidence recall", "context tokens") if recall else ())):
        if column == "category":
            table.add_column(column, overflow="fold")  # long names fold, never cut
        else:
            table.add_column(column, justify="right", no_wrap=column in ("count", "F1", "judge"))

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    def cells(s: dict) -> list[str]:
        row = [str(s["count"]), fmt(s["f1"]), fmt(s.get("f1_date_normalised")), judge_cell(s)]
        if recall:
            row += [fmt(s.get("recall")), "-" if s.get("context_tokens") is None else f"{s['context_tokens']:.0f}"]
        return row

    summary = report["overall"]
    for cat, s in summary["categories"].items():
        table.add_row(category_label(cat, s), *cells(s))
    for key, label in overall_labels(summary).items():
        if key in summary:
            table.add_row(label, *cells(summary[key]), style="bold")
    out.print(table)
    if report.get("longmemeval"):
        from realtalk_cli.tasks.probe.report import longmemeval_lines

        for line in longmemeval_lines(report["longmemeval"]):
            out.print(line, soft_wrap=True, markup=False)
    if summary.get("evidence_dangling"):
        out.print(f"{summary['evidence_dangling']} evidence ids point to no message (left out of recall)")
    if report.get("memory"):
        budget = report["manifest"].get("parameters", {}).get("context_tokens")
        for line in memory_lines(report["memory"], budget) + recall_lines(summary.get("recall")):
            out.print(line.removeprefix("- "), soft_wrap=True, markup=False)
    if report.get("errata"):
        _print_errata(report["errata"])
    run = report.get("run") or {}
    if not run:
        return
    if isinstance(report.get("usage"), dict):
        from realtalk_cli.llm.spending import usage_lines

        for line in usage_lines(report["usage"]):
            out.print(line, soft_wrap=True)
        cached = report["overall"].get("cached_tokens", 0)
        out.print(f"{cached} prompt tokens from the provider's cache; written to {run_dir}", soft_wrap=True)
    else:  # `probe rescore` of a run written before the usage record
        out.print(
            f"{run['requests']} requests ({run['cached']} cached, {run['retries']} retries, {run['errors']} errors), "
            f"{report['overall'].get('cached_tokens', 0)} prompt tokens from the provider's cache, "
            f"{run['wall_time_s']} s, ${report['overall']['cost_usd']:.4f}; written to {run_dir}",
            soft_wrap=True,
        )
    if run.get("stopped_for_max_cost"):
        out.print("stopped at --max-cost; run again with a higher limit to continue")
