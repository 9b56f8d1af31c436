"""`probe --batch`: the same run as `probe`, its requests sent as batch jobs (llm/batch.py).

Each invocation does what can be done now and returns: collect an ended answer batch (its rows go to
predictions.jsonl), collect an ended judge batch (its verdicts go on those rows), then submit what is
left: the answers first, the judge requests in a second batch once the answers are in. Cache hits are
answered at once and never sent. When nothing is left the usual reports are written. Items a batch
failed or let expire are sent again by the next invocation, as failed requests of a live run are.
The run record in batch.json (`record_run`, read back by `saved_run`) serves simulate's batch runs too.
"""

from __future__ import annotations

import time
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_jsonl, run_folder, write_jsonl
from realtalk_cli.llm import batch
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, Usage
from realtalk_cli.llm.providers import resolve_model
from realtalk_cli.tasks.probe import memory_runner
from realtalk_cli.tasks.probe_judge import (
    JUDGE_MAX_TOKENS,
    judge_messages,
    judge_prompt_hash,
    needs_judging,
    parse_judge_score,
    record_verdict,
)
from realtalk_cli.tasks.probe_options import (
    ANSWER_MAX_TOKENS,
    PROBE_FILES,
    ProbeOptions,
    probe_identity,
    probe_manifest,
)
from realtalk_cli.tasks.probe_prompts import Templates, build_items
from realtalk_cli.tasks.probe_report import build_report, report_markdown
from realtalk_cli.tasks.probe_rows import prediction_row, probe_completeness, row_key
from realtalk_cli.tasks.runs import final_rows, load_prices, write_reports

ANSWER_PARAMS = {"temperature": 0.0, "max_tokens": ANSWER_MAX_TOKENS}  # as a live run sends (same cache keys)
JUDGE_PARAMS = {"temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS}
BATCH_FILES = [*PROBE_FILES, "batch.json"]


def custom_id(chat: str, qa_index: int) -> str:
    return f"{chat}#{qa_index}"


def _row_id(row: dict) -> str:
    return custom_id(row["chat"], row["qa_index"])


def record_run(folder: batch.BatchFolder, task: str, files: list[Path], opts) -> None:
    """What `saved_run` reads back: the task, its chats and its options but the run folder and --force. The
    chats as absolute paths, so that `batch status RUN` goes on from any directory (the run's identity names
    them by file name: this changes no identity)."""
    options = {k: v for k, v in asdict(opts).items() if k not in ("out", "force")}
    folder.state["run"] = {"task": task, "chats": [str(p.resolve()) for p in files], "options": options}
    folder.save()


def saved_run(run_dir: Path) -> tuple[str, list[Path], object]:
    """(task, chats, options) a batch run was started with (for `realtalk batch status RUN`)."""
    folder = batch.BatchFolder(run_dir)
    run = folder.state.get("run")
    if not folder.path.exists() or not isinstance(run, dict) or not isinstance(run.get("options"), dict):
        raise RealtalkError(f"{run_dir}: no batch run here (no {folder.path.name})")
    options = {**run["options"], "out": run_dir, "force": False}
    chats = run.get("chats")
    if not isinstance(chats, list) or not all(isinstance(p, str) for p in chats):
        raise RealtalkError(f"{folder.path}: run.chats is not a list of chat paths")
    task = "simulate" if run.get("task") == "simulate" else "probe"
    if task == "simulate":
        from realtalk_cli.tasks.simulate import SimulateOptions as Options
    else:
        Options = ProbeOptions
    try:
        opts = Options(**options)
    except TypeError as e:  # an option renamed or dropped since, or a damaged record
        raise RealtalkError(f"{folder.path}: run.options do not fit this version of realtalk ({e})") from None
    for f in fields(Options):
        value, default = options.get(f.name), f.default
        expected = str if f.name == "model" else type(default) if default not in (MISSING, None) else None
        if (
            expected is not None
            and value is not None
            and not isinstance(value, (expected, int if expected is float else expected))
        ):
            raise RealtalkError(f"{folder.path}: run.options.{f.name} = {value!r} is not of type {expected.__name__}")
    return task, [_saved_chat(Path(p), run_dir, folder.path) for p in chats], opts


def _saved_chat(path: Path, run_dir: Path, record: Path) -> Path:
    """A chat of the run record. Runs of earlier versions saved it as typed, relative to the directory the run
    was started in, which they do not name: that is the current one, or one above the run folder (runs/b
    started from the project folder). The run's identity pins each chat's sha256, so another file of the same
    name is refused as another run's, never scored."""
    if path.is_absolute() or path.exists():
        return path
    for base in run_dir.resolve().parents:
        if (base / path).exists():
            return base / path
    raise RealtalkError(
        f"{record}: chat {path} is not found from here nor from a folder above the run; run `realtalk batch "
        "status` from the directory the run was started in (it then records the chat's absolute path)"
    )


def run_probe_batch(files: list[Path], opts: ProbeOptions) -> tuple[dict | None, str]:
    """(the report, '') when nothing is left to submit; (None, what is pending) while a batch runs."""
    if opts.compat:
        raise RealtalkError(f"--batch with --compat {opts.compat}: the paper's protocol runs live only")
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    if endpoint.offline:
        raise RealtalkError(f"--batch needs an API endpoint; {endpoint.label} answers at once without one")
    judge_endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env) if opts.judge_model else None
    templates = Templates.load()
    called = [endpoint, *([judge_endpoint] if judge_endpoint else [])]
    prices = load_prices(called, opts.max_cost, opts.price_in, opts.price_out)
    memories = memory_runner(opts, endpoint, prices, dry_run=False)
    identity = probe_identity(opts, endpoint, files, templates, memories)
    with run_folder(opts.out, identity, BATCH_FILES, opts.force):
        built = build_items(files, opts, templates, endpoint.model, memories)  # a memory may write to the folder
        items = {custom_id(it.chat.name, it.qa_index): it for it in built}
        folder = batch.BatchFolder(opts.out)
        record_run(folder, "probe", files, opts)
        cache = open_cache(opts.use_cache)
        client = LLMClient(endpoint, cache=cache, prices=prices, timeout_s=opts.timeout)
        judge = (
            LLMClient(judge_endpoint, cache=cache, prices=prices, timeout_s=opts.timeout) if judge_endpoint else None
        )
        try:
            return _advance(folder, opts, files, items, templates, client, judge, memories)
        finally:
            if cache is not None:
                cache.close()


def _advance(folder, opts, files, items, templates, client, judge, memories=None) -> tuple[dict | None, str]:
    started = time.perf_counter()
    pred_path = opts.out / "predictions.jsonl"
    rows = {_row_id(r): r for r in final_rows(read_jsonl(pred_path), row_key)}
    judge_hash = judge_prompt_hash(templates, False)
    failed_now: set[str] = set()  # failed in a batch collected now: sent again by the next invocation, not this one

    def answered(results: dict[str, Completion], batch_id: str | None) -> None:
        if not results:
            return
        for cid, c in results.items():
            old = rows.get(cid)
            if cid not in items or (c.error is not None and old is not None and old.get("error") is None):
                continue  # a failure never replaces an answer
            row = prediction_row(items[cid], c, client.endpoint.label)
            if batch_id:
                row["batch_id"] = batch_id
            if c.error is not None:
                failed_now.add(cid)
            rows[cid] = row
        write_jsonl(pred_path, list(rows.values()))

    def judged(results: dict[str, Completion], batch_id: str | None) -> None:
        if not results:
            return
        for cid, c in results.items():
            row = rows.get(cid)
            if row is None or row.get("error") is not None:
                continue
            if (c.error or "").startswith(batch.EXPIRED):
                failed_now.add(cid)  # never judged: asked again next time
                continue
            score = parse_judge_score(c.text) if c.error is None else None
            record_verdict(row, score, c, c.usage.cost_usd, judge, judge_hash)
            if c.error is not None or score is None:
                failed_now.add(cid)
            if batch_id:
                row["judge_batch_id"] = batch_id
        write_jsonl(pred_path, list(rows.values()))

    for stage, owner, take in (("answer", client, answered), ("judge", judge, judged)):
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
        take(batch.collect(owner, folder, job), job["id"])

    # questions whose recall outlived --memory-timeout are error rows, never sent (asked again next time)
    answered({cid: Completion("", Usage(), it.error) for cid, it in items.items() if it.error is not None}, None)
    stopped = False
    todo = [
        (cid, it.messages)
        for cid, it in items.items()
        if cid not in failed_now and (cid not in rows or rows[cid].get("error") is not None)
    ]
    if todo:
        hits, rest = batch.split_cached(client, todo, ANSWER_PARAMS)
        answered(hits, None)
        rest, stopped = batch.within_budget(client, rest, ANSWER_MAX_TOKENS, opts.max_cost, _spent(rows))
        if rest:
            return None, batch.submitted_message(batch.submit(client, folder, "answer", rest, ANSWER_PARAMS))
    if judge is not None and not stopped:
        wanted = [
            r
            for cid, r in rows.items()
            if cid in items and cid not in failed_now and needs_judging(r, judge.endpoint.label, judge_hash)
        ]
        requests = [(_row_id(r), judge_messages(templates.judge, r)) for r in wanted]
        hits, rest = batch.split_cached(judge, requests, JUDGE_PARAMS)
        judged(hits, None)
        rest, stopped = batch.within_budget(judge, rest, JUDGE_MAX_TOKENS, opts.max_cost, _spent(rows))
        if rest:
            return None, batch.submitted_message(batch.submit(judge, folder, "judge", rest, JUDGE_PARAMS))

    final = list(rows.values())
    report = build_report(final, probe_manifest(opts, client.endpoint.label, files, templates.hashes()))
    report["manifest"]["batches"] = [{k: j.get(k) for k in ("id", "stage", "status", "requests")} for j in folder.jobs]
    report.update(probe_completeness(final, list(items.values()), judge and judge.endpoint, judge_hash, stopped))
    report["run"] = {
        "wall_time_s": round(time.perf_counter() - started, 3),
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
    }
    if memories is not None:
        report["memory"] = memories.summary()
    write_reports(opts.out, report, report_markdown(report))
    return report, ""


def _spent(rows: dict[str, dict]) -> float:
    return sum(r.get("cost_usd", 0.0) + (r.get("judge_cost_usd") or 0.0) for r in rows.values())
