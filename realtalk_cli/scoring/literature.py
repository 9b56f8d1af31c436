"""The F1 scores of other harnesses, each as its own code computes it, so a run can be set beside their
published numbers. Never one column for two of them: they differ.

- `locomo_f1`: LoCoMo's `eval_question_answering` (snap-research/locomo `task_eval/evaluation.py`): the
  paper's scorer (f1.py: normalised, Porter-stemmed multiset F1, category 1 split on commas, category 3 cut
  at ';', category 5 the not-mentioned rule), each item's F1 rounded to 3 decimals before any mean.
- `mem0_f1`: mem0's `calculate_metrics` (mem0ai/mem0 `evaluation/metrics/utils.py`): lower-cased, `.,!?`
  replaced by spaces, split; token *sets* (a repeated word counts once), no stemming, no article removal;
  0 when either side is empty.
"""

from __future__ import annotations

from realtalk_cli.scoring.f1 import answer_f1


def locomo_f1(prediction: str, gold: str, category: int, dataset: str) -> float:
    return round(answer_f1(prediction, gold, category, dataset), 3)


def _mem0_tokens(text: str) -> set[str]:
    text = text.strip().lower()
    for mark in ".,!?":
        text = text.replace(mark, " ")
    return set(text.split())


def mem0_f1(prediction: str, gold: str) -> float:
    if not prediction or not gold:
        return 0.0
    pred, ref = _mem0_tokens(str(prediction)), _mem0_tokens(str(gold))
    common = len(pred & ref)
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
