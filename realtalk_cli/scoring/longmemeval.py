"""LongMemEval's figures from scored predictions rows, as its metrics script prints them
(xiaowu0162/LongMemEval `src/evaluation/print_qa_metrics.py`; shared/LITERATURE_PROTOCOLS.md §2.4).

Per question type, in the script's order: the mean score and the count (abstention questions count in their
own type); task-averaged: the unweighted mean of the type means; overall: the mean over every question;
abstention: the mean over the `_abs` questions, with their count. Every figure `round(..., 4)` as the script.
The script averages over its fixed six types, so a file without one of them gives NaN there; here the
task-averaged figure is the mean over the types present, and `task_averaged.over` names them (all six for the
real files). The score is the judge's (LongMemEval's own judge gives 1 for "yes", 0 for "no": the mean is its
accuracy) and, beside it, token F1.

Retrieval (a retriever or memory chose the context): turn-level evidence recall (`recall`: the share of the
question's `has_answer` turns shown) and session-level recall (`session_recall`: the share of its answer sessions
with at least one turn shown), abstention questions left out as LongMemEval's retrieval metrics leave them.
"""

from __future__ import annotations

from collections.abc import Callable

from realtalk_cli.data.model import CATEGORY_NAMES, dia_id_session

TYPES: tuple[str, ...] = tuple(CATEGORY_NAMES["longmemeval"].values())  # print_qa_metrics.py's order


def _mean(values: list[float | None]) -> float | None:
    """The mean of the numbers given, unrounded (the script rounds only what it prints)."""
    present = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(present) / len(present) if present else None


def _rounded(figures: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def session_recall(row: dict) -> float | None:
    """Share of the question's answer sessions with a turn in the context; None without retrieval, for an
    abstention question, or when it names no answer session."""
    retrieved, sessions = row.get("retrieved"), row.get("answer_sessions")
    if not isinstance(retrieved, list) or not isinstance(sessions, list) or not sessions or row.get("abstention"):
        return None
    shown = {dia_id_session(str(i)) for i in retrieved}
    return sum(s in shown for s in sessions) / len(sessions)


def _figures(rows: list[dict], judge_score: Callable[[dict], float | None]) -> dict:
    out = {
        "count": len(rows),
        "judged": sum(judge_score(r) is not None for r in rows),
        "judge": _mean([judge_score(r) for r in rows]),
        "f1": _mean([r.get("f1") for r in rows]),
    }
    if any("retrieved" in r for r in rows):
        out["recall"] = _mean([r.get("recall") for r in rows if not r.get("abstention")])
        out["session_recall"] = _mean([session_recall(r) for r in rows])
    return out


def longmemeval_metrics(
    rows: list[dict], judge: str | None, score: Callable[[dict], float | None] | None = None
) -> dict:
    """LongMemEval's per-type, task-averaged, overall and abstention figures of answered rows. Judge scores are
    the run's judge's (`judge` names it): `score` reads a row's verdict by that judge; without it, the row's
    top-level verdict when `judge` is its judge model."""

    def judge_score(row: dict) -> float | None:
        if score is not None:
            return score(row)
        return row.get("judge_score") if judge is not None and row.get("judge_model") == judge else None

    by_type = {t: [r for r in rows if r.get("category_name") == t] for t in TYPES}
    types = {t: _figures(rs, judge_score) for t, rs in by_type.items()}
    present = [t for t in TYPES if by_type[t]]
    averaged = {  # the mean of the unrounded type means, over the types present; None while one has no score
        metric: _mean([types[t][metric] for t in present])
        if all(types[t][metric] is not None for t in present)
        else None
        for metric in ("judge", "f1")
    }
    return {
        "source": "xiaowu0162/LongMemEval src/evaluation/print_qa_metrics.py",
        "judge_model": judge,
        "types": {t: _rounded(f) for t, f in types.items()},
        "task_averaged": {**_rounded(averaged), "over": present, "all_types": len(present) == len(TYPES)},
        "overall": _rounded(_figures(rows, judge_score)),
        "abstention": _rounded(_figures([r for r in rows if r.get("abstention")], judge_score)),
    }
