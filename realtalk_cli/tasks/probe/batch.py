"""`probe --batch`: the same run as `probe`, its requests sent as batch jobs (llm/batch.py).

Each invocation does what can be done now and returns: collect an ended answer batch (its rows go to
predictions.jsonl), collect an ended judge batch (its verdicts go on those rows), then submit what is
left: the answers first, the judge requests in a second batch once the answers are in. Cache hits are
answered at once and never sent. When nothing is left the usual reports are written. Items a batch
failed or let expire are sent again by the next invocation, as failed requests of a live run are.
The run record in batch.json: tasks/runs/batch.py.
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import mark_unfinished, read_jsonl, run_folder, write_jsonl
from realtalk_cli.llm import batch
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, Usage
from realtalk_cli.llm.spending import request_counts, run_times
from realtalk_cli.tasks.probe.judge import needs_judging, record_verdict
from realtalk_cli.tasks.probe.options import PROBE_FILES, ProbeOptions, probe_manifest
from realtalk_cli.tasks.probe.protocols import probe_protocol
from realtalk_cli.tasks.probe.report import build_report, report_markdown
from realtalk_cli.tasks.probe.rows import prediction_row, probe_completeness, row_key
from realtalk_cli.tasks.probe.run import PRICED_ANSWER_TOKENS, ProbeSetup, prepare
from realtalk_cli.tasks.runs.batch import record_run
from realtalk_cli.tasks.runs.results import final_rows, write_reports

BATCH_FILES = [*PROBE_FILES, "batch.json"]


def custom_id(chat: str, qa_index: int) -> str:
    return f"{chat}#{qa_index}"


def _row_id(row: dict) -> str:
    return custom_id(row["chat"], row["qa_index"])


def run_probe_batch(files: list[Path], opts: ProbeOptions) -> tuple[dict | None, str]:
    """(the report, '') when nothing is left to submit; (None, what is pending) while a batch runs."""
    if not probe_protocol(opts.compat).batch:
        raise RealtalkError(f"--batch with --compat {opts.compat}: that protocol runs live only")
    setup = prepare(files, opts, dry_run=False)
    endpoint, judge_endpoint, prices = setup.endpoint, setup.judge_endpoint, setup.prices
    if endpoint.offline:
        raise RealtalkError(f"--batch needs an API endpoint; {endpoint.label} answers at once without one")
    with run_folder(opts.out, setup.identity, BATCH_FILES, opts.force):
        setup.spending.start()
        mark_unfinished(opts.out)
        cache = None
        try:
            items = {custom_id(it.chat.name, it.qa_index): it for it in setup.items()}  # a memory may write here
            folder = batch.BatchFolder(opts.out)
            record_run(folder, "probe", setup.files, opts)
            cache = open_cache(opts.use_cache)
            client = LLMClient(endpoint, cache=cache, prices=prices, timeout_s=opts.timeout)
            judge = None
            if judge_endpoint:
                judge_cache = cache if setup.judge.cached else None
                judge = LLMClient(judge_endpoint, cache=judge_cache, prices=prices, timeout_s=opts.timeout)
            return _advance(folder, setup, items, client, judge)
        finally:
            if cache is not None:
                cache.close()
            setup.spending.finish()


def _advance(folder, setup: ProbeSetup, items, client, judge) -> tuple[dict | None, str]:
    opts, protocol, verdicts, spending = setup.opts, setup.protocol, setup.judge, setup.spending
    pred_path = setup.predictions
    rows = {_row_id(r): r for r in final_rows(read_jsonl(pred_path), row_key)}
    judge_hash = verdicts.prompt_hash
    answer_tokens = protocol.answer_params.get("max_tokens") or PRICED_ANSWER_TOKENS
    failed_now: set[str] = set()  # failed in a batch collected now: sent again by the next invocation, not this one

    def readable(_cid: str, text: str) -> bool:
        return verdicts.settled(text)

    def answered(results: dict[str, Completion], batch_id: str | None, sent: bool = True) -> None:
        if not results:
            return
        if sent:  # what the batch (or the cache) answered, in the spending record before the rows are written
            spending.record("answer", results.values(), batch=batch_id)
        for cid, c in results.items():
            old = rows.get(cid)
            if cid not in items or (c.error is not None and old is not None and old.get("error") is None):
                continue  # a failure never replaces an answer
            row = prediction_row(items[cid], c, client.endpoint.label, setup.protocol)
            if batch_id:
                row["batch_id"] = batch_id
            if c.error is not None:
                failed_now.add(cid)
            rows[cid] = row
        write_jsonl(pred_path, list(rows.values()))

    def judged(results: dict[str, Completion], batch_id: str | None) -> None:
        if not results:
            return
        spending.record("judge", results.values(), batch=batch_id)
        for cid, c in results.items():
            row = rows.get(cid)
            if row is None or row.get("error") is not None:
                continue
            if (c.error or "").startswith(batch.EXPIRED):
                failed_now.add(cid)  # never judged: asked again next time
                continue
            score = verdicts.parse(c.text) if c.error is None else None
            record_verdict(row, score, c, c.usage.cost_usd, judge, judge_hash, verdicts.name)
            if c.error is not None or score is None:
                failed_now.add(cid)
            if batch_id:
                row["judge_batch_id"] = batch_id
        write_jsonl(pred_path, list(rows.values()))

    for stage, owner, take, accept in (("answer", client, answered, None), ("judge", judge, judged, readable)):
        job = folder.open_job(stage)
        if job is None or owner is None:
            continue
        if job.get("model", owner.endpoint.label) != owner.endpoint.label:  # its verdicts are that model's
            raise RealtalkError(
                f"the pending {stage} batch {job['id'] or '(being created)'} was sent to {job['model']}, not "
                f"{owner.endpoint.label}: run again with that {'judge ' if stage == 'judge' else ''}model to collect it"
            )
        status = batch.poll(owner, folder, job)
        if status not in batch.ENDED:
            return None, batch.pending_message(job)
        take(batch.collect(owner, folder, job, accept), job["id"])
        batch.mark_collected(folder, job)  # only now: the rows are written

    # questions whose recall outlived --memory-timeout are error rows, never sent (asked again next time)
    unasked = {cid: Completion("", Usage(), it.error) for cid, it in items.items() if it.error is not None}
    answered(unasked, None, sent=False)
    stopped = False
    todo = [
        (cid, it.messages)
        for cid, it in items.items()
        if cid not in failed_now and (cid not in rows or rows[cid].get("error") is not None)
    ]
    if todo:
        hits, rest = batch.split_cached(client, todo, protocol.answer_params)
        answered(hits, None)
        rest, stopped = batch.within_budget(client, rest, answer_tokens, opts.max_cost, spending.spent())
        if rest:
            return None, batch.submitted_message(batch.submit(client, folder, "answer", rest, protocol.answer_params))
    if judge is not None and not stopped:
        wanted = [
            r
            for cid, r in rows.items()
            if cid in items
            and cid not in failed_now
            and needs_judging(r, judge.endpoint.label, judge_hash, verdicts.name)
        ]
        requests = [(_row_id(r), verdicts.messages(r)) for r in wanted]
        hits, rest = batch.split_cached(judge, requests, verdicts.batch_params, readable)
        judged(hits, None)
        rest, stopped = batch.within_budget(judge, rest, verdicts.max_tokens, opts.max_cost, spending.spent())
        if rest:
            return None, batch.submitted_message(batch.submit(judge, folder, "judge", rest, verdicts.batch_params))

    final = list(rows.values())
    prompts = {**protocol.prompt_hashes(), **verdicts.prompt_hashes()}
    report = build_report(final, probe_manifest(opts, client.endpoint.label, setup.files, prompts))
    report["manifest"]["batches"] = [
        {k: j.get(k) for k in ("id", "stage", "status", "requests")} | {"batch_ids": j.get("batch_ids") or [j["id"]]}
        for j in folder.jobs
    ]
    report.update(
        probe_completeness(
            final, list(items.values()), judge and judge.endpoint, judge_hash, stopped, judge_name=verdicts.name
        )
    )
    usage = spending.summary()
    report["run"] = {
        **run_times(usage),
        "requests": sum(j.get("requests", 0) for j in folder.jobs if j.get("stage") == "answer"),
        "judge_requests": sum(j.get("requests", 0) for j in folder.jobs if j.get("stage") == "judge"),
        "cached": sum(bool(r.get("cached")) for r in final),
        "cached_tokens": sum(r.get("cached_tokens", 0) for r in final),
        "retries": 0,
        "errors": sum(r.get("error") is not None for r in final),
        "judge_errors": sum(r.get("judge_error") is not None for r in final),
        "stopped_for_max_cost": stopped,
        "dropped_sessions": max((it.dropped_sessions for it in items.values()), default=0),
        "batch": True,
        **request_counts(usage),
    }
    report["usage"] = usage
    if setup.memories is not None:
        report["memory"] = setup.memories.summary()
    if setup.notes:
        report["warnings"] = list(setup.notes)
    write_reports(opts.out, report, report_markdown(report))
    return report, ""
