"""Judge audits beside the runs they concern: `realtalk report RUN... AUDIT...` takes the folders of `realtalk probe
judge-audit` among its run folders (recognised by their run.json or report.json, `task = judge-audit`); they are
not ranked, and each group of runs graded by the same judge (protocol + model, e.g. `mem0/openai:gpt-4o-mini`)
shows that judge's false-accept rate beside its scores. When several audits measured one judge, the first
complete one given is used and the others are listed.
"""

from __future__ import annotations

import math
from pathlib import Path

from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.probe.audit import is_audit


def split(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Run folders and judge-audit folders, each in the order given."""
    audits = [p for p in paths if p.is_dir() and is_audit(p)]
    return [p for p in paths if p not in audits], audits


def _rate(value, path: Path, where: str) -> dict:
    if not isinstance(value, dict):
        raise RealtalkError(f"{path}: '{where}' is missing or not an object")
    out = {}
    for key in ("rate", "low", "high"):
        v = value.get(key)
        ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1)
        if not ok:
            raise RealtalkError(f"{path}: '{where}.{key}' must be a number from 0 to 1, got {v!r:.40}")
        out[key] = v
    for key in ("n", "accepted"):
        v = value.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise RealtalkError(f"{path}: '{where}.{key}' must be a count, got {v!r:.40}")
        out[key] = v
    return out


def load_audit(path: Path) -> dict:
    """What the leaderboard shows of an audit: its judge, its rates, whether it finished."""
    report_path = path / "report.json"
    if not report_path.is_file():
        raise RealtalkError(f"{path}: a judge audit without report.json (not finished?): run it again first")
    report = read_json(report_path)
    if not isinstance(report, dict):
        raise RealtalkError(f"{report_path}: expected a JSON object")
    protocol, model = report.get("protocol"), report.get("model")
    if not isinstance(protocol, str) or not isinstance(model, str):
        raise RealtalkError(f"{report_path}: 'protocol' and 'model' must name the judge")
    return {
        "path": str(path),
        "judge": f"{protocol}/{model}",
        "complete": report.get("complete") is True,
        "false_accept": _rate(report.get("false_accept"), report_path, "false_accept"),
        "true_accept": _rate(report.get("true_accept"), report_path, "true_accept"),
    }


def attach(board: dict, audits: list[dict]) -> None:
    """Each group (and its runs) gets its judge's audit; report.json lists every audit given."""
    chosen: dict[str, dict] = {}
    for audit in sorted(audits, key=lambda a: not a["complete"]):  # a complete audit before an unfinished one
        chosen.setdefault(audit["judge"], audit)
    for audit in audits:
        audit["used"] = chosen.get(audit["judge"]) is audit
        audit["groups"] = [g["id"] for g in board["groups"] if g["judge"] == audit["judge"]]
    for group in board["groups"]:
        group["judge_audit"] = _summary(chosen.get(group["judge"]))
    by_group = {g["id"]: g["judge_audit"] for g in board["groups"]}
    for entry in board["runs"]:
        entry["judge_audit"] = by_group.get(entry.get("group"))
    board["judge_audits"] = audits


def _summary(audit: dict | None) -> dict | None:
    if audit is None:
        return None
    return {
        "path": audit["path"],
        "complete": audit["complete"],
        "false_accept": audit["false_accept"],
        "true_accept": audit["true_accept"],
    }


def audit_text(audit: dict | None) -> str:
    """`false-accept rate 0.652 [0.435, 0.826] (15 of 23 wrong answers accepted; audit runs/a)`, or ''."""
    if not audit:
        return ""
    fa = audit["false_accept"]
    if fa["rate"] is None:
        return f"judge audit {audit['path']}: no graded answers"
    interval = "" if fa["low"] is None else f" [{fa['low']:.3f}, {fa['high']:.3f}]"
    unfinished = ", unfinished" if not audit["complete"] else ""
    return (
        f"false-accept rate {fa['rate']:.3f}{interval} ({fa['accepted']} of {fa['n']} wrong answers accepted; "
        f"audit {audit['path']}{unfinished})"
    )
