"""The leaderboard: per run, per category and overall, each score's mean with a bootstrap interval over
questions; and every pair of runs compared on the questions both answered (paired difference, p-value).

Runs are ranked only against runs like them: over the same items (the set of question keys, by a hash),
of the same dataset, graded by the same judge (judge protocol + model). Runs that differ in any of these go
to separate groups, each with its own ranking, and each group says what its runs share and why it stands
apart. Paired differences are computed on the items two runs share, so they pair any two runs of the same
dataset and judge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from itertools import combinations
from json.encoder import encode_basestring

import numpy as np

from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.runs import JUDGE_PREFIX, PROBE_METRICS, SIMULATE_METRICS, Run
from realtalk_cli.report.stats import intervals, stratified_ci

OVERALL = "overall"
OVERALL_1_3 = "overall (1-3)"  # the paper's tables pool categories 1-3; shown when a run has others (LoCoMo)
# LongMemEval's figures beside its per-type ones (print_qa_metrics.py): the unweighted mean of the type means, and
# the abstention questions (`_abs`), which also count in their own type.
TASK_AVERAGED = "task-averaged"
ABSTENTION = "abstention"
TAIL = (TASK_AVERAGED, OVERALL_1_3, OVERALL, ABSTENTION)  # after the categories, in this order


def _scores(run: Run, metric: str) -> np.ndarray:
    """The run's answers' scores of one metric (NaN: no such score)."""
    column = run.answers.scores.get(metric)
    return column if column is not None else np.full(len(run.answers), np.nan)


def _groups(run: Run, chosen: np.ndarray, split_1_3: bool | None = None) -> dict[str, np.ndarray]:
    """Positions of the chosen answers by category (probe) and overall; simulate runs have only the overall group.
    A category's answers are in file order; categories are ordered by number, then name.

    split_1_3: give the 'overall (1-3)' group (None: when these answers have other categories)."""
    a = run.answers
    groups: dict[str, np.ndarray] = {}
    if run.kind != "probe":
        groups[OVERALL] = chosen
        return groups
    order_key = {(c.number, c.label) for c in a.categories}
    rank = {k: r for r, k in enumerate(sorted(order_key))}
    labels = list(dict.fromkeys(c.label for c in a.categories))
    code_rank = np.array([rank[(c.number, c.label)] for c in a.categories] or [0], dtype=np.int64)
    code_label = np.array([labels.index(c.label) for c in a.categories] or [0], dtype=np.int64)
    ordered = chosen[np.argsort(code_rank[a.category[chosen]], kind="stable")]
    label_of = code_label[a.category[ordered]]
    first = np.full(len(labels), len(ordered), dtype=np.int64)
    np.minimum.at(first, label_of, np.arange(len(ordered)))
    for label in sorted((k for k in range(len(labels)) if first[k] < len(ordered)), key=lambda k: first[k]):
        groups[labels[label]] = ordered[label_of == label]
    pooled = chosen[a.in_overall[chosen]]
    if split_1_3 is None:
        split_1_3 = _has_other_categories(run, chosen)
    if split_1_3:
        one_to_three = np.array([c.one_to_three for c in a.categories] or [False], dtype=bool)
        groups[OVERALL_1_3] = pooled[one_to_three[a.category[pooled]]]
    groups[OVERALL] = pooled
    abstention = chosen[a.abstention[chosen]] if len(a.abstention) else chosen[:0]
    if len(abstention):
        groups[ABSTENTION] = abstention
    return groups


def _has_other_categories(run: Run, chosen: np.ndarray) -> bool:
    # LongMemEval numbers question types, not categories: its rows ask for no 'overall (1-3)'
    a = run.answers
    others = np.array([not (c.one_to_three or c.longmemeval) for c in a.categories] or [False], dtype=bool)
    pooled = chosen[a.in_overall[chosen]]
    return bool(others[a.category[pooled]].any())


def _types(run: Run, chosen: np.ndarray) -> dict[str, np.ndarray]:
    """The chosen answers of LongMemEval question types, by type."""
    a = run.answers
    kinds = [c for c in a.categories if c.longmemeval]
    if not kinds:
        return {}
    codes = a.category[chosen]
    by_label: dict[str, list[np.ndarray]] = {}
    for code, c in enumerate(a.categories):
        if c.longmemeval:
            by_label.setdefault(c.label, []).append(chosen[codes == code])
    return {label: np.concatenate(parts) for label, parts in by_label.items() if sum(len(p) for p in parts)}


def task_averaged(run: Run, chosen: np.ndarray, metric: str, resamples: int, seed: int) -> dict | None:
    """LongMemEval's task-averaged score of a run's LongMemEval answers (None when it has none): the mean of the
    question types' means, over the types present."""
    types = _types(run, chosen)
    values = _scores(run, metric)
    samples = [[None if np.isnan(v) else float(v) for v in values[rows]] for rows in types.values()]
    return stratified_ci(samples, resamples, seed) if types else None


def types_present(run: Run, chosen: np.ndarray) -> list[str]:
    names = {c.label: c.label.split(" ", 1)[-1] for c in run.answers.categories if c.longmemeval}
    return sorted(names[label] for label in _types(run, chosen))


class _Intervals:
    """The intervals a leaderboard asks for, computed together at the end (`stats.intervals`): each request
    gets an empty dict now, filled in place then."""

    def __init__(self, resamples: int, seed: int, alpha: float) -> None:
        self.resamples, self.seed, self.alpha = resamples, seed, alpha
        self.samples: list[tuple[np.ndarray, dict]] = []
        self.pairs: list[tuple[np.ndarray, np.ndarray, dict]] = []

    def ci(self, values: np.ndarray) -> dict:
        self.samples.append((values, out := {}))
        return out

    def paired(self, a: np.ndarray, b: np.ndarray) -> dict:
        """a - b, its interval and p-value, and whether it is significant at alpha."""
        self.pairs.append((a, b, out := {}))
        return out

    def compute(self) -> None:
        cis, paired = intervals(
            [v for v, _ in self.samples], [(a, b) for a, b, _ in self.pairs], self.resamples, self.seed
        )
        for (_, out), ci in zip(self.samples, cis, strict=True):
            out.update(ci)
        for (_, _, out), d in zip(self.pairs, paired, strict=True):
            out.update(d)
            out["significant"] = d["p"] is not None and d["p"] < self.alpha


def build_leaderboard(
    runs: list[Run], resamples: int = 1000, seed: int = 0, common_only: bool = False, alpha: float = 0.05
) -> dict:
    kind = runs[0].kind
    names = PROBE_METRICS if kind == "probe" else SIMULATE_METRICS
    if any(run.items is not runs[0].items for run in runs):
        raise ValueError("the runs of one leaderboard are read together (load_runs): their items are numbered alike")
    keysets = [np.sort(run.answers.items) for run in runs]  # an item is answered once in a run
    answered_by = np.zeros(len(runs[0].items.keys) if runs else 0, dtype=np.int64)
    for keys in keysets:
        answered_by[keys] += 1
    common, union = np.flatnonzero(answered_by == len(runs)), np.flatnonzero(answered_by > 0)
    if common_only and not len(common):
        unit = "question" if kind == "probe" else "target"
        paths = ", ".join(str(run.path) for run in runs)
        raise RealtalkError(f"--common-only: no {unit} was answered by every run ({paths}); nothing to score")
    chosen = {
        id(run): np.flatnonzero(np.isin(run.answers.items, common)) if common_only else np.arange(len(run.answers))
        for run in runs
    }
    names = {**names, **judge_metrics(runs)}
    metrics = [m for m in names if any((~np.isnan(_scores(run, m)[chosen[id(run)]])).any() for run in runs)]
    # One set of columns for every run: a REALTALK run beside a LoCoMo run gets its 'overall (1-3)' too.
    split_1_3 = any(_has_other_categories(run, chosen[id(run)]) for run in runs)
    cis = _Intervals(resamples, seed, alpha)
    categories: list[str] = []
    entries = []
    for run in runs:
        groups = _groups(run, chosen[id(run)], split_1_3)
        categories += [c for c in groups if c not in categories]
        scores = {m: {c: cis.ci(_scores(run, m)[rows]) for c, rows in groups.items()} for m in metrics}
        for m in metrics:
            averaged = task_averaged(run, chosen[id(run)], m, resamples, seed)
            if averaged is not None:
                scores[m][TASK_AVERAGED] = averaged
                categories += [TASK_AVERAGED] if TASK_AVERAGED not in categories else []
        entries.append(
            {
                "id": run.id,
                "path": str(run.path),
                "label": run.label,
                "model": run.model,
                "context": run.context,
                "memory": run.memory,
                "judge": run.judge,
                "answered": len(chosen[id(run)]),
                "failed": run.failed,
                "complete": run.complete,
                "incomplete": run.incomplete,
                **run.usage(),
                "scores": scores,
            }
        )
    overall = [c for c in TAIL if c in categories]
    categories = [c for c in categories if c not in overall] + overall
    groups = group_runs(runs, entries, chosen if common_only else None)
    # Paired differences are taken on the items both runs answered, so they need the same dataset and judge, not
    # the same item set.
    like = {g["id"]: (g["dataset"], g["judge"]) for g in groups}
    graded_alike = {(a["id"], b["id"]) for a in entries for b in entries if like[a["group"]] == like[b["group"]]}
    comparisons = [
        compare(a, b, metrics, cis, split_1_3) for a, b in combinations(runs, 2) if (a.id, b.id) in graded_alike
    ]
    cis.compute()
    by_id = {e["id"]: e for e in entries}
    for group in groups:
        # the scores the group's runs have: a group of runs without a judge is ranked by F1, not by an empty column
        scored = [m for m in metrics if any(_has_score(by_id[i], m) for i in group["runs"])]
        ranking = ranking_metric(scored)
        group["ranked_by"] = ranking
        group["runs"] = rank(group["runs"], entries, ranking)
        per_judge = {m: rank(group["runs"], entries, m) for m in scored if m.startswith(JUDGE_PREFIX)}
        if per_judge:  # several judges: the group ranked by each of them too
            group["rankings"] = per_judge
    return {
        "kind": kind,
        "settings": {"resamples": resamples, "seed": seed, "level": 0.95, "alpha": alpha, "common_only": common_only},
        "metrics": {m: names[m] for m in metrics},
        "categories": categories,
        "questions": {
            "union": len(union),
            "common": len(common),
            "same_set": all(len(k) == len(union) for k in keysets),
        },
        "runs": entries,
        "groups": groups,
        "comparisons": comparisons,
    }


def _has_score(entry: dict, metric: str) -> bool:
    return any(ci.get("mean") is not None for ci in entry["scores"].get(metric, {}).values())


def judge_metrics(runs: list[Run]) -> dict[str, str]:
    """A score column per judge (`judge:<protocol>/<model>`, from the rows' `judges`) when the runs carry more than
    one judge between them; with one, its scores are the `judge` column already."""
    keys = sorted({m for run in runs for m in run.answers.scores if m.startswith(JUDGE_PREFIX)})
    return {m: f"judge {m[len(JUDGE_PREFIX) :]}" for m in keys} if len(keys) > 1 else {}


def judge_of(run: Run) -> str | None:
    """`protocol/model` of the run's judge: the judge protocol its manifest names, else (runs of earlier versions)
    the one its probe protocol grades with (realtalk's own unless the run followed another with --compat), and the
    judge model."""
    if run.judge is None:
        return None
    if run.judge_protocol:
        return f"{run.judge_protocol}/{run.judge}"
    from realtalk_cli.tasks.probe.protocols import PROTOCOLS

    compat = run.parameters.get("compat")
    protocol = PROTOCOLS.get(str(compat)) if compat else None
    name = protocol.judge if protocol else (str(compat) if compat else "realtalk")
    return f"{name}/{run.judge}"


def items_of(keys: Iterable[tuple]) -> dict:
    """An item set: how many and a hash of their keys (chat, question index, question)."""
    lines = sorted({_key_json(key) for key in keys})
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:12]
    return {"count": len(lines), "hash": digest}


def _key_json(key: tuple) -> str:
    """`json.dumps(list(key), ensure_ascii=False)`, written faster for the keys runs have (strings, integers,
    None)."""
    parts = []
    for part in key:
        if type(part) is str:
            parts.append(encode_basestring(part))
        elif type(part) is int:
            parts.append(int.__repr__(part))
        elif part is None:
            parts.append("null")
        else:
            return json.dumps(list(key), ensure_ascii=False)
    return "[" + ", ".join(parts) + "]"


def group_runs(runs: list[Run], entries: list[dict], chosen: dict | None) -> list[dict]:
    """Runs with the same dataset, item set and judge, in order of first appearance; each entry gets its group.
    The item set is every question the run holds (answered or failed), or the common items with --common-only
    (`chosen`: the positions of each run's answers that are scored)."""
    groups: dict[tuple, dict] = {}
    item_sets: dict[bytes, dict] = {}  # runs over the same items (numbered alike) share one hash
    for run, entry in zip(runs, entries, strict=True):
        if chosen is not None:
            a = run.answers
            numbers = a.items[chosen[id(run)]]
            names = {a.datasets[c] for c in np.flatnonzero(np.bincount(a.dataset[chosen[id(run)]]))}
        else:
            numbers, names = run.held, run.datasets
        dataset = ", ".join(sorted(names)) or "?"
        numbers = np.sort(numbers)  # each item once
        fingerprint = numbers.astype(np.int64).tobytes()
        if fingerprint not in item_sets:
            item_sets[fingerprint] = items_of(run.items.keys[i] for i in numbers.tolist())
        shared = {"dataset": dataset, "items": dict(item_sets[fingerprint]), "judge": judge_of(run)}
        key = (shared["dataset"], shared["items"]["hash"], shared["judge"])
        if key not in groups:
            groups[key] = {"id": f"G{len(groups) + 1}", **shared, "runs": []}
            present = types_present(run, chosen[id(run)] if chosen is not None else np.arange(len(run.answers)))
            if present and len(present) < 6:  # LongMemEval's script averages over its six types
                groups[key]["note"] = (
                    f"task-averaged over the {plural(len(present), 'type')} present: {', '.join(present)}"
                )
        groups[key]["runs"].append(run.id)
        entry["group"] = groups[key]["id"]
    found = list(groups.values())
    for group in found[1:]:
        group["why"] = apart_from(group, found[0])
    return found


def apart_from(group: dict, first: dict) -> str:
    """Why a group's runs are not ranked with the first group's."""
    reasons = []
    if group["dataset"] != first["dataset"]:
        reasons.append(f"dataset {group['dataset']} (not {first['dataset']})")
    if group["items"]["hash"] != first["items"]["hash"]:
        reasons.append(f"{group['items']['count']} other items (not the {first['items']['count']} of {first['id']})")
    if group["judge"] != first["judge"]:
        reasons.append(f"judge {group['judge'] or 'none'} (not {first['judge'] or 'none'})")
    return f"ranked apart from {first['id']}: " + "; ".join(reasons)


def ranking_metric(metrics: list[str]) -> str | None:
    """The judge's score when there is one, else F1 (probe); a simulate run's first score."""
    for m in ("judge_score", "f1"):
        if m in metrics:
            return m
    return metrics[0] if metrics else None


def rank(ids: list[str], entries: list[dict], metric: str | None) -> list[str]:
    """Best overall mean first; runs without that score last, in their given order."""
    if metric is None:
        return ids
    by_id = {e["id"]: e for e in entries}

    def overall(run_id: str) -> float:
        mean = (by_id[run_id]["scores"].get(metric, {}).get(OVERALL) or {}).get("mean")
        return -mean if isinstance(mean, (int, float)) else float("inf")

    return sorted(ids, key=overall)


def compare(a: Run, b: Run, metrics: list[str], cis: _Intervals, split_1_3: bool | None = None) -> dict:
    """b - a on the questions both answered, per category and overall, per metric (the intervals are filled in
    when `cis` computes them)."""
    where_a = np.full(len(b.items.keys), -1, dtype=np.int64)  # item number -> position in a's answers
    where_a[a.answers.items] = np.arange(len(a.answers))
    paired = np.flatnonzero(where_a[b.answers.items] >= 0)  # b's answers that a answered too, in b's order
    groups = _groups(b, paired, split_1_3)
    result: dict = {"a": a.id, "b": b.id, "common": len(paired), "differences": {}}
    for m in metrics:
        per_category = {}
        for c, rows in groups.items():
            y, x = _scores(b, m)[rows], _scores(a, m)[where_a[b.answers.items[rows]]]
            both = ~(np.isnan(x) | np.isnan(y))
            per_category[c] = cis.paired(y[both], x[both])
        result["differences"][m] = per_category
    return result
