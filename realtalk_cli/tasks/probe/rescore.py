"""`probe rescore`: score a saved run's predictions again (F1, and a judge when given) without asking the
answering model; the report keeps the run's manifest, run figures, warnings and memory section.
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import run_folder, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import LLMClient
from realtalk_cli.llm.providers import Prices, resolve_model
from realtalk_cli.tasks.probe.judge import judge_rows, needs_judging
from realtalk_cli.tasks.probe.judges import judge_protocol
from realtalk_cli.tasks.probe.options import PROBE_FILES
from realtalk_cli.tasks.probe.protocols import probe_protocol
from realtalk_cli.tasks.probe.report import build_report, memory_lines, report_markdown
from realtalk_cli.tasks.probe.rows import PROBE_FIELDS, row_key, score_row
from realtalk_cli.tasks.runs.identity import command_line
from realtalk_cli.tasks.runs.results import completeness, final_rows, read_predictions, write_reports


def rescore(
    run_dir: Path,
    judge_model: str | None,
    concurrency: int = 8,
    base_url: str | None = None,
    api_key_env: str | None = None,
    use_cache: bool = True,
    progress=None,
    timeout: float = 120.0,
) -> dict:
    """Score saved predictions again (F1, and the judge when given) without asking the answering model.

    Every answered row is judged again by the given judge."""
    pred_path = run_dir / "predictions.jsonl"
    if not pred_path.exists():
        raise RealtalkError(f"{pred_path}: no such file (is {run_dir} a probe run directory?)")
    report_path = run_dir / "report.json"
    old_report = read_json(report_path) if report_path.exists() else {}
    _check_old_report(old_report, report_path)
    # the run's own protocol's judge grades again (a --compat paper run: the paper's prompt)
    protocol = probe_protocol(_run_compat(old_report, report_path))
    verdicts = judge_protocol(protocol.judge)
    judge_hash = verdicts.prompt_hash
    judge = None
    if judge_model:
        cache = open_cache(use_cache) if verdicts.cached else None
        endpoint = resolve_model(judge_model, base_url, api_key_env)
        judge = LLMClient(endpoint, concurrency=concurrency, cache=cache, prices=Prices.load(), timeout_s=timeout)
    with run_folder(run_dir, None, PROBE_FILES):
        rows = final_rows(read_predictions(pred_path, PROBE_FIELDS), row_key)
        answered = [r for r in rows if r.get("error") is None]
        for r in answered:
            score_row(r, protocol)
        stopped = False
        if judge is not None:
            stopped = judge_rows(rows, judge, verdicts, progress, lambda: False, everything=True)
        write_jsonl(pred_path, rows)
        m = old_report.get("manifest", {})
        m["judge_model"] = judge.endpoint.label if judge else m.get("judge_model")
        if judge is not None:
            m["prompts"] = {**m.get("prompts", {}), **verdicts.prompt_hashes()}
            if isinstance(m.get("protocol"), dict):
                m["protocol"]["judge"] = f"{judge.endpoint.label} (probe rescore --judge-model)"
        m["rescored_with"] = command_line()
        report = build_report(rows, m)
        unjudged = sum(1 for r in answered if judge and needs_judging(r, judge.endpoint.label, judge_hash))
        report.update(completeness(len(rows) - len(answered), 0, stopped, unjudged, "questions"))
        report["run"] = old_report.get("run", {})
        if judge is not None:
            report["run"]["rescore_judge_requests"] = judge.totals.requests
        report["warnings"] = old_report.get("warnings", [])
        if old_report.get("memory"):
            report["memory"] = old_report["memory"]
        write_reports(run_dir, report, report_markdown(report))
    return report


def _check_old_report(report, path: Path) -> None:
    """The parts of a run's report.json that rescore carries over; a hand-edited one is one line, not a traceback."""
    if not isinstance(report, dict) or not all(isinstance(report.get(k, {}), dict) for k in ("manifest", "run")):
        raise RealtalkError(f"{path}: expected the report.json object of a probe run")
    if report.get("memory"):
        try:
            memory_lines(report["memory"], None)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise RealtalkError(f"{path}: the 'memory' section is malformed") from None


def _run_compat(report: dict, path: Path) -> str | None:
    """The protocol a saved run followed: its `compat` parameter (runs of earlier versions: a manifest `protocol`
    section means the paper's)."""
    m = report.get("manifest", {})
    compat = (m.get("parameters") or {}).get("compat") if isinstance(m.get("parameters"), dict) else None
    if compat is None and isinstance(m.get("protocol"), dict):
        compat = m["protocol"].get("compat", "paper")
    if compat is not None and not isinstance(compat, str):
        raise RealtalkError(f"{path}: manifest.parameters.compat is {compat!r}, not a protocol name")
    return compat

