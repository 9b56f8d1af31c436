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
from itertools import combinations

from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.runs import PROBE_METRICS, SIMULATE_METRICS, Run
from realtalk_cli.report.stats import bootstrap_ci, paired_difference, stratified_ci

OVERALL = "overall"
OVERALL_1_3 = "overall (1-3)"  # the paper's tables pool categories 1-3; shown when a run has others (LoCoMo)
# LongMemEval's figures beside its per-type ones (print_qa_metrics.py): the unweighted mean of the type means, and
# the abstention questions (`_abs`), which also count in their own type.
TASK_AVERAGED = "task-averaged"
ABSTENTION = "abstention"
TAIL = (TASK_AVERAGED, OVERALL_1_3, OVERALL, ABSTENTION)  # after the categories, in this order


def category_of(row: dict) -> str:
    return f"{row['category']} {row.get('category_name') or ''}".strip()


def in_overall(row: dict) -> bool:
    # As the run's own report: LoCoMo's adversarial items are scored by their own rule and kept apart.
    return not (row.get("dataset") == "locomo" and row.get("category") == 5)


def _score(row: dict, metric: str) -> float | None:
    value = row.get(metric)
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _groups(run: Run, rows: list[dict], split_1_3: bool | None = None) -> dict[str, list[dict]]:
    """Rows by category (probe) and overall; simulate runs have only the overall group.

    split_1_3: give the 'overall (1-3)' group (None: when these rows have other categories)."""
    groups: dict[str, list[dict]] = {}
    if run.kind == "probe":
        for row in sorted(rows, key=lambda r: (_category_number(r), category_of(r))):
            groups.setdefault(category_of(row), []).append(row)
    if run.kind != "probe":
        groups[OVERALL] = rows
        return groups
    pooled = [r for r in rows if in_overall(r)]
    if split_1_3 is None:
        split_1_3 = _has_other_categories(pooled)
    if split_1_3:
        groups[OVERALL_1_3] = [r for r in pooled if r.get("category") in (1, 2, 3) and not _longmemeval(r)]
    groups[OVERALL] = pooled
    if any(r.get("abstention") is True for r in rows if _longmemeval(r)):
        groups[ABSTENTION] = [r for r in rows if _longmemeval(r) and r.get("abstention") is True]
    return groups


def _longmemeval(row: dict) -> bool:
    return row.get("dataset") == "longmemeval"


def _has_other_categories(rows: list[dict]) -> bool:
    # LongMemEval numbers question types, not categories: its rows ask for no 'overall (1-3)'
    return any(r.get("category") not in (1, 2, 3) for r in rows if in_overall(r) and not _longmemeval(r))


def task_averaged(rows: list[dict], metric: str, resamples: int, seed: int) -> dict | None:
    """LongMemEval's task-averaged score of a run's LongMemEval rows (None when it has none): the mean of the
    question types' means, over the types present."""
    types: dict[str, list[float | None]] = {}
    for r in rows:
        if _longmemeval(r):
            types.setdefault(category_of(r), []).append(_score(r, metric))
    return stratified_ci(list(types.values()), resamples, seed) if types else None


def types_present(rows: list[dict]) -> list[str]:
    return sorted({str(r.get("category_name")) for r in rows if _longmemeval(r)})


def _category_number(row: dict) -> float:
    c = row.get("category")
    return c if isinstance(c, (int, float)) and not isinstance(c, bool) else float("inf")


def build_leaderboard(
    runs: list[Run], resamples: int = 1000, seed: int = 0, common_only: bool = False, alpha: float = 0.05
) -> dict:
    kind = runs[0].kind
    names = PROBE_METRICS if kind == "probe" else SIMULATE_METRICS
    keysets = [{run.key(r) for r in run.rows} for run in runs]
    common = set.intersection(*keysets) if keysets else set()
    union = set.union(*keysets) if keysets else set()
    if common_only and not common:
        unit = "question" if kind == "probe" else "target"
        paths = ", ".join(str(run.path) for run in runs)
        raise RealtalkError(f"--common-only: no {unit} was answered by every run ({paths}); nothing to score")
    chosen = {id(run): [r for r in run.rows if not common_only or run.key(r) in common] for run in runs}
    metrics = [m for m in names if any(_score(r, m) is not None for run in runs for r in chosen[id(run)])]
    # One set of columns for every run: a REALTALK run beside a LoCoMo run gets its 'overall (1-3)' too.
    split_1_3 = any(_has_other_categories(chosen[id(run)]) for run in runs)
    categories: list[str] = []
    entries = []
    for run in runs:
        groups = _groups(run, chosen[id(run)], split_1_3)
        categories += [c for c in groups if c not in categories]
        scores = {
            m: {c: bootstrap_ci([_score(r, m) for r in rows], resamples, seed) for c, rows in groups.items()}
            for m in metrics
        }
        for m in metrics:
            averaged = task_averaged(chosen[id(run)], m, resamples, seed)
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
    ranking = ranking_metric(metrics)
    for group in groups:
        group["ranked_by"] = ranking
        group["runs"] = rank(group["runs"], entries, ranking)
    # Paired differences are taken on the items both runs answered, so they need the same dataset and judge, not
    # the same item set.
    like = {g["id"]: (g["dataset"], g["judge"]) for g in groups}
    graded_alike = {(a["id"], b["id"]) for a in entries for b in entries if like[a["group"]] == like[b["group"]]}
    return {
        "kind": kind,
        "settings": {"resamples": resamples, "seed": seed, "level": 0.95, "alpha": alpha, "common_only": common_only},
        "metrics": {m: names[m] for m in metrics},
        "categories": categories,
        "questions": {"union": len(union), "common": len(common), "same_set": all(k == union for k in keysets)},
        "runs": entries,
        "groups": groups,
        "comparisons": [
            compare(a, b, metrics, resamples, seed, alpha, split_1_3)
            for a, b in combinations(runs, 2)
            if (a.id, b.id) in graded_alike
        ],
    }


def judge_of(run: Run) -> str | None:
    """`protocol/model` of the run's judge: the judge protocol its probe protocol grades with (realtalk's own
    unless the run followed another with --compat), and the judge model."""
    if run.judge is None:
        return None
    from realtalk_cli.tasks.probe.protocols import PROTOCOLS

    compat = run.parameters.get("compat")
    protocol = PROTOCOLS.get(str(compat)) if compat else None
    name = protocol.judge if protocol else (str(compat) if compat else "realtalk")
    return f"{name}/{run.judge}"


def items_of(run: Run, rows: list[dict]) -> dict:
    """The run's item set: how many and a hash of their keys (chat, question index, question)."""
    keys = sorted({json.dumps(list(run.key(r)), ensure_ascii=False) for r in rows})
    digest = hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:12]
    return {"count": len(keys), "hash": digest}


def group_runs(runs: list[Run], entries: list[dict], chosen: dict | None) -> list[dict]:
    """Runs with the same dataset, item set and judge, in order of first appearance; each entry gets its group.
    The item set is every question the run holds (answered or failed), or the common items with --common-only."""
    groups: dict[tuple, dict] = {}
    for run, entry in zip(runs, entries, strict=True):
        rows = chosen[id(run)] if chosen is not None else run.all_rows or run.rows
        dataset = ", ".join(sorted({str(r.get("dataset") or "?") for r in rows})) or "?"
        shared = {"dataset": dataset, "items": items_of(run, rows), "judge": judge_of(run)}
        key = (shared["dataset"], shared["items"]["hash"], shared["judge"])
        if key not in groups:
            groups[key] = {"id": f"G{len(groups) + 1}", **shared, "runs": []}
            present = types_present(rows)
            if present and len(present) < 6:  # LongMemEval's script averages over its six types
                groups[key]["note"] = f"task-averaged over the {len(present)} types present: {', '.join(present)}"
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


def compare(
    a: Run, b: Run, metrics: list[str], resamples: int, seed: int, alpha: float, split_1_3: bool | None = None
) -> dict:
    """b - a on the questions both answered, per category and overall, per metric."""
    mine = {a.key(r): r for r in a.rows}
    pairs = {b.key(r): (mine[b.key(r)], r) for r in b.rows if b.key(r) in mine}
    by_key_b = [pair[1] for pair in pairs.values()]
    groups = _groups(b, by_key_b, split_1_3)
    result: dict = {"a": a.id, "b": b.id, "common": len(pairs), "differences": {}}
    for m in metrics:
        per_category = {}
        for c, rows in groups.items():
            both = [(_score(pairs[b.key(r)][0], m), _score(r, m)) for r in rows]
            both = [(x, y) for x, y in both if x is not None and y is not None]
            d = paired_difference([y for _, y in both], [x for x, _ in both], resamples, seed)
            d["significant"] = d["p"] is not None and d["p"] < alpha
            per_category[c] = d
        result["differences"][m] = per_category
    return result
