"""mem0's judge "J" (mem0ai/mem0 aae5989 `evaluation/metrics/llm_judge.py`), byte for byte: `ACCURACY_PROMPT`
filled with the question, the gold (`str(answer)`, no `;`-cut) and the answer, one user message in JSON mode at
temperature 0, asked once; the reply's fenced block (if any) read as JSON; score 1 iff `label` is exactly
`"CORRECT"`, else 0. Where mem0 aborts the whole evaluation (invalid JSON, no `label`), the item has no score
(a judge error, asked again by the next run). mem0 never judges LoCoMo's category 5 (its protocol does not
ask those questions).
"""

from __future__ import annotations

import json
import re

from realtalk_cli.tasks.probe.protocol import JudgeProtocol
from realtalk_cli.tasks.prompts import text_hash

ACCURACY_PROMPT = (
    "\nYour task is to label an answer to a question as \u2019CORRECT\u2019 or \u2019WRONG\u2019. You will be given "
    "the following data:\n    (1) a question (posed by one user to another user), \n    (2) a \u2019gold\u2019 "
    "(ground truth) answer, \n    (3) a generated answer\nwhich you will score as CORRECT/WRONG.\n\nThe point of the "
    "question is to ask about something one user should know about the other user based on their prior "
    "conversations.\nThe gold answer will usually be a concise and short answer that includes the referenced topic, "
    "for example:\nQuestion: Do you remember what I got the last time I went to Hawaii?\nGold answer: A shell "
    "necklace\nThe generated answer might be much longer, but you should be generous with your grading - as long as "
    "it touches on the same topic as the gold answer, it should be counted as CORRECT. \n\nFor time related "
    "questions, the gold answer will be a specific date, month, year, etc. The generated answer might be much "
    'longer or use relative time references (like "last Tuesday" or "next month"), but you should be generous '
    "with your grading - as long as it refers to the same date or time period as the gold answer, it should be "
    'counted as CORRECT. Even if the format differs (e.g., "May 7th" vs "7 May"), consider it CORRECT if it\'s the '
    "same date.\n\nNow it's time for the real question:\nQuestion: {question}\nGold answer: {gold_answer}\n"
    "Generated answer: {generated_answer}\n\nFirst, provide a short (one sentence) explanation of your reasoning, "
    "then finish with CORRECT or WRONG. \nDo NOT include both CORRECT and WRONG in your response, or it will break "
    'the evaluation script.\n\nJust return the label CORRECT or WRONG in a json format with the key as "label".\n'
)
_FIELDS = re.compile(r"\{(question|gold_answer|generated_answer)\}")


def judge_prompt(question: str, gold: str, answer: str) -> str:
    """`ACCURACY_PROMPT.format(...)` in one pass (braces in the values stay as they are)."""
    values = {"question": question, "gold_answer": gold, "generated_answer": answer}
    return _FIELDS.sub(lambda m: values[m.group(1)], ACCURACY_PROMPT)


def extract_json(text: str) -> str:
    """mem0's `memory/utils.py` `extract_json`: the inside of a ``` or ```json fence if there is one."""
    text = text.strip()
    match = re.search(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    return match.group(1) if match else text


def parse_label(text: str) -> float | None:
    try:
        label = json.loads(extract_json(text))["label"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    return 1.0 if label == "CORRECT" else 0.0


class Mem0Judge(JudgeProtocol):
    name = "mem0"
    params = {"temperature": 0.0, "max_tokens": None, "response_format": {"type": "json_object"}}
    batch_params = params
    attempts = 1  # evals.py asks once per answer, no repeats

    def prompt_hashes(self) -> dict[str, str]:
        return {"mem0:judge": text_hash(ACCURACY_PROMPT)}

    def messages(self, row: dict) -> list[dict]:
        gold = str(row.get("answer", ""))
        return [{"role": "user", "content": judge_prompt(str(row["question"]), gold, str(row["prediction"]))}]

    def parse(self, text: str) -> float | None:
        return parse_label(text)
