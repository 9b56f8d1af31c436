"""`realtalk report --errata FILE`: every run scored against the corrected golds beside the published ones.

Each entry is placed against the chats the runs name (their files from `--chats` and the manifests, else their
rows) as `probe run --errata` places it (tasks/probe/errata.py). A run's changed rows are scored again from
their saved predictions: F1 against the corrected gold (`F1 (errata applied)`), and the judge's verdict against
it where the run recorded one from its judge and judge prompt (`probe run|rescore --errata` with a judge);
when a changed row lacks one, the run's `judge (errata applied)` is left out ('-') rather than averaged over
the other rows, and the report says how many are missing. The leaderboard keeps ranking by the published gold.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from realtalk_cli.data.errata import Errata
from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.runs import Run, named_judge
from realtalk_cli.tasks.probe import errata as fixes
from realtalk_cli.tasks.probe.protocols import probe_protocol

METRICS = {"f1_errata": "F1 (errata applied)", "judge_score_errata": "judge (errata applied)"}


def _catalog(runs: list[Run], rows: dict[str, list[dict]], chat_files: list[Path]) -> dict[str, fixes.ChatQuestions]:
    named = []
    for run in runs:
        datasets = run.manifest.get("datasets")
        named += [Path(p) for p in datasets if isinstance(p, str)] if isinstance(datasets, dict) else []
    catalog = fixes.catalog_from_files(chat_files)  # given by the user: a bad one is an error
    for name, known in fixes.catalog_from_files(named, quiet=True).items():
        catalog.setdefault(name, known)
    return fixes.add_rows(catalog, [r for run in runs for r in rows[run.id]])


def _judge_prompt(rows: list[dict], run: Run) -> str | None:
    """The judge prompt (hash) most of the verdicts of the run's judge were given under (its entries under
    `judges`; the top-level fields in rows without them)."""
    judge = named_judge(run.manifest) or ((run.judge, run.judge) if run.judge else None)
    if judge is None:
        return None
    key, label = judge
    prompts: Counter = Counter()
    for r in rows:
        judges = r.get("judges")
        if isinstance(judges, dict) and judges:
            entry = judges.get(key)
            prompts[entry.get("prompt") if isinstance(entry, dict) else None] += 1
        elif r.get("judge_model") == label:
            prompts[r.get("judge_prompt")] += 1
    prompts.pop(None, None)
    return prompts.most_common(1)[0][0] if prompts else None


def _protocol(run: Run):
    try:
        return probe_protocol(run.parameters.get("compat") or None)
    except (RealtalkError, TypeError):
        return None  # a run of a protocol this version does not know: realtalk's F1 only


def _corrected(column: np.ndarray, fixed: list[dict | None], name: str) -> np.ndarray:
    """A score column with the erratum's score in place of each changed row's."""
    out = column.copy()
    for i, fix in enumerate(fixed):
        if fix:
            v = fix.get(name)
            out[i] = float(v) if isinstance(v, (int, float)) else np.nan
    return out


def apply(runs: list[Run], errata: Errata, chat_files: list[Path]) -> tuple[dict, dict[int, dict]]:
    """Score every run's answers against the corrected golds (their rows read again and held: errata are for
    datasets of thousands of questions), adding the errata columns to the runs' scores; report.json's `errata`
    section, and the corrected gold of each changed item (by item number) for the page."""
    rows = {run.id: list(run.answered_rows()) for run in runs}
    catalog = _catalog(runs, rows, chat_files)
    everything = fixes.place(errata, catalog, {(r["chat"], r["qa_index"]) for run in runs for r in rows[run.id]})
    per_run = {}
    corrected: dict[int, dict] = {}
    for run in runs:
        mine = rows[run.id]
        placements = fixes.place(errata, catalog, {(r["chat"], r["qa_index"]) for r in mine})
        fixes.apply_errata(mine, placements, _protocol(run))
        prompt = _judge_prompt(mine, run)
        missing = sum(1 for r in mine if r.get("erratum") and not fixes.verdict_valid(r, run.judge, prompt))
        fixed = [r.get("erratum") for r in mine]
        # the run's own scores (as the leaderboard counts them), against the corrected gold where it changed
        scores = run.answers.scores
        scores["f1_errata"] = _corrected(scores["f1"], fixed, "f1")
        if run.judge is not None and not missing:
            scores["judge_score_errata"] = _corrected(scores["judge_score"], fixed, "judge_score")
        for item, fix in zip(run.answers.items.tolist(), fixed, strict=True):
            if fix:
                corrected.setdefault(item, {"id": fix.get("id"), "gold": fix.get("gold")})
        section = fixes.errata_section(errata, placements, mine, run.judge, prompt, catalog, run.judge_protocol or "")
        per_run[run.id] = {
            "counts": section["counts"],
            "ceiling": section["ceiling"],
            "changed": [c["id"] for c in section["changed"]],
            "judge_missing": missing if run.judge else None,
            "warnings": section["warnings"],
        }
    counts = Counter(p.status for p in everything)
    changed = {}
    for run in runs:
        for r in sorted((r for r in rows[run.id] if r.get("erratum")), key=lambda r: (r["chat"], r["qa_index"])):
            fix = r["erratum"]
            entry = changed.setdefault(
                fix["id"],
                {
                    "id": fix["id"],
                    "chat": r["chat"],
                    "qa_index": r["qa_index"],
                    "category": f"{r['category']} {r.get('category_name') or ''}".strip(),
                    "published": fix["published"],
                    "corrected": fix["gold"],
                    "runs": [],
                },
            )
            entry["runs"].append(run.id)
    section = {
        "file": str(errata.path),
        "sha256": errata.sha256,
        "entries": len(errata.entries),
        "counts": {s: counts.get(s, 0) for s in fixes.STATUSES},
        "not_found": [
            {"id": p.erratum.question_id, "entry": p.erratum.position, "reason": p.reason}
            for p in everything
            if p.status == "not-found"
        ],
        "changed": list(changed.values()),
        "runs": per_run,
        "warnings": sorted({w for run in per_run.values() for w in run["warnings"]}),
    }
    return section, corrected


def lines(section: dict) -> list[str]:
    """The errata in words, for the terminal and Markdown (escaped by the caller)."""
    c = section["counts"]
    out = [
        f"errata {section['file']} (sha256 {section['sha256'][:12]}): {section['entries']} entries, {c['applied']} "
        f"golds corrected in these runs, {c['evidence-only']} evidence-only (WRONG_CITATION: gold kept), "
        f"{c['not-asked']} not asked, {c['outside']} outside these chats, {c['not-found']} naming no question",
        "ceiling = share of asked questions whose published gold is right (not corrected); LoCoMo category 5 was "
        "not audited; the leaderboard ranks by the published gold",
    ]
    for run_id, r in section["runs"].items():
        ceiling = (r["ceiling"].get("overall") or {}).get("ceiling")
        note = f"ceiling {ceiling:.3f}" if ceiling is not None else "no ceiling (no audited question)"
        if r["judge_missing"]:
            note += (
                f"; judge (errata applied) not shown: {r['judge_missing']} changed items lack a verdict against the "
                "corrected gold (`realtalk probe rescore RUN --errata FILE --judge-model M`)"
            )
        out.append(f"{run_id}: {len(r['changed'])} items changed; {note}")
    out += section.get("warnings", [])
    for n in section["not_found"]:
        out.append(f"names no question: {n['id']} (entry [{n['entry']}]): {n['reason']}")
    return out
