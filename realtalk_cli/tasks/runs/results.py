"""A run's rows and reports: predictions read back and checked, which rows count (a later success replaces a
failure), whether the run is complete, the status lines a reader sees first, and writing report.json/.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_jsonl, write_atomic

PREDICTION_FIELDS = {"chat": str, "model": str}


def read_predictions(
    path: Path, fields: dict[str, type], check: Callable[[dict], str | None] | None = None
) -> list[dict]:
    """predictions.jsonl, every row checked for the fields a run relies on (and by `check`, which says what is
    wrong with a row or None): a hand-edited or foreign row is one line naming the row, not a crash halfway
    through a report."""
    rows = read_jsonl(path)
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise RealtalkError(f"{path}: row {n}: expected an object, found {type(row).__name__}")
        for name, kind in {**PREDICTION_FIELDS, **fields}.items():
            value = row.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise RealtalkError(f"{path}: row {n}: field {name!r} is {value!r}, expected {kind.__name__}")
        if not isinstance(row.get("error"), (str, type(None))):
            raise RealtalkError(f"{path}: row {n}: field 'error' is {row.get('error')!r}")
        bad = check(row) if check is not None else None
        if bad:
            raise RealtalkError(f"{path}: row {n}: {bad}")
    return rows


def final_rows(rows: list[dict], key) -> list[dict]:
    """One row per item from an appended predictions file: the latest success, else the latest failure."""
    best: dict = {}
    for r in rows:
        k = key(r)
        if k not in best or r.get("error") is None or best[k].get("error") is not None:
            best[k] = r
    return list(best.values())


def completeness(failed: int, not_run: int, stopped_for_cost: bool, unscored: int = 0, what: str = "items") -> dict:
    """`complete` and, when not, why and how many: the numbers come from the final rows, not from history."""
    reasons = []
    noun = what.removesuffix("s")  # `what` names them in the plural
    if stopped_for_cost:
        reasons.append("stopped at --max-cost")
    if failed:
        reasons.append(f"{plural(failed, noun)} failed after retries")
    if not_run:
        reasons.append(f"{plural(not_run, noun)} not run")
    if unscored:
        reasons.append(f"{plural(unscored, noun)} {'lacks' if unscored == 1 else 'lack'} a judge or label score")
    if not reasons:
        return {"complete": True, "incomplete": None}
    return {
        "complete": False,
        "incomplete": {
            "reason": "; ".join(reasons),
            "failed": failed,
            "not_run": not_run,
            "unscored": unscored,
            "stopped_for_max_cost": stopped_for_cost,
        },
    }


def status_lines(report: dict) -> list[str]:
    """What a reader must see before any number: an incomplete run, a context cut to fit."""
    lines = []
    if not report.get("complete", True):
        reason = (report.get("incomplete") or {}).get("reason") or "not finished"
        lines.append(f"INCOMPLETE RUN: {reason}; run the same command again to finish it.")
    lines += report.get("warnings", [])
    return lines


def write_reports(run_dir: Path, report: dict, markdown: str) -> None:
    write_atomic(run_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    write_atomic(run_dir / "report.md", markdown)
