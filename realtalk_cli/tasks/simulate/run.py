"""Persona simulation (the paper's task 1): a model writes the next message as one participant, given the
real history before it, and is scored against what the person actually wrote.

Targets -> prompts -> completions (LLM client) -> predictions.jsonl (ROUGE-L and EI labels per line, as
each finishes) -> BERTScore for the lines that lack it (one batch, model loaded once) -> report.json/md.
The model's output is never fed back: every target sees the real history.
Targets and prompts: prompts.py; EI labels and BERTScore: scores.py; options: options.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from realtalk_cli.analysis.ei_annotation import BACKENDS
from realtalk_cli.analysis.ei_hf import HFLabeler
from realtalk_cli.data.formats import chat_files
from realtalk_cli.data.model import person_key
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, mark_unfinished, run_folder, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, require_key
from realtalk_cli.llm.jobs import StopRun, dry_run_plan, run_jobs
from realtalk_cli.llm.providers import resolve_model
from realtalk_cli.llm.spending import USAGE_FILE, Spending, halting, planned_total, request_counts, run_times
from realtalk_cli.scoring.f1 import rouge_l
from realtalk_cli.tasks.prompts import prompt_text, text_hash
from realtalk_cli.tasks.runs.identity import manifest, run_identity
from realtalk_cli.tasks.runs.results import (
    completeness,
    final_rows,
    read_predictions,
    write_reports,
)
from realtalk_cli.tasks.runs.settings import load_prices
from realtalk_cli.tasks.simulate.options import SimulateOptions
from realtalk_cli.tasks.simulate.prompts import Target, matches_speaker, prompt_messages, select_targets, target_key
from realtalk_cli.tasks.simulate.report import build_report, report_markdown
from realtalk_cli.tasks.simulate.scores import LABEL_MAX_TOKENS, add_bertscore, add_labels, label_messages
from realtalk_cli.tasks.simulate.split import load_split

REPLY_MAX_TOKENS = 200


SIMULATE_FILES = ["predictions.jsonl", "report.json", "report.md", USAGE_FILE]
SIMULATE_FIELDS = {"position": int, "speaker": str, "reference": str, "prediction": str}


def build_targets(files: list[Path], opts: SimulateOptions) -> list[Target]:
    targets: list[Target] = []
    split = load_split(opts.split)
    for chat_file in chat_files(files)[0]:
        chat, path = chat_file.load(), chat_file.path  # its name: the chat's id in this run
        if opts.speaker and not any(matches_speaker(s, opts.speaker) for s in chat.speakers):
            raise RealtalkError(f"{path}: no speaker {opts.speaker!r} (speakers: {', '.join(chat.speakers)})")
        targets.extend(
            t
            for t in select_targets(chat, opts.speaker, opts.targets, opts.sessions)
            if split.includes(chat, t.speaker) and split.includes_session(t.messages[0].session)
        )
        if opts.limit is not None and len(targets) >= opts.limit:
            return targets[: opts.limit]
    if not targets and opts.split != "all":
        raise RealtalkError(f"--split {opts.split}: no message of these chats is in that split (nothing to simulate)")
    return targets


def run_simulate(
    files: list[Path], opts: SimulateOptions, dry_run: bool = False, progress=None, batch: bool = False
) -> dict:
    """A run; with `batch` its replies go as a batch job (llm/batch.py) and, while the batch runs, the result
    is `{"pending": message}`. EI labels by an LLM are asked live once the replies are in."""
    if opts.ei_backend not in BACKENDS:
        raise RealtalkError(f"--ei-backend {opts.ei_backend!r}: choose {', '.join(BACKENDS)}")
    if opts.ei_backend == "llm" and not opts.ei_model:
        raise RealtalkError("--ei-backend llm needs --ei-model")
    chats, notes = chat_files(files)  # each content once
    files = [c.path for c in chats]
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    ei_endpoint = resolve_model(opts.ei_model, opts.base_url, opts.api_key_env) if opts.ei_backend == "llm" else None
    system_template = prompt_text("simulate_system.txt")
    targets = build_targets(files, opts)
    pred_path = opts.out / "predictions.jsonl"
    prices = load_prices(
        [endpoint, *([ei_endpoint] if ei_endpoint else [])], opts.max_cost, opts.price_in, opts.price_out
    )
    identity = run_identity(
        opts,
        endpoint,
        files,
        {"simulate_system.txt": text_hash(system_template)},
        {"temperature": 0.0, "max_tokens": REPLY_MAX_TOKENS},
    )
    split = load_split(opts.split)
    if split.sha256 is not None:  # a split file: its content chooses the targets, not only its name
        identity["split_sha256"] = split.sha256
    if dry_run:
        if opts.out.is_dir():
            check_run_identity(opts.out, identity, SIMULATE_FILES)
        rows = read_predictions(pred_path, SIMULATE_FIELDS)
        done = {target_key(r) for r in rows if r.get("error") is None}
        todo = [t for t in targets if target_key(t) not in done]
        requests = [prompt_messages(t, system_template) for t in todo]
        plan = dry_run_plan(
            endpoint, prices, requests, len(targets) - len(todo), "target", REPLY_MAX_TOKENS, batch=batch
        )
        if ei_endpoint is not None:  # two labelling calls per target (the reply priced as long as the real one)
            labelled = {target_key(r) for r in rows if r.get("error") is None and "labels" in r}
            unlabelled = [t for t in targets if target_key(t) not in labelled]
            asks = [label_messages(t, t.speaker, t.reference) for t in unlabelled for _ in range(2)]
            plan["labels"] = dry_run_plan(ei_endpoint, prices, asks, 0, "request", LABEL_MAX_TOKENS)
        plan["total"] = planned_total(plan, opts.out, opts.max_cost)
        return plan
    scorer = None
    if opts.bertscore:  # load before spending money: a missing model should stop the run now
        from realtalk_cli.analysis.bertscore import BertScorer

        scorer = BertScorer(opts.bertscore_model, opts.bertscore_layers)
    hf_labeler = HFLabeler(opts.hf_models) if opts.ei_backend == "hf" else None
    if ei_endpoint is not None:
        require_key(ei_endpoint)  # labels are asked after the replies: a missing key must stop the run now
    with run_folder(opts.out, identity, [*SIMULATE_FILES, "batch.json"], opts.force):
        spending = Spending(opts.out).start()
        mark_unfinished(opts.out)
        try:
            return _run(
                files,
                opts,
                endpoint,
                system_template,
                targets,
                prices,
                scorer,
                hf_labeler,
                progress,
                batch,
                spending,
                notes,
            )
        finally:
            spending.finish()


def _run(
    files,
    opts: SimulateOptions,
    endpoint,
    system_template,
    targets,
    prices,
    scorer,
    hf_labeler,
    progress,
    batch,
    spending,
    notes,
):
    pred_path = opts.out / "predictions.jsonl"
    rows = final_rows(read_predictions(pred_path, SIMULATE_FIELDS), target_key)
    if rows:
        write_jsonl(pred_path, rows)  # one row per target from here on
    done = {target_key(r) for r in rows if r.get("error") is None}
    todo = [t for t in targets if target_key(t) not in done]
    cache = open_cache(opts.use_cache)
    client = LLMClient(endpoint, concurrency=opts.concurrency, cache=cache, prices=prices, timeout_s=opts.timeout)
    spending.attach(client, "answer")
    budget = halting(spending, opts.max_cost, lambda: [client])

    with open(pred_path, "ab") as sink:

        def write(target: Target, c: Completion, durably: bool = False) -> None:
            sink.write(orjson.dumps(prediction_row(target, c, endpoint.label)) + b"\n")
            sink.flush()
            if durably:  # a batch's results, written for good before the batch is marked collected
                os.fsync(sink.fileno())

        def finish(target: Target, c: Completion) -> None:
            write(target, c)
            if progress:
                progress(None, client.totals)
            if budget():
                raise StopRun()

        if batch:
            pending, stopped_for_cost = _batch_step(files, opts, client, system_template, todo, write, spending)
            if cache is not None:
                cache.close()  # writes what the batch answered
            if pending:
                return {"complete": False, "pending": pending}
        else:
            jobs = [(t, prompt_messages(t, system_template)) for t in todo]
            if progress and hasattr(progress, "start"):
                progress.start(len(todo), len(targets) - len(todo), "simulated")
            stopped_for_cost = bool(jobs) and budget()  # spent already by earlier invocations
            stopped_for_cost = run_jobs(
                client, [] if stopped_for_cost else jobs, finish, max_tokens=REPLY_MAX_TOKENS
            ) or (stopped_for_cost)
    rows = final_rows(read_predictions(pred_path, SIMULATE_FIELDS), target_key)
    ei_usage = None
    if not stopped_for_cost:
        ei_usage, stopped_for_cost = add_labels(
            rows, {target_key(t): t for t in targets}, opts, hf_labeler, prices, spending
        )
    if scorer is not None:
        add_bertscore(rows, scorer)
    write_jsonl(pred_path, rows)
    report = build_report(rows, simulate_manifest(opts, endpoint.label, files, system_template, scorer))
    by_key = {target_key(r): r for r in rows}
    wanted = [by_key.get(target_key(t)) for t in targets]
    failed = sum(1 for r in wanted if r is not None and r.get("error") is not None)
    unlabelled = sum(1 for r in wanted if r is not None and r.get("error") is None and "labels" not in r)
    report.update(completeness(failed, wanted.count(None), stopped_for_cost, unlabelled, "targets"))
    usage = spending.summary()
    if notes:  # e.g. a chat given twice, asked once
        report["warnings"] = list(notes)
    report["run"] = {
        **run_times(usage),
        "requests": client.totals.requests,
        "cached": client.totals.cached,
        "retries": client.totals.retries,
        "errors": client.totals.errors,
        "prompt_tokens": client.totals.prompt_tokens,
        "completion_tokens": client.totals.completion_tokens,
        "cost_usd": round(client.totals.cost_usd, 6),
        "stopped_for_max_cost": stopped_for_cost,
        "ei_labelling": ei_usage,
        **request_counts(usage),
    }
    report["usage"] = usage
    write_reports(opts.out, report, report_markdown(report))
    return report


def _batch_step(
    files, opts: SimulateOptions, client: LLMClient, system_template: str, todo, write, spending: Spending
) -> tuple[str | None, bool]:
    """The replies as a batch job: record what came back (or from the cache); (what is pending, if anything;
    whether --max-cost held requests back)."""
    from realtalk_cli.llm import batch
    from realtalk_cli.tasks.runs.batch import record_run

    folder = batch.BatchFolder(opts.out)
    record_run(folder, "simulate", files, opts)
    by_id = {"#".join(map(str, target_key(t))): t for t in todo}
    requests = [(cid, prompt_messages(t, system_template)) for cid, t in by_id.items()]
    params = {"temperature": 0.0, "max_tokens": REPLY_MAX_TOKENS}  # as a live run sends: the same cache keys

    def record(results: dict[str, Completion], batch_id: str | None) -> None:
        spending.record("answer", results.values(), batch=batch_id)
        known = [(by_id[cid], c) for cid, c in results.items() if cid in by_id]
        for n, (target, c) in enumerate(known, start=1):
            write(target, c, durably=n == len(known))

    return batch.step(client, folder, "reply", requests, params, record, opts.max_cost, spending.spent())


def prediction_row(target: Target, c: Completion, model: str) -> dict:
    prediction = c.text.strip()
    row = {
        "chat": target.chat.name,
        "dataset": target.chat.dataset,
        "speaker": target.speaker,
        "person": person_key(target.speaker),
        "position": target.position,
        "dia_ids": [m.dia_id for m in target.messages],
        "session": target.messages[0].session,
        "history_messages": len(target.history),
        "partner_previous": target.partner_previous,
        "reference": target.reference,
        "prediction": prediction,
        "rouge_l": None,
        "bertscore": None,
        "model": model,
        **c.usage.as_row(),
        "error": c.error,
    }
    if c.error is None:
        row["rouge_l"] = rouge_l(prediction, target.reference)
    return row


def simulate_manifest(opts: SimulateOptions, model: str, files: list[Path], system_template: str, scorer) -> dict:
    ei_backend = (
        opts.ei_backend
        if opts.ei_backend != "llm"
        else f"llm:{resolve_model(opts.ei_model, opts.base_url, opts.api_key_env).label}"
    )
    return manifest(
        opts,
        files,
        model=model,
        prompts={"simulate_system.txt": text_hash(system_template)},
        ei_backend=ei_backend,
        bertscore_model=scorer.label if scorer is not None else None,
        split=split_summary(opts.split, files),
    )


def split_summary(value: str, files: list[Path]) -> dict:
    """The split a run used, with the people it gives no test chat (left out of the scores)."""
    split = load_split(value)
    chats = [c.load() for c in chat_files(files)[0]] if split.name != "all" else []
    return {
        "name": split.name,
        "test_chats": split.test_chats or None,
        "sessions": split.sessions,
        "left_out": split.undesignated(chats),
    }
