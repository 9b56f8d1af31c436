"""Memory probing: a model answers questions about a whole chat; scored by token F1 and an LLM judge.

Pipeline: QA items -> prompts -> completions (LLM client) -> predictions.jsonl (one line each, appended
as they finish) -> scores -> report.json / report.md. A re-run skips questions already answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, read_toml, run_folder, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, StopRun, dry_run_plan, run_jobs
from realtalk_cli.llm.providers import Endpoint, Prices, resolve_model
from realtalk_cli.llm.scheduler import ANSWER, JUDGE, Limiter
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks import paper_protocol
from realtalk_cli.tasks.memory import RETRIEVER_CONTEXTS, MemoryRunner, memory_choice
from realtalk_cli.tasks.probe_judge import (
    JUDGE_MAX_TOKENS,
    PAPER_ANSWER,
    judge_messages,
    judge_prompt_hash,
    judge_row,
    judge_rows,
    needs_judging,
    paper_judge_messages,
)
from realtalk_cli.tasks.probe_prompts import ContextMode, Item, Templates, build_items, pick_option
from realtalk_cli.tasks.probe_report import build_report, memory_lines, report_markdown
from realtalk_cli.tasks.runs import (
    check_settings,
    command_line,
    completeness,
    final_rows,
    load_prices,
    manifest,
    read_predictions,
    run_identity,
    text_hash,
    write_reports,
)
from realtalk_cli.tasks.scoring import answer_f1, date_normalised_f1

ANSWER_MAX_TOKENS = 32  # as the paper's script: answers are short phrases
MEMORY_MAX_TOKENS = 400  # a memory's own requests while ingesting (e.g. session summaries)


@dataclass
class ProbeOptions:
    model: str
    out: Path
    judge_model: str | None = None
    context: ContextMode = "full"
    context_tokens: int = 2700  # budget of a retrieved or memory context, in prompt tokens
    top_k: int | None = None  # retrievers: at most this many windows
    memory: str | None = None  # --memory SPEC: a built-in name, module:Name or path/to/file.py:Name
    memory_options: dict[str, str] = field(default_factory=dict)
    embedder: str | None = None  # dense retrieval model: a local directory or a cached name
    concurrency: int = 8
    limit: int | None = None
    skip_adversarial: bool = False
    max_context_tokens: int = 120_000
    max_cost: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    use_cache: bool = True
    compat: str | None = None  # "paper" / "paper-once": the paper's protocol (paper_protocol.py); None: ours
    timeout: float = 120.0
    force: bool = False
    price_in: float | None = None
    price_out: float | None = None


PROBE_FILES = ["predictions.jsonl", "report.json", "report.md", "memory"]  # memory: the --memory stores
PROBE_FIELDS = {"qa_index": int, "question": str, "prediction": str, "category": int, "dataset": str}


# --- predictions file --------------------------------------------------------------------------


def _key(chat: str, qa_index: int) -> tuple[str, int]:
    return (chat, qa_index)


# --- the run -----------------------------------------------------------------------------------


def load_run_config(path: Path) -> dict:
    """A probe run written down as TOML: `chats = [...]` plus any ProbeOptions field."""
    conf = read_toml(path)
    known = set(ProbeOptions.__dataclass_fields__) | {"chats", "fail_under"}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise RealtalkError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    if "fail_under" in conf and not isinstance(conf["fail_under"], (int, float)):
        raise RealtalkError(f"{path}: fail_under = {conf['fail_under']!r} is not a number")
    check_settings(conf, ProbeOptions, str(path))
    return conf


def probe_settings(config: Path | None, given: dict) -> tuple[list[Path], ProbeOptions, float | None]:
    """Options from the --config file, overridden by the flags given (None = not given)."""
    settings = load_run_config(config) if config else {}
    settings.update({k: v for k, v in given.items() if v is not None})
    check_settings(settings, ProbeOptions, "options")
    files = [Path(p) for p in settings.pop("chats", None) or []]
    fail_under = settings.pop("fail_under", None)
    if not files:
        raise RealtalkError("no chats given (as arguments or `chats = [...]` in --config)")
    for required in ("model", "out"):
        if not settings.get(required):
            raise RealtalkError(f"--{required} is required (or `{required} = ...` in --config)")
    contexts = ("full", "events", *RETRIEVER_CONTEXTS)
    if settings.get("context", "full") not in contexts:
        raise RealtalkError(f"--context {settings['context']!r}: choose {', '.join(contexts)}")
    settings["compat"] = paper_protocol.compat_mode(settings.get("compat"))
    if settings["compat"] and (settings.get("context", "full") != "full" or settings.get("memory")):
        raise RealtalkError(
            f"--compat {settings['compat']} builds the paper's whole-chat context; drop --context/--memory"
        )
    if settings.get("memory") and settings.get("context", "full") != "full":
        raise RealtalkError("--memory replaces --context: give one of them")
    if settings.get("memory"):
        settings["context"] = "memory"
    elif settings.get("memory_options"):
        raise RealtalkError("--memory-option is passed to a --memory; give one")
    if isinstance(settings.get("context_tokens"), int) and settings["context_tokens"] < 1:
        raise RealtalkError(f"--context-tokens {settings['context_tokens']}: expected at least 1")
    return files, ProbeOptions(**{**settings, "out": Path(settings["out"])}), fail_under


def _context_group(item: Item) -> str | None:
    """A chat's questions that share its context are sent together: the first alone, then the rest."""
    return str(item.chat_file) if item.shares_context else None


def estimate_cached_tokens(items: list[Item], model: str) -> list[int]:
    """Per request, the prompt tokens a provider's prefix cache would likely serve: the shared prefix for every
    question but a chat's first, in 128-token steps from 1,024 tokens (OpenAI's rule). An estimate."""
    seen: dict[str, int] = {}
    estimates = []
    for it in items:
        group = _context_group(it)
        if group is None:
            estimates.append(0)
        elif group not in seen:
            n = count_tokens(it.prefix(), model)[0]
            seen[group] = n // 128 * 128 if n >= 1024 else 0
            estimates.append(0)
        else:
            estimates.append(seen[group])
    return estimates


def run_probe(files: list[Path], opts: ProbeOptions, dry_run: bool = False, progress=None, batch: bool = False) -> dict:
    """A live run (`batch` only prices a dry run at batch rates; tasks/probe_batch.py runs batch jobs)."""
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    judge_endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env) if opts.judge_model else None
    paper = opts.compat is not None
    if paper and judge_endpoint is None and not endpoint.offline:
        judge_endpoint = endpoint  # the paper's script grades with the answering model
    templates = Templates.load()
    judge_hash = judge_prompt_hash(templates, paper)
    called = [endpoint, *([judge_endpoint] if judge_endpoint else [])]
    prices = load_prices(called, opts.max_cost, opts.price_in, opts.price_out)
    memories = None if paper else memory_runner(opts, endpoint, prices, dry_run)
    identity = probe_identity(opts, endpoint, files, templates, memories)
    if paper:
        items = paper_protocol.build_items(files, opts.compat, opts.limit)
    elif dry_run or memories is None:
        items = build_items(files, opts, templates, endpoint.model, memories)
    pred_path = opts.out / "predictions.jsonl"
    request = PAPER_ANSWER if paper else {"max_tokens": ANSWER_MAX_TOKENS}

    if dry_run:
        if opts.out.is_dir():
            check_run_identity(opts.out, identity, PROBE_FILES)
        rows = final_rows(read_predictions(pred_path, PROBE_FIELDS), _row_key)
        done = {_row_key(r) for r in rows if r.get("error") is None}
        todo = [it for it in items if _key(it.chat.name, it.qa_index) not in done]
        plan = dry_run_plan(
            endpoint,
            prices,
            [it.messages for it in todo],
            len(items) - len(todo),
            "question",
            ANSWER_MAX_TOKENS,
            cached_tokens=estimate_cached_tokens(todo, endpoint.model),
            batch=batch,
        )
        if judge_endpoint:
            stale = [r for r in rows if needs_judging(r, judge_endpoint.label, judge_hash)]
            future = [{"question": it.qa.question, "answer": it.qa.gold, "prediction": it.qa.gold} for it in todo]
            messages = paper_judge_messages if paper else lambda r: judge_messages(templates.judge, r)
            requests = [messages(r) for r in stale + future]
            plan["judge"] = dry_run_plan(judge_endpoint, prices, requests, 0, "question", JUDGE_MAX_TOKENS)
        return plan

    with run_folder(opts.out, identity, PROBE_FILES, opts.force):
        if memories is not None:  # ingestion may write to the run folder: only once the folder is ours
            items = build_items(files, opts, templates, endpoint.model, memories)
        rows = final_rows(read_predictions(pred_path, PROBE_FIELDS), _row_key)
        if rows:
            write_jsonl(pred_path, rows)  # one row per question from here on
        done = {_row_key(r) for r in rows if r.get("error") is None}
        todo = [it for it in items if _key(it.chat.name, it.qa_index) not in done]
        cache = open_cache(opts.use_cache)
        limiter = Limiter(opts.concurrency)  # --concurrency counts answer and judge requests together
        client = LLMClient(
            endpoint, cache=cache, prices=prices, limiter=limiter, priority=ANSWER, timeout_s=opts.timeout
        )

        def new_judge(alone: bool = False) -> LLMClient | None:
            """The judge beside the answering client, or `alone` after it (its event loop and connections closed)."""
            if judge_endpoint is None:
                return None
            # The paper's judge is re-asked on invalid JSON: a cached reply would only repeat itself.
            judge_cache = None if paper else cache
            return LLMClient(
                judge_endpoint,
                cache=judge_cache,
                prices=prices,
                limiter=Limiter(opts.concurrency) if alone else limiter,
                priority=JUDGE,
                share_connections_with=None if alone else client,
                timeout_s=opts.timeout,
            )

        judge = new_judge()
        spent = {"judge": 0.0}

        def over_budget() -> bool:
            judged = spent["judge"] + (judge.totals.cost_usd if judge else 0.0)
            ingested = memories.llm_totals.cost_usd if memories else 0.0
            return opts.max_cost is not None and client.totals.cost_usd + judged + ingested >= opts.max_cost

        started = time.perf_counter()
        new_rows: list[dict] = []
        with open(pred_path, "ab") as sink:

            async def finish(item: Item, c: Completion) -> None:
                row = prediction_row(item, c, endpoint.label, raw=paper)
                if judge is not None and c.error is None:
                    await judge_row(judge, row, templates.judge, paper)
                sink.write(orjson.dumps(row) + b"\n")
                sink.flush()
                new_rows.append(row)
                if progress:
                    progress(row, client.totals)
                if over_budget():
                    raise StopRun()

            jobs = [(it, lambda it=it: it.messages) for it in todo]
            if progress and hasattr(progress, "start"):
                progress.start(len(todo), len(items) - len(todo), "answered")
            stopped_for_cost = run_jobs(client, jobs, finish, also_close=[judge], group_of=_context_group, **request)
        rows = final_rows(rows + new_rows, _row_key)  # the file is read once per run
        judge_totals = [judge.totals] if judge else []
        if (
            judge_endpoint
            and not stopped_for_cost
            and any(needs_judging(r, judge_endpoint.label, judge_hash) for r in rows)
        ):
            # answered earlier (or judged by another judge, or the verdict failed): judge them now
            spent["judge"] += judge.totals.cost_usd
            judge = new_judge(alone=True)
            stopped_for_cost = judge_rows(rows, judge, templates.judge, paper, progress, over_budget)
            judge_totals.append(judge.totals)
        write_jsonl(pred_path, rows)
        prompts = paper_protocol.prompt_hashes() if paper else templates.hashes()
        m = probe_manifest(opts, endpoint.label, files, prompts)
        m["judge_model"] = judge_endpoint.label if judge_endpoint else _rows_judge(rows)
        if paper:
            m["protocol"] = paper_protocol.describe(
                opts.compat, m["judge_model"], endpoint.label, judge_given=opts.judge_model is not None
            )
        report = build_report(rows, m)
        report.update(_probe_completeness(rows, items, judge_endpoint, judge_hash, stopped_for_cost))
        report["run"] = {
            "wall_time_s": round(time.perf_counter() - started, 3),
            "requests": client.totals.requests,
            "cached": client.totals.cached,
            "retries": client.totals.retries + sum(t.retries for t in judge_totals),
            "errors": client.totals.errors,
            "cached_tokens": client.totals.cached_tokens + sum(t.cached_tokens for t in judge_totals),
            "judge_requests": sum(t.requests for t in judge_totals),
            "judge_errors": sum(t.errors for t in judge_totals),
            "stopped_for_max_cost": stopped_for_cost,
            "dropped_sessions": max((it.dropped_sessions for it in items), default=0),
        }
        if memories is not None:
            report["memory"] = memories.summary()
        if report["run"]["dropped_sessions"]:
            report["warnings"] = [
                f"context cut to fit --max-context-tokens {opts.max_context_tokens}: up to "
                f"{report['run']['dropped_sessions']} oldest sessions left out of a prompt"
            ]
        write_reports(opts.out, report, report_markdown(report))
    return report


def memory_runner(opts: ProbeOptions, endpoint: Endpoint, prices: Prices, dry_run: bool) -> MemoryRunner | None:
    """The run's retriever or memory; a memory that writes with an LLM uses the answering model's endpoint."""
    choice = memory_choice(opts.context, opts.memory, opts.memory_options, opts.top_k, opts.embedder)
    if choice is None:
        return None

    def count(text: str) -> int:
        return count_tokens(text, endpoint.model)[0]

    if dry_run:
        return MemoryRunner(choice, count)
    key = text_hash(json.dumps([choice.spec, choice.options], sort_keys=True))
    runner = MemoryRunner(choice, count, opts.out / "memory" / key)

    def complete(requests: list[list[dict]]) -> list[str | None]:
        client = LLMClient(
            endpoint,
            concurrency=opts.concurrency,
            cache=open_cache(opts.use_cache),
            prices=prices,
            timeout_s=opts.timeout,
        )
        replies: list[str | None] = [None] * len(requests)

        def done(i: int, c: Completion) -> None:
            replies[i] = c.text if c.error is None else None

        run_jobs(client, list(enumerate(requests)), done, max_tokens=MEMORY_MAX_TOKENS)
        runner.add_llm_usage(client.totals)
        return replies

    runner.complete = complete
    return runner


def _probe_completeness(rows, items, judge_endpoint, judge_hash, stopped_for_cost) -> dict:
    by_key = {_row_key(r): r for r in rows}
    wanted = [by_key.get(_key(it.chat.name, it.qa_index)) for it in items]
    failed = sum(1 for r in wanted if r is not None and r.get("error") is not None)
    not_run = sum(1 for r in wanted if r is None)
    unjudged = 0
    if judge_endpoint is not None:
        unjudged = sum(1 for r in wanted if r is not None and needs_judging(r, judge_endpoint.label, judge_hash))
    return completeness(failed, not_run, stopped_for_cost, unjudged, "questions")


def rescore(
    run_dir: Path,
    judge_model: str | None,
    concurrency: int = 8,
    base_url: str | None = None,
    api_key_env: str | None = None,
    use_cache: bool = True,
    progress=None,
    timeout: float = 120.0,
) -> dict:
    """Score saved predictions again (F1, and the judge when given) without asking the answering model.

    Every answered row is judged again by the given judge."""
    pred_path = run_dir / "predictions.jsonl"
    if not pred_path.exists():
        raise RealtalkError(f"{pred_path}: no such file (is {run_dir} a probe run directory?)")
    report_path = run_dir / "report.json"
    old_report = read_json(report_path) if report_path.exists() else {}
    _check_old_report(old_report, report_path)
    templates = Templates.load()
    protocol = old_report.get("manifest", {}).get("protocol")
    paper = protocol is not None  # a --compat paper run is judged with the paper's prompt again
    judge_hash = judge_prompt_hash(templates, paper)
    judge = None
    if judge_model:
        cache = None if paper else open_cache(use_cache)
        endpoint = resolve_model(judge_model, base_url, api_key_env)
        judge = LLMClient(endpoint, concurrency=concurrency, cache=cache, prices=Prices.load(), timeout_s=timeout)
    with run_folder(run_dir, None, PROBE_FILES):
        rows = final_rows(read_predictions(pred_path, PROBE_FIELDS), _row_key)
        answered = [r for r in rows if r.get("error") is None]
        for r in answered:
            score_row(r)
        stopped = False
        if judge is not None:
            stopped = judge_rows(rows, judge, templates.judge, paper, progress, lambda: False, everything=True)
        write_jsonl(pred_path, rows)
        m = old_report.get("manifest", {})
        m["judge_model"] = judge.endpoint.label if judge else m.get("judge_model")
        if paper and judge is not None:
            protocol["judge"] = f"{judge.endpoint.label} (probe rescore --judge-model)"
        elif judge is not None:
            m["prompts"] = {**m.get("prompts", {}), "probe_judge.txt": judge_hash}
        m["rescored_with"] = command_line()
        report = build_report(rows, m)
        unjudged = sum(1 for r in answered if judge and needs_judging(r, judge.endpoint.label, judge_hash))
        report.update(completeness(len(rows) - len(answered), 0, stopped, unjudged, "questions"))
        report["run"] = old_report.get("run", {})
        if judge is not None:
            report["run"]["rescore_judge_requests"] = judge.totals.requests
        report["warnings"] = old_report.get("warnings", [])
        if old_report.get("memory"):
            report["memory"] = old_report["memory"]
        write_reports(run_dir, report, report_markdown(report))
    return report


def _check_old_report(report, path: Path) -> None:
    """The parts of a run's report.json that rescore carries over; a hand-edited one is one line, not a traceback."""
    if not isinstance(report, dict) or not all(isinstance(report.get(k, {}), dict) for k in ("manifest", "run")):
        raise RealtalkError(f"{path}: expected the report.json object of a probe run")
    if report.get("memory"):
        try:
            memory_lines(report["memory"], None)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise RealtalkError(f"{path}: the 'memory' section is malformed") from None


def score_row(row: dict) -> None:
    """The paper's F1 and the date-normalised F1 of an answered predictions row."""
    gold = row.get("answer", row.get("adversarial_answer")) or ""
    args = (row["prediction"], gold, row["category"], row["dataset"])
    row["f1"] = answer_f1(*args)
    row["f1_date_normalised"] = date_normalised_f1(*args)


_INDEXES: dict[int, tuple] = {}


def _message_index(chat) -> dict:
    """The chat's dia_id index, built once per chat object rather than once per question."""
    hit = _INDEXES.get(id(chat))
    if hit is None or hit[0] is not chat:
        hit = _INDEXES[id(chat)] = (chat, chat.message_index())
    return hit[1]


def prediction_row(item: Item, c: Completion, model: str, raw: bool = False) -> dict:
    """One predictions line; `raw` keeps the reply unstripped as the paper's script does."""
    qa = item.qa
    prediction = pick_option(c.text, item.options) if item.options else c.text if raw else c.text.strip()
    # LoCoMo's adversarial gold is the trap, not the answer: it keeps its own name.
    gold_field = "adversarial_answer" if item.chat.dataset == "locomo" and qa.category == 5 else "answer"
    evidence = resolve_evidence(item.chat, qa.evidence, _message_index(item.chat))
    row = {
        "chat": item.chat.name,
        "dataset": item.chat.dataset,
        "qa_index": item.qa_index,
        "question": qa.question,
        gold_field: qa.gold,
        "category": qa.category,
        "category_name": qa.category_name,
        "evidence": qa.evidence,
        "evidence_ids": evidence.resolved,
        "evidence_dangling": evidence.dangling,
        "prediction": prediction,
        "raw_prediction": c.text,
        "f1": None,
        "f1_date_normalised": None,
        "judge_score": None,
        "judge_model": None,
        "model": model,
        **c.usage.as_row(),
        "error": c.error,
    }
    if c.error is None:
        score_row(row)
    if item.retrieved is not None:
        row["retrieved"] = item.retrieved
        row["recall"] = row["recall_at_k"] = item.recall
        row["context_tokens"] = item.context_tokens
    return row


def _rows_judge(rows: list[dict]) -> str | None:
    """The judge of an earlier run resumed without --judge-model, when one judge scored every row."""
    judges = {r.get("judge_model") for r in rows if r.get("judge_score") is not None}
    return judges.pop() if len(judges) == 1 else None


def _row_key(row: dict) -> tuple[str, int]:
    return _key(row["chat"], row["qa_index"])


def probe_identity(
    opts: ProbeOptions, endpoint, files: list[Path], templates: Templates, memories: MemoryRunner | None = None
) -> dict:
    """The judge is not part of it: a judge added or changed later judges the rows lacking its score.
    A memory is: its resolved spec, options and version (`--context retrieval` may resolve to bm25 or hybrid)."""
    if opts.compat:
        prompts = {k: v for k, v in paper_protocol.prompt_hashes().items() if k != "paper:judge"}
        sampling = dict(PAPER_ANSWER)
    else:
        prompts = {k: v for k, v in templates.hashes().items() if k != "probe_judge.txt"}
        sampling = {"temperature": 0.0, "max_tokens": ANSWER_MAX_TOKENS}
    identity = run_identity(opts, endpoint, files, prompts, sampling)
    if memories is not None:
        identity["memory"] = memories.identity
    return identity


def probe_manifest(opts: ProbeOptions, model: str, files: list[Path], prompts: dict) -> dict:
    judge = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env).label if opts.judge_model else None
    return manifest(opts, files, model=model, judge_model=judge, prompts=prompts)
