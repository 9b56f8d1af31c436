"""Persona consistency across chats, and two datasets side by side with plots and a report."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from realtalk_cli.analysis.ei import METRIC_NAMES, run_ei
from realtalk_cli.analysis.plots import FORMATS, dataset_name, make_plots, speaker_values
from realtalk_cli.analysis.stats import chat_stats, total_stats
from realtalk_cli.data.formats import chat_paths, load_chat, read_json
from realtalk_cli.data.model import person_key
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import write_atomic

MATCHING = (
    "A person is a dataset plus a first name, case-insensitive (REALTALK: 'Fahim Khan' in one chat = 'fahim' in "
    "another); in LoCoMo every chat has its own two people (its three Johns are different people), so LoCoMo "
    "speakers never recur."
)


def person_id(dataset: str | None, chat: str, speaker: str) -> str:
    """Who a speaker is across chats: the same first name is the same person only within one dataset, and in
    LoCoMo (generated personas, names reused across unrelated chats) only within one chat."""
    if dataset == "locomo":
        return f"locomo:{chat}:{speaker.strip()}"
    return f"{dataset or 'unknown'}:{person_key(speaker)}"


def _mean_abs_diff(pairs: list[tuple[dict, dict]], metric: str) -> float | None:
    diffs = [abs(a[metric] - b[metric]) for a, b in pairs if a[metric] is not None and b[metric] is not None]
    return statistics.mean(diffs) if diffs else None


def consistency(metrics: dict) -> dict:
    """The paper's persona consistency: |metric in chat A - metric in chat B| for each person in 2+ chats, beside
    a between-person baseline: the same |difference| between appearances of different people of one dataset."""
    appearances: dict[str, list[tuple[str, str, dict]]] = {}
    for chat, entry in metrics["chats"].items():
        for speaker, values in entry["speakers"].items():
            pid = person_id(entry.get("dataset"), chat, speaker)
            appearances.setdefault(pid, []).append((chat, speaker, values))
    people = {}
    for pid, seen in sorted(appearances.items()):
        if len(seen) < 2:
            continue
        pairs = [(a[2], b[2]) for a, b in itertools.combinations(seen, 2)]
        people[pid] = {
            "dataset": pid.split(":", 1)[0],
            "chats": [c for c, _, _ in seen],
            "names": {c: sp for c, sp, _ in seen},
            "abs_diff": {m: _mean_abs_diff(pairs, m) for m in METRIC_NAMES},
        }
    # Baseline: every pair of appearances of two different people in a dataset that has recurring people.
    datasets = {p["dataset"] for p in people.values()}
    flat = [(pid, values) for pid, seen in appearances.items() for _, _, values in seen]
    between_pairs = [
        (a, b)
        for (pa, a), (pb, b) in itertools.combinations(flat, 2)
        if pa != pb and pa.split(":", 1)[0] == pb.split(":", 1)[0] and pa.split(":", 1)[0] in datasets
    ]
    mean_diff, between, ratio = {}, {}, {}
    for metric in METRIC_NAMES:
        values = [p["abs_diff"][metric] for p in people.values() if p["abs_diff"][metric] is not None]
        mean_diff[metric] = statistics.mean(values) if values else None
        between[metric] = _mean_abs_diff(between_pairs, metric)
        ratio[metric] = (
            mean_diff[metric] / between[metric] if mean_diff[metric] is not None and between[metric] else None
        )
    return {
        "backend": metrics.get("backend"),
        "matching": MATCHING,
        "people": people,
        "mean_abs_diff": mean_diff,
        "between_person_abs_diff": between,
        "between_person_pairs": len(between_pairs),
        "within_over_between": ratio,
    }


def load_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise RealtalkError(f"{path}: no such file (run `realtalk analyze ei ... --out {run_dir}` first)")
    metrics = read_json(path)
    _check_metrics(metrics, path)
    return metrics


MAX_METRIC = 1e9  # no EI metric or message count comes near this; beyond it the file is corrupt


def _check_metrics(metrics, path: Path) -> None:
    """The shape `analyze ei` writes; a chat file or a hand-edited metrics.json is one line, not a traceback."""
    hint = "expected the metrics.json of `realtalk analyze ei`"
    if not isinstance(metrics, dict) or not isinstance(metrics.get("chats"), dict):
        raise RealtalkError(f"{path}: no 'chats' object; {hint}")
    for chat, entry in metrics["chats"].items():
        speakers = entry.get("speakers") if isinstance(entry, dict) else None
        if not isinstance(speakers, dict):
            raise RealtalkError(f"{path}: chats.{chat}: no 'speakers' object; {hint}")
        for speaker, values in speakers.items():
            if not isinstance(values, dict):
                raise RealtalkError(f"{path}: chats.{chat}.speakers.{speaker}: expected an object of metrics")
            for name, value in values.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise RealtalkError(f"{path}: chats.{chat}.speakers.{speaker}.{name}: {value!r} is not a number")
                if value is not None and not abs(value) <= MAX_METRIC:
                    raise RealtalkError(f"{path}: chats.{chat}.speakers.{speaker}.{name}: {value!r} is not plausible")


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def compare(
    a_dir: Path,
    b_dir: Path,
    out: Path,
    backend: str = "lexicon",
    model: str | None = None,
    per: str = "message",
    progress=None,
    hf_models: dict[str, str] | None = None,
    fmt: str = "png",
    llm: dict | None = None,
) -> dict:
    """`llm`: base_url, api_key_env, max_cost, dry_run for the llm backend (dry run: the plan per dataset)."""
    llm = llm or {}
    if fmt not in FORMATS:
        raise RealtalkError(f"--format {fmt!r}: choose {', '.join(FORMATS)}")
    for directory in (a_dir, b_dir):  # both checked before any work is done
        if not directory.is_dir():
            raise RealtalkError(f"{directory}: not a directory of chats")
    if a_dir.resolve().name == b_dir.resolve().name:
        raise RealtalkError(f"{a_dir} and {b_dir} have the same folder name; give them different names")
    if out.exists() and not out.is_dir():
        raise RealtalkError(f"--out {out}: a file is in the way; the comparison needs a folder")
    if not llm.get("dry_run") and not llm.get("force") and (out / "report.md").exists() and _finished(out):
        raise RealtalkError(f"{out}: holds a comparison already; pass --force to overwrite it, or another --out")
    if llm.get("dry_run"):
        return {
            d.resolve().name: run_ei(
                [load_chat(p) for p in chat_paths([d])], out / f"ei-{d.resolve().name}", backend, model, per, **llm
            )
            for d in (a_dir, b_dir)
        }
    out.mkdir(parents=True, exist_ok=True)
    sides = []
    for directory in (a_dir, b_dir):
        chats = [load_chat(p) for p in chat_paths([directory])]
        label = directory.resolve().name
        stats = [chat_stats(c) for c in chats]
        ei_out = out / f"ei-{label}"
        metrics = run_ei(chats, ei_out, backend, model, per, progress=progress, hf_models=hf_models, **llm)
        sides.append({"label": label, "chats": chats, "stats": stats, "total": total_stats(stats), "metrics": metrics})
    figures = make_plots(sides, out, fmt)
    summary = {
        "datasets": [s["label"] for s in sides],
        "names": [dataset_name(s) for s in sides],
        "backend": sides[0]["metrics"]["backend"],
        "warning": sides[0]["metrics"]["warning"],
        "stats": {s["label"]: s["total"].row() for s in sides},
        "metrics": {s["label"]: {m: _mean_std(speaker_values(s["metrics"], m)) for m in METRIC_NAMES} for s in sides},
        "plots": {k: f.file for k, f in figures.items()},
        "captions": {k: f.caption for k, f in figures.items()},
    }
    # an EI run with failed labels makes the comparison incomplete: exit 3, and the same command resumes it
    unfinished = [f"{s['label']}: {s['metrics']['incomplete']['reason']}" for s in sides if not _complete(s["metrics"])]
    summary["complete"] = not unfinished
    summary["incomplete"] = {"reason": "; ".join(unfinished)} if unfinished else None
    write_atomic(out / "compare.json", json.dumps(summary, indent=2, ensure_ascii=False))
    write_atomic(out / "report.md", _report(summary))
    return summary


def _complete(metrics: dict) -> bool:
    return metrics.get("complete") is not False


def _finished(out: Path) -> bool:
    """A comparison is there and complete (an incomplete one is resumed by the same command)."""
    try:
        return _complete(json.loads((out / "compare.json").read_text()))
    except (OSError, ValueError, AttributeError):
        return True


def _report(summary: dict) -> str:
    a, b = summary["datasets"]
    name_a, name_b = summary["names"]
    lines = []
    if not summary["complete"]:
        reason = summary["incomplete"]["reason"]
        lines += [f"> **INCOMPLETE RUN: {reason}; run the same command again to finish it.**", ""]
    lines += [
        f"# {name_a} vs {name_b}",
        "",
        f"EI labels by: `{summary['backend']}`",
        "",
        f"> Note: {summary['warning']}.",
        "",
        "## Statistics",
        "",
        f"| | {name_a} | {name_b} |",
        "|---|---:|---:|",
    ]
    keys = [k for k in summary["stats"][a] if k not in ("chat", "dataset", "aggregation")]
    keys += [k for k in summary["stats"][b] if k not in keys and k not in ("chat", "dataset", "aggregation")]
    for k in keys:
        lines.append(f"| {k} | {summary['stats'][a].get(k, '-')} | {summary['stats'][b].get(k, '-')} |")
    lines += [
        "",
        "(days_spanned is the mean per chat; per-session figures pool all chats.)",
        "",
        "## EI metrics (mean ± std over speakers)",
        "",
        f"| metric | {name_a} | {name_b} |",
        "|---|---:|---:|",
    ]
    for m in METRIC_NAMES:
        lines.append(f"| {m} | {summary['metrics'][a][m]} | {summary['metrics'][b][m]} |")
    lines.append("")
    for n, (name, file) in enumerate(summary["plots"].items(), start=1):
        caption = summary["captions"][name]
        lines += [f"## {name.replace('_', ' ')}", "", f"![{caption}]({file})", "", f"*Figure {n}.* {caption}", ""]
    return "\n".join(lines)
