"""What every model run (probe, simulate) shares: prompt files, the run's identity, the manifest, prices,
which rows count (a later success replaces a failure), completeness, and writing the reports.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from realtalk_cli import __version__
from realtalk_cli.data.formats import chat_paths
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_jsonl, write_atomic
from realtalk_cli.llm.providers import Endpoint, Prices, config_dir

# Options that change how a run goes, never what it answers: they may differ between a run and its resume.
RUN_ONLY = {
    "out", "concurrency", "limit", "max_cost", "api_key_env", "use_cache", "force", "timeout", "memory_timeout",
    "judge_model", "price_in", "price_out", "bertscore", "fail_under",
}  # fmt: skip


def prompt_text(name: str) -> str:
    path = config_dir() / "prompts" / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such prompt file") from None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def fill(template: str, **values: str) -> str:
    # str.format would choke on braces in chat text and in the judge's JSON example.
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def command_line() -> str:
    return " ".join(["realtalk", *sys.argv[1:]]) if sys.argv else ""


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _accepts(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint in (int, float):  # TOML has no bool-as-number; 2 is a fine float
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, (str, Path))
    return isinstance(value, origin or hint)


def check_settings(settings: dict, options_class: type, source: str) -> None:
    """Types as the options declare them (`chats = "path"` is not a list) and counts of at least 1."""
    hints = typing.get_type_hints(options_class)
    for key, value in settings.items():
        if key == "chats":
            ok = isinstance(value, list) and all(isinstance(v, (str, Path)) for v in value)
            if not ok:
                raise RealtalkError(f'{source}: chats must be a list of paths, e.g. chats = ["a.json"]')
        elif key in hints and not _accepts(hints[key], value):
            raise RealtalkError(f"{source}: {key} = {value!r} is not a {hints[key]}")
        elif isinstance(value, int) and abs(value) >= 2**53:  # JSON (run.json, reports) cannot hold it exactly
            raise RealtalkError(f"{source}: {key} = {value} is too large")
    for key in ("top_k", "concurrency", "limit", "max_context_tokens", "sessions"):
        if isinstance(settings.get(key), int) and settings[key] < 1:
            raise RealtalkError(f"{source}: {key} must be at least 1, not {settings[key]}")
    for key in ("timeout", "memory_timeout"):
        if isinstance(settings.get(key), (int, float)) and not settings[key] > 0:  # NaN too
            raise RealtalkError(f"{source}: {key} must be more than 0 seconds")


def dataset_hashes(files: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in chat_paths(files)}


def run_identity(options: Any, endpoint: Endpoint, files: list[Path], prompts: dict, sampling: dict) -> dict:
    """Everything that changes a run's answers; a run folder resumes only a run with the same identity.

    Every option counts unless it is listed in RUN_ONLY, so an option added later is part of it by default.
    Chats are named by file name (a moved folder still resumes) and pinned by sha256.
    """
    params = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items() if k not in RUN_ONLY}
    params.pop("model", None)
    params.pop("base_url", None)
    return {
        "model": endpoint.label,
        "endpoint": endpoint.base_url or None,
        **params,
        "prompts": prompts,
        "sampling": sampling,
        "chats": {Path(k).name: v for k, v in dataset_hashes(files).items()},
    }


PREDICTION_FIELDS = {"chat": str, "model": str}


def read_predictions(path: Path, fields: dict[str, type]) -> list[dict]:
    """predictions.jsonl, every row checked for the fields a run relies on: a hand-edited or foreign row is
    one line naming the row, not a crash halfway through a report."""
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
    if stopped_for_cost:
        reasons.append("stopped at --max-cost")
    if failed:
        reasons.append(f"{failed} {what} failed after retries")
    if not_run:
        reasons.append(f"{not_run} {what} not run")
    if unscored:
        reasons.append(f"{unscored} {what} lack a judge or label score")
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


def load_prices(models: list[Endpoint], max_cost: float | None, price_in: float | None, price_out: float | None):
    """prices.toml plus --price-in/--price-out (for the first, answering model); with --max-cost every model
    that will be called must have a price, checked before any request."""
    prices = Prices.load()
    if price_in is not None or price_out is not None:
        if (price_in or 0) < 0 or (price_out or 0) < 0:
            raise RealtalkError("--price-in/--price-out must not be negative")
        prices.table[models[0].model] = {"input": price_in or 0.0, "output": price_out or 0.0}
    if max_cost is not None:
        if max_cost <= 0:
            raise RealtalkError("--max-cost must be more than 0")
        for n, m in enumerate(models):
            if not m.offline and not prices.known(m.model):
                # --price-in/--price-out price the answering model only: for a judge or labeller, prices.toml
                way = (
                    "pass --price-in/--price-out"
                    if n == 0
                    else f"run with a priced model (the flags price {models[0].label})"
                )
                raise RealtalkError(f"no price for {m.label}; add it to prices.toml or {way}")
    return prices


def manifest(options: Any, files: list[Path], **fields: Any) -> dict:
    """Provenance of a run: version, git commit, dataset hashes, parameters, command; plus the run's own fields."""
    return {
        "realtalk_version": __version__,
        "git_commit": _git_commit(),
        **fields,
        "datasets": dataset_hashes(files),
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "command": command_line(),
    }


def write_reports(run_dir: Path, report: dict, markdown: str) -> None:
    write_atomic(run_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    write_atomic(run_dir / "report.md", markdown)
