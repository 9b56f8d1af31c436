"""The rows of predictions.jsonl: one per question, built from a completion and scored by F1; their keys,
the judge that scored them, and how complete a run's rows are.
"""

from __future__ import annotations

from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.data.model import QAItem
from realtalk_cli.llm.client import Completion
from realtalk_cli.scoring.f1 import answer_f1, date_normalised_f1
from realtalk_cli.tasks.probe.items import Item, pick_option
from realtalk_cli.tasks.probe.judge import needs_judging
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.runs.results import completeness

PROBE_FIELDS = {"qa_index": int, "question": str, "prediction": str, "category": int, "dataset": str}


def item_key(item: Item) -> tuple[str, int]:
    return (item.chat.name, item.qa_index)


def row_key(row: dict) -> tuple[str, int]:
    return (row["chat"], row["qa_index"])


def score_row(row: dict, protocol: ProbeProtocol | None = None) -> None:
    """The paper's F1 and the date-normalised F1 of an answered predictions row, and the protocol's own scores."""
    gold = row.get("answer", row.get("adversarial_answer")) or ""
    args = (row["prediction"], gold, row["category"], row["dataset"])
    row["f1"] = answer_f1(*args)
    row["f1_date_normalised"] = date_normalised_f1(*args)
    if protocol is not None:
        row.update(protocol.scores(row))


_INDEXES: dict[int, tuple] = {}


def _message_index(chat) -> dict:
    """The chat's dia_id index, built once per chat object rather than once per question."""
    hit = _INDEXES.get(id(chat))
    if hit is None or hit[0] is not chat:
        hit = _INDEXES[id(chat)] = (chat, chat.message_index())
    return hit[1]


def qa_fields(qa: QAItem) -> dict:
    """A question's own fields beyond the common ones, as its row carries them: a LongMemEval question's id, type
    (its judge picks its prompt by them), date, whether it is an abstention question, and its answer sessions."""
    if qa.question_id is None:
        return {}
    return {
        "question_id": qa.question_id,
        "question_type": qa.category_name,
        "question_date": qa.question_date,
        "abstention": qa.abstention,
        "answer_sessions": qa.answer_sessions,
    }


def prediction_row(item: Item, c: Completion, model: str, protocol: ProbeProtocol | None = None) -> dict:
    """One predictions line, scored as the protocol says (the paper's keeps the reply unstripped)."""
    raw = protocol is not None and protocol.keep_raw_reply
    qa = item.qa
    prediction = pick_option(c.text, item.options) if item.options else c.text if raw else c.text.strip()
    # LoCoMo's adversarial gold is the trap, not the answer: it keeps its own name.
    gold_field = "adversarial_answer" if item.chat.dataset == "locomo" and qa.category == 5 else "answer"
    evidence = resolve_evidence(item.chat, qa.evidence, _message_index(item.chat))
    row = {
        "chat": item.chat.name,
        "dataset": item.chat.dataset,
        "qa_index": item.qa_index,
        "question": qa.question,
        gold_field: qa.gold,
        "category": qa.category,
        "category_name": qa.category_name,
        "evidence": qa.evidence,
        "evidence_ids": evidence.resolved,
        "evidence_dangling": evidence.dangling,
        **qa_fields(qa),
        "prediction": prediction,
        "raw_prediction": c.text,
        "f1": None,
        "f1_date_normalised": None,
        "judge_score": None,
        "judge_model": None,
        "model": model,
        **c.usage.as_row(),
        "error": c.error,
    }
    if c.error is None:
        score_row(row, protocol)
    if item.retrieved is not None:
        row["retrieved"] = item.retrieved
        row["recall"] = row["recall_at_k"] = item.recall
        row["recall_claimed"] = item.recall_claimed
        row["context_tokens"] = item.context_tokens
    return row


def rows_judge(rows: list[dict]) -> str | None:
    """The judge of an earlier run resumed without --judge-model, when one judge scored every row."""
    judges = {r.get("judge_model") for r in rows if r.get("judge_score") is not None}
    return judges.pop() if len(judges) == 1 else None


def probe_completeness(
    rows, items, judge_endpoint, judge_hash, stopped_for_cost, unscored: int = 0, judge_name: str = ""
) -> dict:
    """`unscored`: verdicts missing besides the judge's own (e.g. against an erratum's corrected gold)."""
    by_key = {row_key(r): r for r in rows}
    wanted = [by_key.get(item_key(it)) for it in items]
    failed = sum(1 for r in wanted if r is not None and r.get("error") is not None)
    not_run = sum(1 for r in wanted if r is None)
    unjudged = 0
    if judge_endpoint is not None:
        unjudged = sum(
            1 for r in wanted if r is not None and needs_judging(r, judge_endpoint.label, judge_hash, judge_name)
        )
    return completeness(failed, not_run, stopped_for_cost, unjudged + unscored, "questions")
