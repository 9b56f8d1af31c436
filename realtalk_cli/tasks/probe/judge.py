"""Judging answered rows with a judge protocol (judges/): which rows still need a verdict, asking (re-asked as
the protocol says) and recording the verdict on the row. A failed or unreadable verdict is a `judge_error` the
next run asks again, never a final null score.
"""

from __future__ import annotations

from realtalk_cli.llm.client import Completion, LLMClient
from realtalk_cli.llm.jobs import StopRun, run_jobs
from realtalk_cli.tasks.probe.protocol import JudgeProtocol


def record_verdict(row: dict, score: float | None, c: Completion, cost: float, client: LLMClient, prompt: str) -> None:
    """The judge's score, usage and model on a predictions row; a failed or unreadable verdict is a
    `judge_error` (asked again by the next run), never a final null score."""
    row["judge_score"] = score
    row["judge_error"] = c.error or (None if score is not None else f"no score in the judge's reply: {c.text[:80]!r}")
    row["judge_model"] = client.endpoint.label
    row["judge_prompt"] = prompt
    row["judge_prompt_tokens"] = c.usage.prompt_tokens
    row["judge_completion_tokens"] = c.usage.completion_tokens
    row["judge_cost_usd"] = cost
    if c.usage.estimated:  # a reply without usage: counted with realtalk's tokenizer
        row["judge_tokens_estimated"] = True
    else:
        row.pop("judge_tokens_estimated", None)


def needs_judging(row: dict, judge_label: str, prompt: str) -> bool:
    """An answered row without a score from this judge and this judge prompt."""
    if row.get("error") is not None:
        return False
    judged_by = (row.get("judge_model"), row.get("judge_prompt"))
    return row.get("judge_score") is None or judged_by != (judge_label, prompt)


async def judge_row(client: LLMClient, row: dict, judge: JudgeProtocol, first: Completion | None = None) -> None:
    """Grade one answered row (the client re-asks an unsettled reply, up to the protocol's attempts in all);
    `first` is the reply already received for this row."""
    c = first if first is not None else await client.complete(judge.messages(row), **judge.request)
    score = judge.parse(c.text) if c.error is None else None
    record_verdict(row, score, c, c.usage.cost_usd, client, judge.prompt_hash)


def judge_rows(rows, client: LLMClient, judge: JudgeProtocol, progress, over_budget, everything: bool = False) -> bool:
    """Judge every answered row that lacks this judge's score (all answered rows with `everything`);
    True when stopped by the cost limit."""
    wanted = [
        r
        for r in rows
        if r.get("error") is None and (everything or needs_judging(r, client.endpoint.label, judge.prompt_hash))
    ]
    jobs = [(r, judge.messages(r)) for r in wanted]

    async def judged(row: dict, c: Completion) -> None:
        await judge_row(client, row, judge, first=c)
        if progress:
            progress(row, client.totals)
        if over_budget():
            raise StopRun()

    return run_jobs(client, jobs, judged, **judge.request) if jobs else False
