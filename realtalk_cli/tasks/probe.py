"""Memory probing: a model answers questions about a whole chat; scored by token F1 and an LLM judge.

Pipeline: QA items -> prompts -> completions (LLM client) -> predictions.jsonl (one line each, appended
as they finish) -> scores -> report.json / report.md. A re-run skips questions already answered.
Options and the run's identity: probe_options.py; the rows: probe_rows.py; `probe rescore`: probe_rescore.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson

from realtalk_cli.fileio import check_run_identity, run_folder, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, Usage
from realtalk_cli.llm.jobs import StopRun, dry_run_plan, run_jobs
from realtalk_cli.llm.providers import Endpoint, Prices, resolve_model
from realtalk_cli.llm.scheduler import ANSWER, JUDGE, Limiter
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks import paper_protocol
from realtalk_cli.tasks.memory_runner import MemoryRunner, memory_choice
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
from realtalk_cli.tasks.probe_options import (
    ANSWER_MAX_TOKENS,
    PROBE_FILES,
    ProbeOptions,
    probe_identity,
    probe_manifest,
)
from realtalk_cli.tasks.probe_prompts import Item, Templates, build_items
from realtalk_cli.tasks.probe_report import build_report, report_markdown
from realtalk_cli.tasks.probe_rows import (
    PROBE_FIELDS,
    item_key,
    prediction_row,
    probe_completeness,
    row_key,
    rows_judge,
)
from realtalk_cli.tasks.runs import final_rows, load_prices, read_predictions, text_hash, write_reports

MEMORY_MAX_TOKENS = 400  # a memory's own requests while ingesting (e.g. session summaries)


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
        rows = final_rows(read_predictions(pred_path, PROBE_FIELDS), row_key)
        done = {row_key(r) for r in rows if r.get("error") is None}
        todo = [it for it in items if item_key(it) not in done and it.error is None]
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
        if memories is not None:
            plan.update(memories.dry_run_notes(endpoint, prices, MEMORY_MAX_TOKENS, opts.context_tokens * len(todo)))
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
        rows = final_rows(read_predictions(pred_path, PROBE_FIELDS), row_key)
        if rows:
            write_jsonl(pred_path, rows)  # one row per question from here on
        done = {row_key(r) for r in rows if r.get("error") is None}
        todo = [it for it in items if item_key(it) not in done]
        unasked = [it for it in todo if it.error is not None]  # the memory's recall failed: an error row
        todo = [it for it in todo if it.error is None]
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
            for it in unasked:
                new_rows.append(prediction_row(it, Completion("", Usage(), it.error), endpoint.label))
                sink.write(orjson.dumps(new_rows[-1]) + b"\n")

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
        rows = final_rows(rows + new_rows, row_key)  # the file is read once per run
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
        m["judge_model"] = judge_endpoint.label if judge_endpoint else rows_judge(rows)
        if paper:
            m["protocol"] = paper_protocol.describe(
                opts.compat, m["judge_model"], endpoint.label, judge_given=opts.judge_model is not None
            )
        report = build_report(rows, m)
        report.update(probe_completeness(rows, items, judge_endpoint, judge_hash, stopped_for_cost))
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

    if dry_run:  # the memory's own requests are counted, not sent
        runner = MemoryRunner(choice, count, timeout=opts.memory_timeout)
        runner.complete = runner.count_requests
        return runner
    key = text_hash(json.dumps([choice.spec, choice.options], sort_keys=True))
    runner = MemoryRunner(choice, count, opts.out / "memory" / key, timeout=opts.memory_timeout)

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
