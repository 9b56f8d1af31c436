"""The LLM judge of memory probing: prompts (ours or the paper's), tolerant verdict parsing, and which
answered rows still need a verdict. A failed or unreadable verdict is a `judge_error` the next run asks again.
"""

from __future__ import annotations

import json
import re

from realtalk_cli.llm.client import Completion, LLMClient
from realtalk_cli.llm.jobs import StopRun, run_jobs
from realtalk_cli.llm.replies import is_json
from realtalk_cli.tasks import paper_protocol
from realtalk_cli.tasks.probe_prompts import NOT_MENTIONED, Templates
from realtalk_cli.tasks.runs import fill, text_hash

JUDGE_MAX_TOKENS = 200
# The paper's requests carry no sampling parameters; its judge asks for JSON and nothing else.
PAPER_ANSWER = {"temperature": None, "max_tokens": None}
PAPER_JUDGE = {**PAPER_ANSWER, "response_format": {"type": "json_object"}}


def has_score(text: str) -> bool:
    return parse_judge_score(text) is not None


# A verdict without a readable score is a bad reply: asked once more, never cached, a judge_error in the end.
JUDGE_REQUEST = {"max_tokens": JUDGE_MAX_TOKENS, "accept": has_score}


def parse_judge_score(text: str) -> float | None:
    """A score in [0, 1] from the judge's reply, tolerating code fences, trailing commas and prose."""
    match = re.search(r"\{.*\}", text, re.S)
    if match:
        blob = re.sub(r",\s*([}\]])", r"\1", match.group(0))
        try:
            value = json.loads(blob).get("score")
            if isinstance(value, (int, float)):
                return min(1.0, max(0.0, float(value)))
        except (json.JSONDecodeError, AttributeError):
            pass
        number = re.search(r'"?score"?\s*[:=]\s*(\d+(?:\.\d+)?)', match.group(0))
        if number:
            return min(1.0, max(0.0, float(number.group(1))))
    number = re.fullmatch(r"\s*([01](?:\.\d+)?)\s*", text)
    return float(number.group(1)) if number else None


def judge_gold(row: dict) -> str:
    """What the judge compares against: for LoCoMo's adversarial items the right answer is 'not mentioned'."""
    return NOT_MENTIONED if "adversarial_answer" in row else row["answer"]


def judge_messages(template: str, row: dict) -> list[dict]:
    prompt = fill(template, question=row["question"], gold=judge_gold(row), prediction=row["prediction"])
    return [{"role": "user", "content": prompt}]


def record_verdict(row: dict, score: float | None, c: Completion, cost: float, judge: LLMClient, prompt: str) -> None:
    """The judge's score, usage and model on a predictions row; a failed or unreadable verdict is a
    `judge_error` (asked again by the next run), never a final null score."""
    row["judge_score"] = score
    row["judge_error"] = c.error or (None if score is not None else f"no score in the judge's reply: {c.text[:80]!r}")
    row["judge_model"] = judge.endpoint.label
    row["judge_prompt"] = prompt
    row["judge_prompt_tokens"] = c.usage.prompt_tokens
    row["judge_completion_tokens"] = c.usage.completion_tokens
    row["judge_cost_usd"] = cost


def needs_judging(row: dict, judge_label: str, prompt: str) -> bool:
    """An answered row without a score from this judge and this judge prompt."""
    if row.get("error") is not None:
        return False
    judged_by = (row.get("judge_model"), row.get("judge_prompt"))
    return row.get("judge_score") is None or judged_by != (judge_label, prompt)


def judge_prompt_hash(templates: Templates, paper: bool) -> str:
    return paper_protocol.prompt_hashes()["paper:judge"] if paper else text_hash(templates.judge)


async def judge_row(judge: LLMClient, row: dict, template: str, paper: bool, first: Completion | None = None) -> None:
    """Grade one answered row: our judge prompt, or the paper's (JSON mode, re-asked on invalid JSON)."""
    prompt = text_hash(template) if not paper else paper_protocol.prompt_hashes()["paper:judge"]
    if not paper:
        c = first or await judge.complete(judge_messages(template, row), **JUDGE_REQUEST)
        score = parse_judge_score(c.text) if c.error is None else None
        record_verdict(row, score, c, c.usage.cost_usd, judge, prompt)
        return
    cost = 0.0
    for attempt in range(paper_protocol.JUDGE_ATTEMPTS):
        c = (
            first
            if attempt == 0 and first is not None
            else await judge.complete(paper_judge_messages(row), **PAPER_JUDGE)
        )
        cost += c.usage.cost_usd
        if c.error is None and is_json(c.text):
            break
    score = paper_protocol.parse_judge(c.text) if c.error is None else None
    record_verdict(row, score, c, cost, judge, prompt)


def paper_judge_messages(row: dict) -> list[dict]:
    content = paper_protocol.judge_prompt(row["question"], row.get("answer", ""), row["prediction"])
    return [{"role": "user", "content": content}]


def judge_rows(rows, judge, template, paper, progress, over_budget, everything: bool = False) -> bool:
    """Judge every answered row that lacks this judge's score (all answered rows with `everything`);
    True when stopped by the cost limit."""
    prompt = paper_protocol.prompt_hashes()["paper:judge"] if paper else text_hash(template)
    wanted = [
        r for r in rows if r.get("error") is None and (everything or needs_judging(r, judge.endpoint.label, prompt))
    ]
    jobs = [(r, paper_judge_messages(r) if paper else judge_messages(template, r)) for r in wanted]

    async def judged(row: dict, c: Completion) -> None:
        await judge_row(judge, row, template, paper, first=c)
        if progress:
            progress(row, judge.totals)
        if over_budget():
            raise StopRun()

    request = PAPER_JUDGE if paper else JUDGE_REQUEST
    return run_jobs(judge, jobs, judged, **request) if jobs else False
