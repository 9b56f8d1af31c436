"""realtalk's judge: the editable prompt `configs/prompts/probe_judge.txt`, a score in [0, 1] read tolerantly
(code fences, trailing commas, prose around the JSON); a reply without one is asked once more (two replies at
most per item and invocation), never cached. LoCoMo's adversarial items are judged against "not mentioned",
their right answer.
"""

from __future__ import annotations

import json
import re

from realtalk_cli.tasks.probe.items import NOT_MENTIONED
from realtalk_cli.tasks.probe.protocol import JudgeProtocol
from realtalk_cli.tasks.prompts import fill, prompt_text, text_hash

JUDGE_MAX_TOKENS = 200


def parse_judge_score(text: str) -> float | None:
    """A score in [0, 1] from the judge's reply, tolerating code fences, trailing commas and prose. A score off
    the scale (7, -1, NaN, Infinity, true) is no score: the judge erred, and is asked again, never clamped."""
    match = re.search(r"\{.*\}", text, re.S)
    if match:
        blob = re.sub(r",\s*([}\]])", r"\1", match.group(0))
        try:
            value = json.loads(blob).get("score")
        except (json.JSONDecodeError, AttributeError):
            value = None
        else:
            if isinstance(value, (int, float)):
                return on_scale(value)
        number = re.search(r'"?score"?\s*[:=]\s*(-?\d+(?:\.\d+)?)(?![\d.eE])', match.group(0))
        if number:
            return on_scale(float(number.group(1)))
    number = re.fullmatch(r"\s*([01](?:\.\d+)?)\s*", text)
    return on_scale(float(number.group(1))) if number else None


def on_scale(value: object) -> float | None:
    """A judge's score as a float when it is a number in [0, 1] (a bool is no number; NaN is on no scale)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None
    return float(value)


def judge_gold(row: dict) -> str:
    """What the judge compares against: for LoCoMo's adversarial items the right answer is 'not mentioned'."""
    return NOT_MENTIONED if "adversarial_answer" in row else row["answer"]


class RealtalkJudge(JudgeProtocol):
    name = "realtalk"
    # A verdict without a readable score is a bad reply: asked once more, never cached, a judge_error in the end.
    params = {"max_tokens": JUDGE_MAX_TOKENS}
    attempts = 2
    batch_params = {"temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS}  # as a live request sends (same cache keys)
    max_tokens = JUDGE_MAX_TOKENS

    def __init__(self) -> None:
        self.template = prompt_text("probe_judge.txt")

    def prompt_hashes(self) -> dict[str, str]:
        return {"probe_judge.txt": text_hash(self.template)}

    def messages(self, row: dict) -> list[dict]:
        prompt = fill(self.template, question=row["question"], gold=judge_gold(row), prediction=row["prediction"])
        return [{"role": "user", "content": prompt}]

    def parse(self, text: str) -> float | None:
        return parse_judge_score(text)
