"""Batch jobs: requests sent as one OpenAI-compatible batch (/v1/files + /v1/batches) instead of one by one.

The provider runs a batch on its own fleet within a day, at about half price. A run submits and returns
at once, the job saved in the run folder (`batch.json`, and the request file `batch-<stage>-<n>.jsonl`);
the next invocation polls it and, once it has ended, downloads its output and error files. Every result
line is checked like a live reply (`parse_reply`): a malformed one is an error for that item. A cache
hit never goes into a batch, and batch answers go into the response cache. An item the batch did not
answer (failed, expired, cancelled) comes back as an error, to be sent again by the next invocation.

Submission is idempotent: the job is saved with a client key (sent as the batch's metadata) and the uploaded
file's id *before* the batch is created, and the create is never retried blindly: a create whose reply was
lost is looked up by that key and adopted. Every batch created under the key is recorded in the job; one
beyond the first (a stray) is cancelled. A job is marked collected only once its caller has written the
results (`mark_collected`): a failure in between collects it again.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_regular, write_atomic
from realtalk_cli.llm.client import Completion, LLMClient, Usage, openai_sdk
from realtalk_cli.llm.replies import BadReply, parse_reply
from realtalk_cli.llm.tokens import count_message_tokens

ENDED = ("completed", "failed", "expired", "cancelled", "not found")  # not found: the provider no longer has it
EXPIRED = "not answered by the batch"  # the start of the error of an item a batch ended without
CREATE_ATTEMPTS = 3  # creates whose reply was lost and whose batch cannot be found by its key
Accept = Callable[[str, str], bool]  # (custom_id, reply text) -> whether the caller can use the reply


class BatchFolder:
    """The batch jobs of one run folder: what was submitted, in which stage, and whether it was collected."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / "batch.json"
        self.state: dict = {"jobs": []}
        if self.path.exists():
            try:
                self.state = json.loads(read_regular(self.path).decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RealtalkError(f"{self.path}: not valid JSON (a batch job record)") from None
            if not isinstance(self.state, dict) or not isinstance(self.state.get("jobs"), list):
                raise RealtalkError(f"{self.path}: not a batch job record (no `jobs` list)")
            for n, job in enumerate(self.state["jobs"], start=1):
                fields = ("id", "stage", "input_file", "status")
                if not isinstance(job, dict) or not all(isinstance(job.get(k), str) for k in fields):
                    raise RealtalkError(f"{self.path}: job {n} lacks its id, stage, input_file or status")
                if not isinstance(job.get("params"), dict) or not isinstance(job.get("requests"), int):
                    raise RealtalkError(f"{self.path}: job {n} lacks its params or request count")
                for key in ("batch_ids", "strays"):
                    ids = job.get(key, [])
                    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                        raise RealtalkError(f"{self.path}: job {n}: {key} is not a list of batch ids")
                if not isinstance(job.get("client_key", ""), str):
                    raise RealtalkError(f"{self.path}: job {n}: client_key is not text")

    @property
    def jobs(self) -> list[dict]:
        return self.state["jobs"]

    def open_job(self, stage: str) -> dict | None:
        """The job of this stage submitted and not yet collected."""
        return next((j for j in self.jobs if j.get("stage") == stage and not j.get("collected")), None)

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.state, indent=2))


def split_cached(
    client: LLMClient, requests: list[tuple[str, list[dict]]], params: dict, accept: Accept | None = None
) -> tuple[dict[str, Completion], list[tuple[str, list[dict]]]]:
    """(answers from the response cache, requests still to send); a cached reply `accept` rejects is sent again."""
    hits, rest = {}, []
    for custom_id, messages in requests:
        hit = client.cached(messages, params)
        if hit is not None and (accept is None or accept(custom_id, hit.text)):
            hits[custom_id] = hit
        else:
            rest.append((custom_id, messages))
    return hits, rest


def _api_error(client: LLMClient, action: str, e: Exception) -> RealtalkError:
    status = getattr(e, "status_code", None)
    detail = f"HTTP {status}" if status else type(e).__name__
    hint = " (does this endpoint offer batch jobs?)" if status in (404, 405, 501) else ""
    return RealtalkError(f"{client.endpoint.label}: {action} failed: {detail}{hint}: {client._redact(str(e))[:200]}")


def submit(
    client: LLMClient, folder: BatchFolder, stage: str, requests: list[tuple[str, list[dict]]], params: dict
) -> dict:
    """Write the requests as a JSONL batch file, upload it, create the batch; the job is saved in the folder."""
    openai = openai_sdk()

    number = sum(1 for j in folder.jobs if j.get("stage") == stage) + 1
    input_path = folder.run_dir / f"batch-{stage}-{number}.jsonl"
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": client.endpoint.model, "messages": messages, **params},
        }
        for custom_id, messages in requests
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    write_atomic(input_path, data)
    sdk = client.batch_sdk()
    job = {
        "id": "",  # until the batch is created: an interrupted run finds it by its client key (poll)
        "stage": stage,
        "model": client.endpoint.label,
        "input_file": input_path.name,
        "requests": len(lines),
        "params": params,
        "status": "creating",
        "collected": False,
        "client_key": f"realtalk-{uuid.uuid4().hex}",
        "batch_ids": [],  # every batch created under the client key
    }
    try:
        uploaded = sdk.files.create(file=(input_path.name, data), purpose="batch")
        job["input_file_id"] = uploaded.id
        folder.jobs.append(job)
        folder.save()  # the key and file id, before anything is created
        batch, retried = _create(sdk, job)
        if retried:
            job["check_strays"] = True  # a create may have gone through unseen: the next poll looks
    except openai.APIError as e:
        if job in folder.jobs and isinstance(e, openai.APIStatusError) and e.status_code < 500:
            folder.jobs.remove(job)  # refused: no batch was created
            folder.save()
        raise _api_error(client, f"submitting the {stage} batch", e) from None
    finally:
        sdk.close()
    job.update(id=batch.id, status=batch.status, submitted_at=round(time.time(), 3))
    _adopt(job, [batch.id])
    folder.save()
    return job


def _create(sdk, job: dict) -> tuple[object, bool]:
    """(the job's batch, created once; whether the create was sent more than once). The SDK's own retries are
    off for this call (a create whose reply was lost, retried, is a second batch billed): after a failure that
    may have created it, the batch is looked up by the job's client key before another create is sent."""
    openai = openai_sdk()
    create = sdk.with_options(max_retries=0).batches.create
    for attempt in range(CREATE_ATTEMPTS):
        try:
            batch = create(
                input_file_id=job["input_file_id"],
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"realtalk_stage": job["stage"], "realtalk_key": job["client_key"]},
            )
            return batch, attempt > 0
        except (openai.APIConnectionError, openai.InternalServerError) as e:  # created or not: unknown
            found = _with_key(sdk, job)
            if found:
                return found[0], True
            if attempt + 1 == CREATE_ATTEMPTS:
                raise e from None
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _with_key(sdk, job: dict) -> list:
    """The batches created for this job, oldest first: those with its client key (a job of an earlier version,
    without one: those over its input file)."""
    if not job.get("client_key") and not job.get("input_file_id"):
        return []
    found = []
    for batch in itertools.islice(sdk.batches.list(limit=100), 1000):  # newest first
        key = (getattr(batch, "metadata", None) or {}).get("realtalk_key")
        if (key == job["client_key"]) if job.get("client_key") else batch.input_file_id == job.get("input_file_id"):
            found.append(batch)
    return sorted(reversed(found), key=lambda b: b.created_at or 0)


def _adopt(job: dict, ids: list[str]) -> None:
    job["batch_ids"] = list(dict.fromkeys([*job.get("batch_ids", []), *ids]))


def poll(client: LLMClient, folder: BatchFolder, job: dict) -> str:
    """The batch's status now (saved with its request counts). A job without its batch id (an interrupted
    submit), or whose create was sent more than once, is first reconciled with the provider's batches by its
    client key."""
    openai = openai_sdk()

    sdk = client.batch_sdk()
    try:
        batch = _reconcile(sdk, job) if not job["id"] or job.get("check_strays") else None
        if batch is None and job["id"]:
            batch = sdk.batches.retrieve(job["id"])
        if batch is None:
            raise LookupError
    except (openai.NotFoundError, LookupError):  # deleted on the provider's side: its requests are sent again
        job["status"] = "not found"
        folder.save()
        return job["status"]
    except openai.APIError as e:
        raise _api_error(client, f"asking for batch {job['id']}", e) from None
    finally:
        sdk.close()
    job["status"] = str(batch.status)
    job["output_file_id"] = batch.output_file_id
    job["error_file_id"] = batch.error_file_id
    counts = batch.request_counts
    if counts is not None:
        job["counts"] = {"total": counts.total, "completed": counts.completed, "failed": counts.failed}
    folder.save()
    return job["status"]


def _reconcile(sdk, job: dict):
    """The provider's batches under the job's client key: the job adopts its own (the oldest, when it has no id
    yet: a run interrupted before it saved the id, or a create whose reply was lost); every one is recorded in
    `batch_ids`, and the others (strays, billed for nothing) are cancelled and listed in `strays`."""
    openai = openai_sdk()
    found = _with_key(sdk, job)
    job.pop("check_strays", None)
    if not found:
        return None
    job["id"] = job["id"] or found[0].id
    _adopt(job, [b.id for b in found])
    strays = job.setdefault("strays", [])
    for stray in (b for b in found if b.id != job["id"] and b.id not in strays):
        if str(stray.status) not in ENDED:
            try:
                sdk.batches.cancel(stray.id)
            except openai.APIStatusError:  # ended meanwhile: nothing more to stop
                pass
        strays.append(stray.id)
    return next((b for b in found if b.id == job["id"]), None)


def collect(client: LLMClient, folder: BatchFolder, job: dict, accept: Accept | None = None) -> dict[str, Completion]:
    """Every request of an ended batch, answered or with its error; answers go into the response cache. The job
    is not marked collected here: the caller does (`mark_collected`) once it has written the results.

    `accept(custom_id, text)` False makes a reply the caller cannot read a bad reply (an error, never cached,
    asked again), billed all the same."""
    openai = openai_sdk()

    submitted = _submitted(folder, job)
    sdk = client.batch_sdk()
    lines: list[bytes] = []
    try:
        for key in ("output_file_id", "error_file_id"):
            try:
                if job.get(key):
                    lines += sdk.files.content(job[key]).read().splitlines()
            except openai.NotFoundError:  # past the provider's retention: its requests are sent again
                continue
    except openai.APIError as e:
        raise _api_error(client, f"downloading the results of batch {job['id']}", e) from None
    finally:
        sdk.close()
    results: dict[str, Completion] = {}
    for line in lines:
        try:
            record = orjson.loads(line)
            custom_id = record["custom_id"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            continue  # a line that names no request answers none
        if isinstance(custom_id, str) and custom_id in submitted and custom_id not in results:
            results[custom_id] = _result(client, record, job, submitted[custom_id])
    for custom_id, messages in submitted.items():
        c = results.get(custom_id)
        if c is None:
            results[custom_id] = Completion("", Usage(), f"{EXPIRED} (batch {job['id']} {job['status']})")
        elif c.error is None and accept is not None and not accept(custom_id, c.text):
            results[custom_id] = Completion("", c.usage, f"bad reply: unreadable for the caller: {c.text[:80]!r}")
        else:
            client.remember(messages, job["params"], c)
    return results


def mark_collected(folder: BatchFolder, job: dict) -> None:
    """The job's results are written (durably): it is never collected again."""
    job["collected"] = True
    folder.save()


def _submitted(folder: BatchFolder, job: dict) -> dict[str, list[dict]]:
    path = folder.run_dir / job["input_file"]
    try:
        return {r["custom_id"]: r["body"]["messages"] for r in map(orjson.loads, read_regular(path).splitlines())}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        raise RealtalkError(f"{path}: the request file of batch {job['id']} is missing or damaged") from None


def _result(client: LLMClient, record: dict, job: dict, messages: list[dict]) -> Completion:
    response, error = record.get("response"), record.get("error")
    if isinstance(error, dict) and error:
        code = error.get("code") or "error"
        if code == "batch_expired":
            return Completion("", Usage(), f"{EXPIRED} (batch {job['id']}: expired)")
        return Completion("", Usage(), f"batch item {code}: {client._redact(str(error.get('message', '')))[:200]}")
    if not isinstance(response, dict):
        return Completion("", Usage(), "bad reply: batch line without a response")
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message", "") if isinstance(error, dict) else error or ""
        return Completion("", Usage(), f"HTTP {status}: {client._redact(str(message))[:200]}")
    try:
        reply = parse_reply(orjson.dumps(body), [client._api_key])
    except BadReply as e:
        return Completion("", Usage(), f"bad reply: {client._redact(str(e))}")
    usage = Usage()
    client.bill(usage, reply, messages, batch=True)
    return Completion(reply.text, usage)


def step(
    client: LLMClient,
    folder: BatchFolder,
    stage: str,
    requests: list[tuple[str, list[dict]]],
    params: dict,
    record: Callable[[dict[str, Completion], str | None], None],
    max_cost: float | None = None,
    spent: float = 0.0,
    accept: Accept | None = None,
) -> tuple[str | None, bool]:
    """One invocation's share of a one-stage batch run: (what is pending or None, whether --max-cost held
    requests back). Results are handed to `record(results, batch_id)`, which writes them.

    An ended job of this stage is collected (its failed items are left to the next invocation) and marked
    collected once recorded; a running one is reported pending; otherwise cache hits are recorded at once and
    the rest is submitted, as much as fits under --max-cost (`spent`: what the run folder spent so far).
    """
    job = folder.open_job(stage)
    if job is not None:
        status = poll(client, folder, job)
        if status not in ENDED:
            return pending_message(job), False
        record(collect(client, folder, job, accept), job["id"])
        mark_collected(folder, job)
        return None, False
    hits, rest = split_cached(client, requests, params, accept)
    record(hits, None)
    rest, stopped = within_budget(client, rest, params.get("max_tokens") or 0, max_cost, spent)
    if not rest:
        return None, stopped
    return submitted_message(submit(client, folder, stage, rest, params)), stopped


def pending_message(job: dict) -> str:
    counts = job.get("counts") or {}
    done = f", {counts.get('completed', 0)}/{counts.get('total', job['requests'])} done" if counts else ""
    return f"{job['stage']} batch {job['id']} is {job['status']}{done}; run the same command again to collect it"


def submitted_message(job: dict) -> str:
    return (
        f"submitted {job['stage']} batch {job['id']} ({job['requests']} requests); "
        "run the same command again (or `realtalk batch status RUN`) to collect it"
    )


def within_budget(
    client: LLMClient, requests: list, max_tokens: int, max_cost: float | None, spent: float
) -> tuple[list, bool]:
    """The requests that fit under --max-cost at batch prices, each counted at its full `max_tokens` reply."""
    if max_cost is None:
        return requests, False
    kept, total = [], spent
    for request in requests:
        prompt_tokens, _ = count_message_tokens(request[1], client.endpoint.model)
        total += client.prices.cost(client.endpoint.model, prompt_tokens, max_tokens, batch=True)
        if total > max_cost:
            return kept, True
        kept.append(request)
    return kept, False
