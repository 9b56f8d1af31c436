"""LongMemEval's judge, byte for byte (xiaowu0162/LongMemEval 9e0b455, `src/evaluation/evaluate_qa.py`;
shared/LITERATURE_PROTOCOLS.md §2.3 gives every prompt with its SHA-256).

- Prompt: `get_anscheck_prompt`: one template per question type, the abstention template for every question whose
  `question_id` contains `_abs` (whatever its type), filled with `str.format(question, answer, response)`; an
  integer answer reads as its decimal string; the response is the hypothesis as the run stored it (stripped).
- Request: one user message, `temperature 0`, `max_tokens 10` (`n=1`, the API's default, is not sent).
- Verdict: `'yes' in reply.strip().lower()`, a substring test ("Yes.", "no, yes" and "eyes" are yes): 1, else 0.
  Every reply is a verdict, as in the script; a failed request is a `judge_error` that the next run asks again
  (the script retries it forever).
- It needs the question's type and id: LongMemEval rows carry them (`question_type`, `question_id`). A row of
  another dataset (REALTALK or LoCoMo items) has neither, and this judge refuses it (one line, exit 2) instead of
  inventing a type.
- The script grades with `gpt-4o-2024-08-06`; realtalk grades with the `--judge-model` given and reports it.
"""

from __future__ import annotations

from realtalk_cli.data.model import QAItem
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.probe.protocol import JudgeProtocol
from realtalk_cli.tasks.prompts import text_hash

_INTRO = (
    "I will give you a question, a correct answer, and a response from a model. Please answer yes if the response "
    "contains the correct answer. Otherwise, answer no. "
)
_STEPS = (
    "If the response is equivalent to the correct answer or contains all the intermediate steps to get the correct "
    "answer, you should also answer yes. If the response only contains a subset of the information required by the "
    "answer, answer no. "
)
_TAIL = (
    "\n\nQuestion: {}\n\nCorrect Answer: {}\n\nModel Response: {}\n\nIs the model response correct? Answer yes or "
    "no only."
)
GENERAL = _INTRO + _STEPS + _TAIL
TEMPORAL = (
    _INTRO
    + _STEPS
    + "In addition, do not penalize off-by-one errors for the number of days. If the question asks for the number of "
    "days/weeks/months, etc., and the model makes off-by-one errors (e.g., predicting 19 days when the answer is 18), "
    "the model's response is still correct. " + _TAIL
)
KNOWLEDGE_UPDATE = (
    _INTRO + "If the response contains some previous information along with an updated answer, the response should be "
    "considered as correct as long as the updated answer is the required answer." + _TAIL
)
PREFERENCE = (
    "I will give you a question, a rubric for desired personalized response, and a response from a model. Please "
    "answer yes if the response satisfies the desired response. Otherwise, answer no. The model does not need to "
    "reflect all the points in the rubric. The response is correct as long as it recalls and utilizes the user's "
    "personal information correctly.\n\nQuestion: {}\n\nRubric: {}\n\nModel Response: {}\n\nIs the model response "
    "correct? Answer yes or no only."
)
ABSTENTION = (
    "I will give you an unanswerable question, an explanation, and a response from a model. Please answer yes if the "
    "model correctly identifies the question as unanswerable. The model could say that the information is "
    "incomplete, or some other information is given but the asked information is not.\n\nQuestion: {}\n\n"
    "Explanation: {}\n\nModel Response: {}\n\nDoes the model correctly identify the question as unanswerable? Answer "
    "yes or no only."
)
TEMPLATES = {
    "single-session-user": GENERAL,
    "single-session-assistant": GENERAL,
    "multi-session": GENERAL,
    "temporal-reasoning": TEMPORAL,
    "knowledge-update": KNOWLEDGE_UPDATE,
    "single-session-preference": PREFERENCE,
}
JUDGE_MAX_TOKENS = 10


def anscheck_prompt(task: str, question: str, answer: str, response: str, abstention: bool = False) -> str:
    """`get_anscheck_prompt` of evaluate_qa.py."""
    template = ABSTENTION if abstention else TEMPLATES[task]
    return template.format(question, answer, response)


def verdict(reply: str) -> float:
    """evaluate_qa.py's label: `'yes' in reply.strip().lower()`."""
    return 1.0 if "yes" in reply.strip().lower() else 0.0


class LongMemEvalJudge(JudgeProtocol):
    name = "longmemeval"
    params = {"temperature": 0, "max_tokens": JUDGE_MAX_TOKENS}
    batch_params = params
    max_tokens = JUDGE_MAX_TOKENS

    def prompt_hashes(self) -> dict[str, str]:
        every = "\n".join([GENERAL, TEMPORAL, KNOWLEDGE_UPDATE, PREFERENCE, ABSTENTION])
        return {
            "longmemeval:judge": text_hash(every),
            "longmemeval:judge:general": text_hash(GENERAL),
            "longmemeval:judge:temporal-reasoning": text_hash(TEMPORAL),
            "longmemeval:judge:knowledge-update": text_hash(KNOWLEDGE_UPDATE),
            "longmemeval:judge:single-session-preference": text_hash(PREFERENCE),
            "longmemeval:judge:abstention": text_hash(ABSTENTION),
        }

    def check_item(self, qa: QAItem, where: str) -> None:
        if qa.question_id is None or qa.dataset != "longmemeval":
            raise RealtalkError(
                f"{where}: LongMemEval's judge needs a LongMemEval question (its question_type and question_id); "
                f"this is a {qa.dataset} item"
            )

    def messages(self, row: dict) -> list[dict]:
        task, question_id = row.get("question_type"), row.get("question_id")
        if task not in TEMPLATES or not isinstance(question_id, str):
            raise RealtalkError(
                f"row {row.get('chat')!r} question {row.get('qa_index')}: LongMemEval's judge needs a LongMemEval "
                "question (its question_type and question_id)"
            )
        content = anscheck_prompt(task, row["question"], row["answer"], row["prediction"], "_abs" in question_id)
        return [{"role": "user", "content": content}]

    def parse(self, text: str) -> float | None:
        return verdict(text)
