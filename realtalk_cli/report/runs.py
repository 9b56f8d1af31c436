"""Saved run directories, read without writing to them: manifest, report.json and predictions.jsonl.

Runs are read defensively: fields that later versions add (date-normalised F1, retrieval, memory, run
completeness, cached tokens) are used when present and shown as missing otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from realtalk_cli.data.formats import read_json
from realtalk_cli.data.model import matches_category
from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError

PROBE_METRICS = {
    "f1": "F1",
    "f1_date_normalised": "date-normalised F1",
    "judge_score": "judge",
    "f1_errata": "F1 (errata applied)",  # only with `report --errata` (report/errata.py), never read from a run
    "judge_score_errata": "judge (errata applied)",
    "f1_locomo": "F1 (LoCoMo, rounded)",
    "f1_mem0": "F1 (mem0, token sets)",
    "recall": "evidence recall",  # share of evidence messages the retriever or memory put in the prompt
}
SIMULATE_METRICS = {
    "rouge_l": "ROUGE-L",
    "bertscore": "BERTScore",
    "reflective_agreement": "reflective agr.",
    "grounding_agreement": "grounding agr.",
    "sentiment_agreement": "sentiment agr.",
    "emotion_agreement": "emotion agr.",
    "intimacy_diff": "|intimacy diff|",
    "empathy_diff": "|empathy diff|",
}
_PROBE_FIELDS = ("chat", "qa_index", "question", "category")
_SIMULATE_FIELDS = ("chat", "position", "reference")


def read_rows(path: Path) -> list[dict]:
    """The rows of a predictions file; a torn last line (a run killed mid-write) is ignored, not repaired."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such file") from None
    except OSError as e:
        raise RealtalkError(f"{path}: cannot read: {e.strerror}") from None
    lines = raw.split(b"\n")
    if not raw.endswith(b"\n"):
        lines = lines[:-1]  # torn: the writer was stopped in the middle of this line
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise RealtalkError(f"{path}: line {n}: not valid JSON") from None
        if not isinstance(row, dict):
            raise RealtalkError(f"{path}: line {n}: expected a JSON object")
        rows.append(row)
    return rows


@dataclass
class Run:
    """One saved run: what it was (manifest) and what it answered (rows without an error)."""

    path: Path
    kind: str  # "probe" or "simulate"
    manifest: dict
    summary: dict  # the run's own report.json ({} when missing)
    rows: list[dict]
    failed: int
    all_rows: list[dict] = field(repr=False, default_factory=list)
    id: str = ""

    @property
    def parameters(self) -> dict:
        p = self.manifest.get("parameters")
        return p if isinstance(p, dict) else {}

    @property
    def model(self) -> str:
        return str(self.manifest.get("model") or self.parameters.get("model") or _first(self.rows, "model") or "?")

    @property
    def judge(self) -> str | None:
        judge = self.manifest.get("judge_model") or _first(self.rows, "judge_model")
        return str(judge) if judge else None

    @property
    def context(self) -> str:
        """Protocol and context: full, retrieval (k), events; with the compatibility layout when one was used."""
        p = self.parameters
        if self.kind == "simulate":
            speaker = p.get("speaker") or "every speaker"
            return (
                f"simulate {speaker}, split {p.get('split', 'all')}, {p.get('targets', 'messages')}, "
                f"{p.get('sessions', '?')} sessions of history"
            )
        context = str(p.get("context") or "full")
        if context == "memory":
            return context
        if context != "full" and context != "events" and p.get("context_tokens"):
            context += f" {p['context_tokens']} tokens"
        elif context == "retrieval" and p.get("top_k"):
            context += f" k={p['top_k']}"
        return f"{context} ({p['compat']})" if p.get("compat") else context

    @property
    def memory(self) -> str | None:
        """The memory plug-in with its options (`hybrid k=20`), from report.json's memory section or the flags."""
        spec = self.summary.get("memory") or self.manifest.get("memory") or self.parameters.get("memory")
        if isinstance(spec, dict):
            name = str(spec.get("spec") or spec.get("name") or "?")
            options = spec.get("options") if isinstance(spec.get("options"), dict) else {}
            return " ".join([name, *(f"{k}={v}" for k, v in sorted(options.items()))])
        return str(spec) if spec else None

    @property
    def incomplete(self) -> str | None:
        """Why the run cannot be taken as finished, or None: only `"complete": true` in report.json, which a
        run writes last, says it finished (a run killed half-way has answered rows and no report.json)."""
        if self.summary.get("complete") is False:
            detail = self.summary.get("incomplete")
            reason = detail.get("reason") if isinstance(detail, dict) else None
            return reason if isinstance(reason, str) and reason else "its report.json says it did not finish"
        if self.failed:
            return f"{plural(self.failed, 'item')} failed"
        if not self.summary:
            return "no report.json: the run may not have finished"
        if self.summary.get("complete") is not True:
            return "its report.json does not say it finished"
        return None

    @property
    def complete(self) -> bool:
        return self.incomplete is None

    @property
    def label(self) -> str:
        parts = [self.model] + ([] if self.memory and self.context == "memory" else [self.context])
        if self.memory:
            parts.append(f"memory {self.memory}")
        if self.judge:
            parts.append(f"judge {self.judge}")
        return ", ".join(parts)

    def key(self, row: dict) -> tuple:
        if self.kind == "probe":
            return (row["chat"], row["qa_index"], row["question"])
        return (row["chat"], row["position"], row.get("speaker"))

    def usage(self) -> dict:
        rows = self.all_rows
        run = self.summary.get("run") if isinstance(self.summary.get("run"), dict) else {}
        wall = run.get("wall_time_s")  # shown as '-' unless it is a duration
        cost = sum(_number(r.get("cost_usd")) + _number(r.get("judge_cost_usd")) + _erratum_cost(r) for r in rows)
        usage = {
            "prompt_tokens": int(sum(_number(r.get("prompt_tokens")) for r in rows)),
            "completion_tokens": int(sum(_number(r.get("completion_tokens")) for r in rows)),
            "cost_usd": round(cost, 6),
            "wall_time_s": wall if _is_number(wall) and 0 <= wall <= _MAX_USAGE else None,
        }
        if any("cached_tokens" in r for r in rows):
            usage["cached_tokens"] = int(sum(_number(r.get("cached_tokens")) for r in rows))
        return usage


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _erratum_cost(row: dict) -> float:
    """The judge's verdict against an erratum's corrected gold (`probe run --errata`), paid beside the row's own."""
    fix = row.get("erratum")
    value = _number(fix.get("judge_cost_usd")) if isinstance(fix, dict) else 0.0
    return value if 0 <= value <= _MAX_USAGE else 0.0


def _first(rows: list[dict], key: str):
    return next((r[key] for r in rows if r.get(key)), None)


def load_run(path: Path) -> Run:
    """A probe or simulate run directory; bad input is one RealtalkError naming the file."""
    if not path.exists():
        raise RealtalkError(f"{path}: no such run directory")
    if not path.is_dir():
        raise RealtalkError(f"{path}: not a directory (give the run directory, not a file in it)")
    pred_path = path / "predictions.jsonl"
    if not pred_path.exists():
        raise RealtalkError(f"{path}: not a run directory (no predictions.jsonl)")
    report_path = path / "report.json"
    for file in (pred_path, report_path):  # a FIFO or /dev/zero in a run folder would block or fill memory
        if file.exists() and not file.is_file():
            raise RealtalkError(f"{file}: not a regular file")
    summary = read_json(report_path) if report_path.exists() else {}
    if not isinstance(summary, dict):
        raise RealtalkError(f"{report_path}: expected a JSON object")
    if not isinstance(summary.get("complete", True), bool):  # a run is complete only when it says so exactly
        got = orjson.dumps(summary["complete"]).decode()
        raise RealtalkError(f"{report_path}: 'complete' must be true or false, got {got:.40}")
    manifest = summary.get("manifest") if isinstance(summary.get("manifest"), dict) else {}
    rows = read_rows(pred_path)
    kind = _kind(rows, summary)
    required = _PROBE_FIELDS if kind == "probe" else _SIMULATE_FIELDS
    for n, row in enumerate(rows, start=1):
        missing = [k for k in required if k not in row]
        if missing:
            raise RealtalkError(f"{pred_path}: row {n}: missing '{missing[0]}' (not a {kind} predictions file?)")
        problem = _row_problem(row, kind)
        if problem:
            raise RealtalkError(f"{pred_path}: row {n}: {problem}")
    # The last line for a question wins: a resumed run appends the retried answer after the failed one.
    latest: dict[tuple, dict] = {}
    run = Run(path, kind, manifest, summary, [], 0, rows)
    for row in rows:
        latest[run.key(row)] = row
    run.rows = [r for r in latest.values() if r.get("error") is None]
    run.failed = len(latest) - len(run.rows)
    return run


_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "judge_cost_usd")
_MAX_USAGE = 1e15  # tokens or dollars beyond this are a corrupt file, not a run


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row_problem(row: dict, kind: str) -> str | None:
    """Why a row cannot be reported (a wrong type or an impossible number), or None."""
    if not isinstance(row["chat"], str):
        return "'chat' must be a string"
    index = "qa_index" if kind == "probe" else "position"
    if not isinstance(row[index], int) or isinstance(row[index], bool):
        return f"'{index}' must be an integer"
    if kind == "probe" and not isinstance(row["question"], str):
        return "'question' must be a string"
    if kind == "simulate" and not isinstance(row.get("speaker"), (str, type(None))):
        return "'speaker' must be a string"
    for name in PROBE_METRICS if kind == "probe" else SIMULATE_METRICS:
        value = row.get(name)
        if value is None or isinstance(value, bool):
            continue
        if not _is_number(value):
            return f"'{name}' must be a number, got {value!r:.40}"
        if kind == "probe" and not 0 <= value <= 1:
            return f"'{name}' {value} is outside 0..1"
        if abs(value) > _MAX_USAGE:
            return f"'{name}' {value} is not a plausible score"
    for name in _USAGE_FIELDS:
        value = row.get(name)
        if value is not None and not (_is_number(value) and 0 <= value <= _MAX_USAGE):
            return f"'{name}' must be a non-negative number, got {value!r:.40}"
    return None


def _kind(rows: list[dict], summary: dict) -> str:
    if rows:
        return "probe" if "qa_index" in rows[0] else "simulate"
    return "simulate" if "targets" in summary else "probe"


def load_runs(paths: list[Path]) -> list[Run]:
    runs = [load_run(p) for p in paths]
    seen: dict[Path, Path] = {}
    for path in paths:  # a run beside itself would only add a row that is compared with its twin
        first = seen.setdefault(path.resolve(), path)
        if first is not path:
            raise RealtalkError(f"the run {first} is given twice (also as {path}): give each run once")
    kinds = {r.kind for r in runs if r.all_rows or r.summary}
    for run in runs:  # a run killed before its first line says nothing of its kind: it takes the others'
        if not (run.all_rows or run.summary) and len(kinds) == 1:
            run.kind = next(iter(kinds))
    if len(kinds) > 1:
        probe = next(r.path for r in runs if r.kind == "probe")
        sim = next(r.path for r in runs if r.kind == "simulate")
        raise RealtalkError(f"{probe} is a probe run but {sim} a simulate run: report them separately")
    for i, run in enumerate(runs):
        run.id = _run_id(i)
    return runs


def _run_id(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def only_category(runs: list[Run], wanted: str) -> None:
    """Keep each probe run's questions of one category (number or name, as `--category` gives it)."""

    def keep(row: dict) -> bool:
        return matches_category(row.get("category"), row.get("category_name"), wanted)

    if not any(keep(r) for run in runs for r in run.all_rows):
        known = sorted(
            {f"{r.get('category')} {r.get('category_name') or ''}".strip() for run in runs for r in run.all_rows}
        )
        raise RealtalkError(f"--category {wanted}: no question of that category in these runs ({', '.join(known)})")
    for run in runs:  # as load_run: the latest line per question counts
        run.all_rows = [r for r in run.all_rows if keep(r)]
        latest = {run.key(r): r for r in run.all_rows}
        run.rows = [r for r in latest.values() if r.get("error") is None]
        run.failed = len(latest) - len(run.rows)
