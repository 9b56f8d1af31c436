"""Judging answered rows with a judge protocol (judges/): which rows still need a verdict, asking (re-asked as
the protocol says) and recording the verdict on the row. A failed or unreadable verdict is a `judge_error` the
next run asks again, never a final null score.
"""

from __future__ import annotations

from realtalk_cli.llm.client import Completion, LLMClient
from realtalk_cli.llm.jobs import StopRun, run_jobs
from realtalk_cli.tasks.probe.protocol import JudgeProtocol


def judge_key(protocol: str, judge_label: str) -> str:
    """How a row's `judges` names a judge: `protocol/model` (`realtalk/openai:gpt-4o-mini`)."""
    return f"{protocol}/{judge_label}" if protocol else judge_label


def record_verdict(
    row: dict, score: float | None, c: Completion, cost: float, client: LLMClient, prompt: str, protocol: str = ""
) -> None:
    """The judge's verdict on a predictions row, under `judges[protocol/model]`; a row's first judge also keeps
    its verdict in the top-level fields (`judge_score`, `judge_error`, `judge_model`...) that scripts read. A
    failed or unreadable verdict is a `judge_error` (asked again by the next run), never a final null score."""
    key = judge_key(protocol, client.endpoint.label)
    error = c.error or (None if score is not None else f"no score in the judge's reply: {c.text[:80]!r}")
    entry = {
        "score": score,
        "error": error,
        "prompt": prompt,
        "prompt_tokens": c.usage.prompt_tokens,
        "completion_tokens": c.usage.completion_tokens,
        "cost_usd": cost,
        **({"tokens_estimated": True} if c.usage.estimated else {}),
    }
    judges = row.get("judges") if isinstance(row.get("judges"), dict) else {}
    row["judges"] = {**judges, key: entry}
    first = row.get("judge_key") or (
        key if row.get("judge_model") in (None, client.endpoint.label) else row.get("judge_model")
    )
    if first != key:  # another judge holds the top-level fields: this one's verdict is under `judges` alone
        return
    row["judge_key"] = key
    row["judge_score"] = score
    row["judge_error"] = error
    row["judge_model"] = client.endpoint.label
    row["judge_prompt"] = prompt
    row["judge_prompt_tokens"] = c.usage.prompt_tokens
    row["judge_completion_tokens"] = c.usage.completion_tokens
    row["judge_cost_usd"] = cost
    if c.usage.estimated:  # a reply without usage: counted with realtalk's tokenizer
        row["judge_tokens_estimated"] = True
    else:
        row.pop("judge_tokens_estimated", None)


MAX_USAGE = 1e15  # tokens or dollars beyond this are a corrupt file, not a run


def judges_problem(row: dict) -> str | None:
    """Why a row's `judges` (each judge's verdict, as `record_verdict` writes it) cannot be read back, or None: an
    object of objects, each score none or a number from 0 to 1 (a boolean counts as one), each cost and token count
    none or a non-negative number."""
    judges = row.get("judges")
    if judges is None:
        return None
    if not isinstance(judges, dict):
        return f"'judges' must be an object (a verdict per judge), got {judges!r:.40}"
    for key, entry in judges.items():
        if not isinstance(entry, dict):
            return f"'judges' entry {key!r:.60} must be an object, got {entry!r:.40}"
        score = entry.get("score")
        if not (_within(score, 1.0) or type(score) is bool):
            return f"'judges' entry {key!r:.60}: 'score' must be a number from 0 to 1, got {score!r:.40}"
        for name in ("cost_usd", "prompt_tokens", "completion_tokens"):
            if not _within(entry.get(name), MAX_USAGE):
                got = entry.get(name)
                return f"'judges' entry {key!r:.60}: '{name}' must be a non-negative number, got {got!r:.40}"
    return None


def _within(value, high: float) -> bool:
    """None, or a number (not a boolean) from 0 to `high`; NaN and infinities are not."""
    t = type(value)
    return value is None or ((t is float or t is int) and 0 <= value <= high)


def verdict(row: dict, judge_label: str, prompt: str, protocol: str = "") -> float | None:
    """This judge's score on the row under this judge prompt (rows of earlier versions: the top-level fields)."""
    entry = (
        (row.get("judges") or {}).get(judge_key(protocol, judge_label)) if isinstance(row.get("judges"), dict) else None
    )
    if isinstance(entry, dict):
        return entry.get("score") if entry.get("prompt") == prompt else None
    if (row.get("judge_model"), row.get("judge_prompt")) == (judge_label, prompt):
        return row.get("judge_score")
    return None


def needs_judging(row: dict, judge_label: str, prompt: str, protocol: str = "") -> bool:
    """An answered row without a score from this judge and this judge prompt."""
    if row.get("error") is not None:
        return False
    return verdict(row, judge_label, prompt, protocol) is None


async def judge_row(client: LLMClient, row: dict, judge: JudgeProtocol, first: Completion | None = None) -> None:
    """Grade one answered row (the client re-asks an unsettled reply, up to the protocol's attempts in all);
    `first` is the reply already received for this row."""
    c = first if first is not None else await client.complete(judge.messages(row), **judge.request)
    score = judge.parse(c.text) if c.error is None else None
    record_verdict(row, score, c, c.usage.cost_usd, client, judge.prompt_hash, judge.name)


def judge_rows(rows, client: LLMClient, judge: JudgeProtocol, progress, over_budget, everything: bool = False) -> bool:
    """Judge every answered row that lacks this judge's score (all answered rows with `everything`);
    True when stopped by the cost limit."""
    wanted = [
        r
        for r in rows
        if r.get("error") is None
        and (everything or needs_judging(r, client.endpoint.label, judge.prompt_hash, judge.name))
    ]
    jobs = [(r, judge.messages(r)) for r in wanted]

    async def judged(row: dict, c: Completion) -> None:
        await judge_row(client, row, judge, first=c)
        if progress:
            progress(row, client.totals)
        if over_budget():
            raise StopRun()

    return run_jobs(client, jobs, judged, **judge.request) if jobs else False
