"""Published results beside your runs (`realtalk report --reference FILE.toml`): numbers a user writes down from a
paper, each with its citation, shown marked as published and never ranked or compared as if measured here.

The file (see configs/reference-example.toml) holds one `[[result]]` table per published result:

    [[result]]
    system = "SomeMemory"            # required: the system as the source names it
    dataset = "locomo"               # required: locomo, realtalk, longmemeval or another name
    protocol = "mem0"                # required: whose harness produced the numbers (a --compat name, or text)
    judge = "mem0/gpt-4o-mini"       # required: the judge as protocol/model, or "none"
    source = "Author et al. 2025, Table 2, https://..."   # required: where the numbers are printed
    note = "..."                     # optional
    [result.scores.judge]            # one table per score: judge, f1, f1_locomo, f1_mem0, ... (the report's names)
    multi-hop = 0.0                  # by category NAME (papers number categories differently), or "overall"
    overall = 0.0

Scores are fractions from 0 to 1 (62.81% is 0.6281). A category is written by its name (`multi-hop`, or LoCoMo's
numbered form `1 multi-hop`), never by a bare number: mem0's papers call 1 single-hop, LoCoMo calls it
multi-hop. A name the report has as a category is shown in that column; other names are shown after the row.
"""

from __future__ import annotations

import math
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_toml
from realtalk_cli.report.runs import PROBE_METRICS

FIELDS = {"system": True, "dataset": True, "protocol": True, "judge": True, "source": True, "note": False}
ALIASES = {"judge": "judge_score"}  # `[result.scores.judge]` is the report's `judge_score`


def read_reference(path: Path) -> list[dict]:
    """The published results of a reference file; bad input is one RealtalkError naming the file and the place."""
    if not path.is_file():
        raise RealtalkError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    data = read_toml(path)
    unknown = sorted(set(data) - {"result"})
    if unknown:
        raise RealtalkError(f"{path}: unknown key '{unknown[0]}' (a reference file holds [[result]] tables)")
    results = data.get("result")
    if not isinstance(results, list) or not results:
        raise RealtalkError(f"{path}: no [[result]] table")
    return [_result(path, n, r) for n, r in enumerate(results)]


def _result(path: Path, n: int, table: object) -> dict:
    where = f"{path}: result[{n}]"
    if not isinstance(table, dict):
        raise RealtalkError(f"{where}: expected a table")
    unknown = sorted(set(table) - set(FIELDS) - {"scores"})
    if unknown:
        raise RealtalkError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join([*FIELDS, 'scores'])})")
    out: dict = {"id": f"R{n + 1}"}
    for name, required in FIELDS.items():
        value = table.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value.strip():
            what = "a citation is required" if name == "source" else "required, as text"
            raise RealtalkError(f"{where}: '{name}' missing or empty ({what})")
        out[name] = value.strip()
    scores = table.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise RealtalkError(f"{where}: no [result.scores.<score>] table (e.g. [result.scores.judge])")
    out["scores"] = {}
    for metric, values in scores.items():
        name = ALIASES.get(metric, metric)
        if name not in PROBE_METRICS:
            known = ", ".join(["judge", *(m for m in PROBE_METRICS if m != "judge_score")])
            raise RealtalkError(f"{where}.scores.{metric}: unknown score (known: {known})")
        if not isinstance(values, dict) or not values:
            raise RealtalkError(f"{where}.scores.{metric}: expected a table of category = score")
        out["scores"][name] = {k: _score(f"{where}.scores.{metric}.{k}", k, v) for k, v in values.items()}
    return out


def _score(where: str, key: str, value: object) -> float:
    if key.strip().isdigit():
        raise RealtalkError(
            f"{where}: write the category's name (e.g. multi-hop), not a number: papers number categories differently"
        )
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise RealtalkError(f"{where}: expected a number, got {value!r:.40}")
    if not 0 <= value <= 1:
        hint = f" (write {value / 100:.4f} for {value}%)" if 1 < value <= 100 else ""
        raise RealtalkError(f"{where}: {value} is not a fraction from 0 to 1{hint}")
    return float(value)


def _column(key: str, categories: list[str]) -> str | None:
    """The report's category a written name stands for: itself, or `N name` for a bare name."""
    key = key.strip()
    if key in categories:
        return key
    matches = [c for c in categories if c.split(" ", 1)[-1] == key.lower()]
    return matches[0] if len(matches) == 1 else None


def place(references: list[dict], board: dict) -> list[dict]:
    """Each result's scores under the report's category columns; names the report lacks kept apart."""
    categories = board["categories"]
    for ref in references:
        ref["columns"], ref["other"] = {}, {}
        for metric, values in ref["scores"].items():
            for key, value in values.items():
                column = _column(key, categories)
                if column is None:
                    ref["other"].setdefault(metric, {})[key] = value
                else:
                    ref["columns"].setdefault(metric, {})[column] = value
    return references


NOTE = (
    "Published results, written down by hand from the sources cited: not measured here, not reproduced by realtalk, "
    "never ranked or compared with the runs (their harness, judge and items may differ)."
)


def label(ref: dict) -> str:
    return f"{ref['id']} (published) {ref['system']}: {ref['dataset']}, {ref['protocol']}, judge {ref['judge']}"


def rows(board: dict, metric: str) -> list[tuple[dict, list[float | None], str]]:
    """The results with a score of this kind: the values per report category, and the other names in words."""
    out = []
    for ref in board.get("references", []):
        if metric not in ref["scores"]:
            continue
        values = [ref["columns"].get(metric, {}).get(c) for c in board["categories"]]
        other = "; ".join(f"{k} {v:.3f}" for k, v in ref["other"].get(metric, {}).items())
        out.append((ref, values, other))
    return out
