"""The leaderboard: per run, per category and overall, each score's mean with a bootstrap interval over
questions; and every pair of runs compared on the questions both answered (paired difference, p-value)."""

from __future__ import annotations

from itertools import combinations

from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.runs import PROBE_METRICS, SIMULATE_METRICS, Run
from realtalk_cli.report.stats import bootstrap_ci, paired_difference

OVERALL = "overall"
OVERALL_1_3 = "overall (1-3)"  # the paper's tables pool categories 1-3; shown when a run has others (LoCoMo)


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
        groups[OVERALL_1_3] = [r for r in pooled if r.get("category") in (1, 2, 3)]
    groups[OVERALL] = pooled
    return groups


def _has_other_categories(rows: list[dict]) -> bool:
    return any(r.get("category") not in (1, 2, 3) for r in rows if in_overall(r))


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
    overall = [c for c in (OVERALL_1_3, OVERALL) if c in categories]
    categories = [c for c in categories if c not in overall] + overall
    return {
        "kind": kind,
        "settings": {"resamples": resamples, "seed": seed, "level": 0.95, "alpha": alpha, "common_only": common_only},
        "metrics": {m: names[m] for m in metrics},
        "categories": categories,
        "questions": {"union": len(union), "common": len(common), "same_set": all(k == union for k in keysets)},
        "runs": entries,
        "comparisons": [compare(a, b, metrics, resamples, seed, alpha, split_1_3) for a, b in combinations(runs, 2)],
    }


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
