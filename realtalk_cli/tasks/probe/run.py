"""Memory probing: a model answers questions about a whole chat; scored by token F1 and an LLM judge.

`run_probe` is the pipeline, each step a function of its own: the run's setup (protocol, endpoints, judge,
prices, memory, identity) -> items -> answers (appended to predictions.jsonl as they finish, each judged
as it arrives) -> the judge for rows answered earlier -> rows -> report.json / report.md. A re-run skips
questions already answered. What varies between protocols is asked of the protocol object
(protocols/, judges/), never tested here. Options and identity: options.py; rows: rows.py; `probe
rescore`: rescore.py; batch jobs: batch.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from realtalk_cli.data.errata import Errata, read_errata
from realtalk_cli.data.formats import chat_files, check_chats
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, mark_unfinished, run_folder, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, NotSent, Totals, Usage
from realtalk_cli.llm.jobs import StopRun, dry_run_plan, run_jobs
from realtalk_cli.llm.providers import Endpoint, Prices, resolve_model
from realtalk_cli.llm.scheduler import ANSWER, JUDGE, Limiter
from realtalk_cli.llm.spending import Spending, halting, planned_total, request_counts, run_times
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks.memory.runner import MemoryRunner, memory_choice
from realtalk_cli.tasks.probe import errata as fixes
from realtalk_cli.tasks.probe.items import Item
from realtalk_cli.tasks.probe.judge import judge_row, judge_rows, judges_problem, needs_judging
from realtalk_cli.tasks.probe.judges import judge_protocol
from realtalk_cli.tasks.probe.options import PROBE_FILES, ProbeOptions, probe_identity, probe_manifest
from realtalk_cli.tasks.probe.protocol import JudgeProtocol, ProbeProtocol
from realtalk_cli.tasks.probe.protocols import probe_protocol
from realtalk_cli.tasks.probe.report import build_report, report_markdown
from realtalk_cli.tasks.probe.rows import (
    PROBE_FIELDS,
    item_key,
    prediction_row,
    probe_completeness,
    qa_fields,
    row_key,
    rows_judge,
)
from realtalk_cli.tasks.prompts import text_hash
from realtalk_cli.tasks.runs.results import final_rows, read_predictions, write_reports
from realtalk_cli.tasks.runs.settings import load_prices

MEMORY_MAX_TOKENS = 400  # a memory's own requests while ingesting (e.g. session summaries)
PRICED_ANSWER_TOKENS = 32  # the answer size a dry run prices when a protocol leaves max_tokens to the provider


@dataclass
class ProbeSetup:
    """Everything a probe run decides before its first request."""

    files: list[Path]
    opts: ProbeOptions
    protocol: ProbeProtocol
    endpoint: Endpoint
    judge_endpoint: Endpoint | None
    judge: JudgeProtocol
    prices: Prices
    memories: MemoryRunner | None
    identity: dict
    spending: Spending  # the run folder's spending record, read once the run holds the folder
    clients: list[LLMClient] = field(default_factory=list)  # this invocation's, halted at --max-cost
    notes: list[str] = field(default_factory=list)  # e.g. a chat given twice, asked once
    errata: Errata | None = None
    placements: list[fixes.Placement] = field(default_factory=list)
    catalog: dict[str, fixes.ChatQuestions] = field(default_factory=dict)

    @property
    def predictions(self) -> Path:
        return self.opts.out / "predictions.jsonl"

    def items(self) -> list[Item]:
        items = self.protocol.build_items(self.files, self.opts, self.endpoint.model, self.memories)
        for it in items:  # a judge that cannot grade an item (another dataset's) says so before anything is asked
            self.judge.check_item(it.qa, f"{it.chat_file}: {it.chat.name} question {it.qa_index}")
        if not items and self.opts.category is not None:
            raise RealtalkError(f"--category {self.opts.category}: no question of that category in the chats given")
        return items


@dataclass
class Answers:
    """What the answering step sent and got: the new rows, its clients' totals and whether --max-cost stopped it."""

    rows: list[dict] = field(default_factory=list)
    client: Totals = field(default_factory=Totals)
    judges: list[Totals] = field(default_factory=list)
    stopped_for_cost: bool = False


def run_probe(files: list[Path], opts: ProbeOptions, dry_run: bool = False, progress=None, batch: bool = False) -> dict:
    """A live run (`batch` only prices a dry run at batch rates; batch.py runs batch jobs)."""
    return run_prepared(prepare(files, opts, dry_run), files, dry_run, progress, batch)


def run_prepared(
    setup: ProbeSetup, files: list[Path], dry_run: bool = False, progress=None, batch: bool = False
) -> dict:
    """`run_probe` once `prepare` has checked everything (a suite prepares every cell before it runs any)."""
    opts = setup.opts
    if setup.memories is not None and hasattr(progress, "stage"):
        setup.memories.progress = progress.stage  # e.g. encoding a chat's windows, before the first question
    if dry_run:
        return plan(setup, setup.items(), batch)
    # A bad chat is found before the folder is made; a memory's ingestion may write to the run folder, so it
    # runs only once the folder is ours (the files are read through first: a LongMemEval file cut at instance 400
    # must not cost 399 ingestions).
    items = setup.items() if setup.memories is None else check_chats(files)
    with run_folder(opts.out, setup.identity, PROBE_FILES, opts.force):
        setup.spending.start()
        mark_unfinished(opts.out)
        try:
            items = setup.items() if items is None else items
            rows = resumed_rows(setup.predictions)
            answers = answer(setup, items, rows, progress)
            rows = final_rows(rows + answers.rows, row_key)  # the file is read once per run
            if not answers.stopped_for_cost:
                answers.stopped_for_cost = judge_earlier_rows(setup, rows, answers, progress)
            if setup.errata is not None:
                answers.stopped_for_cost = apply_errata(setup, rows, answers)
            write_jsonl(setup.predictions, rows)
            report = probe_report(setup, items, rows, answers)
            write_reports(opts.out, report, report_markdown(report))
        finally:
            setup.spending.finish()
    return report


def prepare(files: list[Path], opts: ProbeOptions, dry_run: bool, spending: Spending | None = None) -> ProbeSetup:
    """The chats, protocol, endpoints, judge, prices, memory and the run's identity, checked before any request.
    `spending` is the run folder's record (a suite passes one whose --max-cost check covers the whole grid)."""
    chats, notes = chat_files(files)  # each content once
    files = [c.path for c in chats]
    protocol = probe_protocol(opts.compat, memory=opts.memory is not None)
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    judge_endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env) if opts.judge_model else None
    if judge_endpoint is None and protocol.judge_with_answering_model and not endpoint.offline:
        judge_endpoint = endpoint
    prices = load_prices(
        [endpoint, *([judge_endpoint] if judge_endpoint else [])], opts.max_cost, opts.price_in, opts.price_out
    )
    spending = spending or Spending(opts.out)
    clients: list[LLMClient] = []
    memories = memory_runner(opts, endpoint, prices, dry_run, spending, clients)
    identity = probe_identity(opts, endpoint, files, protocol, memories)
    judge = judge_protocol(opts.judge_protocol or protocol.judge)
    if opts.judge_protocol and judge_endpoint is None:
        raise RealtalkError(f"--judge-protocol {opts.judge_protocol} grades with a --judge-model: give one")
    errata = read_errata(opts.errata) if opts.errata is not None else None
    return ProbeSetup(
        files,
        opts,
        protocol,
        endpoint,
        judge_endpoint,
        judge,
        prices,
        memories,
        identity,
        spending,
        clients,
        notes,
        errata,
    )


def over_budget(setup: ProbeSetup):
    """The run's --max-cost check: the whole folder's spending (answers, judge, memory; every invocation)."""
    return halting(setup.spending, setup.opts.max_cost, lambda: setup.clients)


def resumed_rows(path: Path) -> list[dict]:
    """The rows of earlier invocations, one per question from here on."""
    rows = final_rows(read_predictions(path, PROBE_FIELDS, judges_problem), row_key)
    if rows:
        write_jsonl(path, rows)
    return rows


def plan(setup: ProbeSetup, items: list[Item], batch: bool) -> dict:
    """What the run would send and cost, counted offline (`--dry-run`)."""
    opts, endpoint, prices = setup.opts, setup.endpoint, setup.prices
    if opts.out.is_dir():
        check_run_identity(opts.out, setup.identity, PROBE_FILES)
    rows = final_rows(read_predictions(setup.predictions, PROBE_FIELDS, judges_problem), row_key)
    done = {row_key(r) for r in rows if r.get("error") is None}
    todo = [it for it in items if item_key(it) not in done and it.error is None]
    answer_tokens = setup.protocol.answer_params.get("max_tokens") or PRICED_ANSWER_TOKENS
    groups = setup.protocol.requests(todo)
    estimate = dry_run_plan(
        endpoint,
        prices,
        (setup.protocol.request(g) for g in groups),  # one prompt at a time: a LongMemEval haystack is let go
        len(items) - len(todo),
        "question",
        answer_tokens,
        cached_tokens=estimate_cached_tokens([g[0] for g in groups], endpoint.model),
        batch=batch,
    )
    if setup.memories is not None:
        estimate.update(
            setup.memories.dry_run_notes(endpoint, prices, MEMORY_MAX_TOKENS, opts.context_tokens * len(todo))
        )
    if setup.judge_endpoint:
        judge = setup.judge
        stale = [r for r in rows if needs_judging(r, setup.judge_endpoint.label, judge.prompt_hash, judge.name)]
        future = [
            {"question": it.qa.question, "answer": it.qa.gold, "prediction": it.qa.gold, **qa_fields(it.qa)}
            for it in todo
        ]
        requests = [judge.messages(r) for r in stale + future]
        if setup.errata is not None:  # verdicts against corrected golds, counted with the judge's
            catalog = fixes.add_rows(fixes.catalog_from_files(setup.files), rows)
            placements = fixes.place(setup.errata, catalog, {item_key(it) for it in items} | {row_key(r) for r in rows})
            requests += fixes.planned_requests(placements, rows, judge, setup.judge_endpoint.label)
        estimate["judge"] = dry_run_plan(
            setup.judge_endpoint, prices, requests, 0, "question", judge.max_tokens, batch=batch
        )
    estimate["total"] = planned_total(estimate, opts.out, opts.max_cost)  # answers + judge + memory ingestion
    return estimate


def judge_client(setup: ProbeSetup, limiter: Limiter, beside: LLMClient | None = None) -> LLMClient:
    """The judge's client: beside the answering client (sharing its limiter, cache and connections), or alone."""
    cache = (beside.cache if beside else open_cache(setup.opts.use_cache)) if setup.judge.cached else None
    client = LLMClient(
        setup.judge_endpoint,
        cache=cache,
        prices=setup.prices,
        limiter=limiter,
        priority=JUDGE,
        share_connections_with=beside,
        timeout_s=setup.opts.timeout,
    )
    setup.clients.append(client)
    return setup.spending.attach(client, "judge")


def answer(setup: ProbeSetup, items: list[Item], rows: list[dict], progress) -> Answers:
    """Ask every question not answered yet; each answer is judged as it arrives and appended as one line."""
    opts, endpoint = setup.opts, setup.endpoint
    done = {row_key(r) for r in rows if r.get("error") is None}
    todo = [it for it in items if item_key(it) not in done]
    unasked = [it for it in todo if it.error is not None]  # the memory's recall failed: an error row
    todo = [it for it in todo if it.error is None]
    limiter = Limiter(opts.concurrency)  # --concurrency counts answer and judge requests together
    client = LLMClient(
        endpoint,
        cache=open_cache(opts.use_cache),
        prices=setup.prices,
        limiter=limiter,
        priority=ANSWER,
        timeout_s=opts.timeout,
    )
    setup.clients.append(setup.spending.attach(client, "answer"))
    judge = judge_client(setup, limiter, beside=client) if setup.judge_endpoint else None
    budget = over_budget(setup)
    result = Answers()
    with open(setup.predictions, "ab") as sink:
        for it in unasked:
            result.rows.append(prediction_row(it, Completion("", Usage(), it.error), endpoint.label))
            sink.write(orjson.dumps(result.rows[-1]) + b"\n")

        async def finish(group: list[Item], reply: Completion) -> None:
            for item, c in zip(group, setup.protocol.replies(group, reply), strict=True):
                row = prediction_row(item, c, endpoint.label, setup.protocol)
                if judge is not None and c.error is None and not budget():
                    try:
                        await judge_row(judge, row, setup.judge)
                    except NotSent:  # the run stopped at --max-cost: the next invocation judges it
                        pass
                sink.write(orjson.dumps(row) + b"\n")
                sink.flush()
                result.rows.append(row)
                if progress:
                    progress(row, client.totals)
            if budget():
                raise StopRun()

        protocol = setup.protocol
        jobs = [(g, lambda g=g: protocol.request(g)) for g in protocol.requests(todo)]
        if progress and hasattr(progress, "start"):
            progress.start(len(todo), len(items) - len(todo), "answered")
        if todo and budget():  # spent already (earlier invocations, the memory's ingestion): nothing is sent
            result.stopped_for_cost = True
            jobs = []
        stopped = run_jobs(
            client, jobs, finish, also_close=[judge], group_of=lambda g: _context_group(g[0]), **protocol.answer_params
        )
        result.stopped_for_cost = result.stopped_for_cost or stopped
    result.client = client.totals
    result.judges = [judge.totals] if judge else []
    return result


def judge_earlier_rows(setup: ProbeSetup, rows: list[dict], answers: Answers, progress) -> bool:
    """Judge the rows answered earlier (or judged by another judge, or whose verdict failed in an earlier
    invocation: one judged as it was answered now waits for the next, so an item is asked at most the judge's
    attempts per invocation); True when --max-cost stopped it. The judge runs alone, after the answering
    client closed."""
    judged_now = {row_key(r) for r in answers.rows}
    earlier = [r for r in rows if row_key(r) not in judged_now]
    if setup.judge_endpoint is None or not any(
        needs_judging(r, setup.judge_endpoint.label, setup.judge.prompt_hash, setup.judge.name) for r in earlier
    ):
        return False
    if over_budget(setup)():
        return True
    judge = judge_client(setup, Limiter(setup.opts.concurrency))
    stopped = judge_rows(earlier, judge, setup.judge, progress, over_budget(setup))
    answers.judges.append(judge.totals)
    return stopped


def apply_errata(setup: ProbeSetup, rows: list[dict], answers: Answers) -> bool:
    """Scores against the corrected golds beside the published ones, and the judge's verdicts against them
    (unless --max-cost already stopped the run); True when --max-cost stopped the run."""
    setup.catalog = fixes.add_rows(fixes.catalog_from_files(setup.files), rows)
    setup.placements = fixes.place(setup.errata, setup.catalog, {row_key(r) for r in rows})
    fixes.apply_errata(rows, setup.placements, setup.protocol)
    if answers.stopped_for_cost or setup.judge_endpoint is None:
        return answers.stopped_for_cost
    if not fixes.unjudged(rows, setup.judge_endpoint.label, setup.judge.prompt_hash):
        return False
    if over_budget(setup)():
        return True
    judge = judge_client(setup, Limiter(setup.opts.concurrency))
    stopped = fixes.judge_errata(rows, judge, setup.judge, over_budget(setup))
    answers.judges.append(judge.totals)
    return stopped


def probe_report(setup: ProbeSetup, items: list[Item], rows: list[dict], answers: Answers) -> dict:
    """report.json's content: scores of the final rows, the manifest, completeness and the run's figures."""
    opts, endpoint, judge_endpoint = setup.opts, setup.endpoint, setup.judge_endpoint
    prompts = {**setup.protocol.prompt_hashes(), **setup.judge.prompt_hashes()}
    m = probe_manifest(opts, endpoint.label, setup.files, prompts)
    m["judge_model"] = judge_endpoint.label if judge_endpoint else rows_judge(rows)
    m["judge_protocol"] = setup.judge.name if m["judge_model"] else None
    described = setup.protocol.describe(m["judge_model"], endpoint.label, judge_given=opts.judge_model is not None)
    if described is not None:
        m["protocol"] = described
    report = build_report(rows, m)
    judge_label = judge_endpoint.label if judge_endpoint else None
    missing = fixes.unjudged(rows, judge_label, setup.judge.prompt_hash) if setup.errata else 0
    report.update(
        probe_completeness(
            rows, items, judge_endpoint, setup.judge.prompt_hash, answers.stopped_for_cost, missing, setup.judge.name
        )
    )
    if setup.errata is not None:
        report["errata"] = fixes.errata_section(
            setup.errata, setup.placements, rows, m["judge_model"], setup.judge.prompt_hash, setup.catalog,
            setup.judge.name,
        )  # fmt: skip
    client, judges = answers.client, answers.judges
    usage = setup.spending.summary()
    report["run"] = {
        **run_times(usage),
        "requests": client.requests,
        "cached": client.cached,
        "retries": client.retries + sum(t.retries for t in judges),
        "errors": client.errors,
        "cached_tokens": client.cached_tokens + sum(t.cached_tokens for t in judges),
        "judge_requests": sum(t.requests for t in judges),
        "judge_errors": sum(t.errors for t in judges),
        "stopped_for_max_cost": answers.stopped_for_cost,
        "dropped_sessions": max((it.dropped_sessions for it in items), default=0),
        **request_counts(usage),
    }
    report["usage"] = usage
    if setup.memories is not None:
        report["memory"] = setup.memories.summary()
    warnings = list(setup.notes)
    if report["run"]["dropped_sessions"]:
        warnings.append(
            f"context cut to fit --max-context-tokens {opts.max_context_tokens}: up to "
            f"{report['run']['dropped_sessions']} oldest sessions left out of a prompt"
        )
    if warnings:
        report["warnings"] = warnings
    return report


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


def memory_runner(
    opts: ProbeOptions,
    endpoint: Endpoint,
    prices: Prices,
    dry_run: bool,
    spending: Spending | None = None,
    clients: list[LLMClient] | None = None,
) -> MemoryRunner | None:
    """The run's retriever or memory; a memory that writes with an LLM uses the answering model's endpoint. Its
    requests are recorded in the run folder's `spending` (stage "memory") and stop at --max-cost like the others
    (a request not sent is a None reply: the memory asks it again next run)."""
    choice = memory_choice(opts.context, opts.memory, opts.memory_options, opts.top_k, opts.embedder)
    if choice is None:
        return None

    def count(text: str) -> int:
        return count_tokens(text, endpoint.model)[0]

    keys = (endpoint.api_key_env,)  # redacted from the memory's error text, with every provider's
    if dry_run:  # the memory's own requests are counted, not sent
        runner = MemoryRunner(choice, count, timeout=opts.memory_timeout, key_envs=keys)
        runner.complete = runner.count_requests
        return runner
    key = text_hash(json.dumps([choice.spec, choice.options], sort_keys=True))
    runner = MemoryRunner(choice, count, opts.out / "memory" / key, timeout=opts.memory_timeout, key_envs=keys)

    def complete(
        requests: list[list[dict]], max_tokens: int | None = None, temperature: float | None = None
    ) -> list[str | None]:
        client = LLMClient(
            endpoint,
            concurrency=opts.concurrency,
            cache=open_cache(opts.use_cache),
            prices=prices,
            timeout_s=opts.timeout,
        )
        replies: list[str | None] = [None] * len(requests)
        if spending is not None:
            spending.attach(client, "memory")
            clients.append(client)
        budget = halting(spending, opts.max_cost, lambda: [client]) if spending is not None else lambda: False

        def done(i: int, c: Completion) -> None:
            replies[i] = c.text if c.error is None else None
            if budget():
                raise StopRun()

        sampling = {} if temperature is None else {"temperature": temperature}
        run_jobs(
            client,
            [] if budget() else list(enumerate(requests)),
            done,
            max_tokens=max_tokens or MEMORY_MAX_TOKENS,
            **sampling,
        )
        runner.add_llm_usage(client.totals)
        return replies

    runner.complete = complete
    return runner
