"""Persona-simulation reports: per-speaker means of every score, mean ± std over speakers; report.md."""

from __future__ import annotations

import statistics

from realtalk_cli.llm.spending import usage_lines
from realtalk_cli.tasks.runs.results import status_lines

EI_LABELS = ("reflective", "grounding", "sentiment", "emotion")
SCORES = ("rouge_l", "bertscore", *(f"{k}_agreement" for k in EI_LABELS), "intimacy_diff", "empathy_diff")


def _mean(values: list) -> float | None:
    known = [float(v) for v in values if v is not None]
    return statistics.mean(known) if known else None


def build_report(rows: list[dict], manifest: dict) -> dict:
    ok = [r for r in rows if r.get("error") is None]
    people: dict[str, dict] = {}
    for person in sorted({r["person"] for r in ok}):
        mine = [r for r in ok if r["person"] == person]
        people[person] = {
            "targets": len(mine),
            "chats": sorted({r["chat"] for r in mine}),
            **{s: _mean([r.get(s) for r in mine]) for s in SCORES},
        }
    overall = {}
    for s in SCORES:
        values = [p[s] for p in people.values() if p[s] is not None]
        overall[s] = {
            "mean": statistics.mean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "speakers": len(values),
        }
    return {
        "overall": overall,
        "speakers": people,
        "targets": len(ok),
        "failed_targets": len(rows) - len(ok),
        "manifest": manifest,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _split_lines(split: dict | None) -> list[str]:
    if not split or split["name"] == "all":
        return []
    chats = ", ".join(f"{p}: {c}" for p, c in (split["test_chats"] or {}).items())
    lines = [f"- split: `{split['name']}` (test chats {chats}; first {split['sessions']} sessions)"]
    if split["left_out"]:
        lines.append(f"- left out, no test chat in this split: {', '.join(split['left_out'])}")
    return lines


def report_markdown(report: dict) -> str:
    m = report["manifest"]
    lines = [
        "# realtalk simulate report",
        "",
        *(f"> **{line}**\n" for line in status_lines(report)),
        f"- model: `{m['model']}`; EI labels: `{m['ei_backend']}`",
        *_split_lines(m.get("split")),
        f"- BERTScore: `{m['bertscore_model'] or 'not computed'}`",
        f"- targets: {report['targets']} ({report['failed_targets']} failed); prompts: {m['prompts']}",
        "",
        "| speaker | targets | " + " | ".join(SCORES) + " |",
        "|---|---:|" + "---:|" * len(SCORES),
    ]
    for person, p in report["speakers"].items():
        lines.append(f"| {person} | {p['targets']} | " + " | ".join(_fmt(p[s]) for s in SCORES) + " |")
    lines.append(
        "| **mean ± std** | | "
        + " | ".join(f"{_fmt(report['overall'][s]['mean'])} ± {_fmt(report['overall'][s]['std'])}" for s in SCORES)
        + " |"
    )
    if isinstance(report.get("usage"), dict):
        lines += ["", *(line[0].upper() + line[1:] + "." for line in usage_lines(report["usage"]))]
    return "\n".join(lines) + "\n"
