"""`probe rescore`: score a saved run's predictions again (F1, and a judge when given) without asking the
answering model; the report keeps the run's manifest, run figures, warnings and memory section.
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.data.errata import read_errata
from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import run_folder, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import LLMClient
from realtalk_cli.llm.providers import Prices, resolve_model
from realtalk_cli.llm.spending import Spending
from realtalk_cli.tasks.probe import errata as fixes
from realtalk_cli.tasks.probe.audit import is_audit
from realtalk_cli.tasks.probe.judge import judge_rows, judges_problem, needs_judging
from realtalk_cli.tasks.probe.judges import JUDGES, judge_protocol
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
    errata_file: Path | None = None,
    judge_protocol_name: str | None = None,
) -> dict:
    """Score saved predictions again (F1, and the judge when given) without asking the answering model.

    Every answered row is judged again by the given judge. With `errata_file`, the scores against its corrected
    golds go beside (the judge, when given, grades the changed rows against them too)."""
    pred_path = run_dir / "predictions.jsonl"
    if is_audit(run_dir):  # its rows are graded answers, not a model's: rescoring would overwrite its report
        raise RealtalkError(f"{run_dir}: a judge audit, not a probe run (run `realtalk probe judge-audit` again)")
    if not pred_path.exists():
        raise RealtalkError(f"{pred_path}: no such file (is {run_dir} a probe run directory?)")
    report_path = run_dir / "report.json"
    old_report = read_json(report_path) if report_path.exists() else {}
    _check_old_report(old_report, report_path)
    errata = read_errata(errata_file) if errata_file is not None else None
    # the run's own protocol's judge grades again (a --compat paper run: the paper's prompt); without a judge, the
    # verdicts kept are read as those of the judge the run names
    protocol = probe_protocol(_run_compat(old_report, report_path))
    named = old_report.get("manifest", {}).get("judge_protocol")
    kept = named if not judge_model and isinstance(named, str) and named in JUDGES else None
    verdicts = judge_protocol(judge_protocol_name or kept or protocol.judge)
    if judge_protocol_name and not judge_model:
        raise RealtalkError(f"--judge-protocol {judge_protocol_name} grades with a --judge-model: give one")
    new_judge = None
    if judge_model:
        endpoint = resolve_model(judge_model, base_url, api_key_env)
        prices = Prices.load()

        def new_judge() -> LLMClient:  # a client per pass: run_jobs closes it (and its cache) at the end of one
            cache = open_cache(use_cache) if verdicts.cached else None
            return LLMClient(endpoint, concurrency=concurrency, cache=cache, prices=prices, timeout_s=timeout)

    with run_folder(run_dir, None, PROBE_FILES):
        spending = Spending(run_dir).start()  # the judge's requests are the run folder's spending too
        try:
            report = _rescore(run_dir, old_report, protocol, verdicts, new_judge, spending, progress, errata)
        finally:
            spending.finish()
    return report


def _rescore(
    run_dir: Path, old_report: dict, protocol, verdicts, new_judge, spending: Spending, progress, errata
) -> dict:
    """The rescore itself, in the locked run folder: F1 (and the protocol's own scores) again, the judge when
    given (`new_judge` makes its client), completeness, reports."""
    pred_path = run_dir / "predictions.jsonl"
    judge_hash = verdicts.prompt_hash
    judge = spending.attach(new_judge(), "judge") if new_judge else None
    requests = 0
    rows = final_rows(read_predictions(pred_path, PROBE_FIELDS, judges_problem), row_key)
    answered = [r for r in rows if r.get("error") is None]
    for r in answered:
        score_row(r, protocol)
    stopped = False
    if judge is not None:
        stopped = judge_rows(rows, judge, verdicts, progress, lambda: False, everything=True)
        requests += judge.totals.requests
    m = old_report.get("manifest", {})
    placements, catalog = [], {}
    if errata is not None:
        placements, catalog = _place_errata(errata, m, rows)
        fixes.apply_errata(rows, placements, protocol)
        if judge is not None:
            errata_judge = spending.attach(new_judge(), "judge")
            stopped = fixes.judge_errata(rows, errata_judge, verdicts, lambda: False, everything=True) or stopped
            requests += errata_judge.totals.requests
    write_jsonl(pred_path, rows)
    m["judge_model"] = judge.endpoint.label if judge else m.get("judge_model")
    if judge is not None:
        m["judge_protocol"] = verdicts.name
    if judge is not None:
        m["prompts"] = {**m.get("prompts", {}), **verdicts.prompt_hashes()}
        if isinstance(m.get("protocol"), dict):
            m["protocol"]["judge"] = f"{judge.endpoint.label} (probe rescore --judge-model)"
    m["rescored_with"] = command_line()
    report = build_report(rows, m)
    unjudged = sum(1 for r in answered if judge and needs_judging(r, judge.endpoint.label, judge_hash, verdicts.name))
    if errata is not None:
        unjudged += fixes.unjudged(rows, judge.endpoint.label if judge else None, judge_hash)
        report["errata"] = fixes.errata_section(
            errata, placements, rows, m.get("judge_model"), judge_hash, catalog, verdicts.name
        )
    report.update(completeness(len(rows) - len(answered), 0, stopped, unjudged, "questions"))
    _keep_unfinished(report, old_report, run_dir / "report.json")
    report["run"] = old_report.get("run", {})
    if judge is not None:
        report["run"]["rescore_judge_requests"] = requests
    report["usage"] = spending.summary()
    report["warnings"] = old_report.get("warnings", [])
    if old_report.get("memory"):
        report["memory"] = old_report["memory"]
    write_reports(run_dir, report, report_markdown(report))
    return report


def _keep_unfinished(report: dict, old: dict, path: Path) -> None:
    """Rescoring judges the rows there are, never the questions the run did not ask: a run stopped by --max-cost,
    with questions not run, interrupted (its report marked unfinished) or without a report at all stays
    incomplete."""
    before = old.get("incomplete") if isinstance(old.get("incomplete"), dict) else {}
    not_run = before.get("not_run") if type(before.get("not_run")) is int else 0
    stopped = before.get("stopped_for_max_cost") is True
    reasons = [r for r in (report.get("incomplete") or {}).get("reason", "").split("; ") if r]
    if not path.exists():
        reasons.append("no report.json: whether the run asked every question is unknown")
    elif before.get("unfinished") is True:
        reasons.append(str(before.get("reason") or "the run's latest invocation has not finished"))
    else:
        reasons += ["stopped at --max-cost"] if stopped else []
        reasons += [f"{not_run} questions not run"] if not_run else []
    if not reasons:
        return
    incomplete = report.get("incomplete") or {"failed": 0, "not_run": 0, "unscored": 0, "stopped_for_max_cost": False}
    incomplete["not_run"] = max(incomplete.get("not_run", 0), not_run)
    incomplete["stopped_for_max_cost"] = incomplete.get("stopped_for_max_cost") or stopped
    incomplete["reason"] = "; ".join(dict.fromkeys(reasons))
    report["complete"], report["incomplete"] = False, incomplete


def _place_errata(errata, manifest: dict, rows: list[dict]) -> tuple[list, dict]:
    """Which question each entry names: the chat files the run's manifest names (when they are still there),
    else the run's own rows."""
    datasets = manifest.get("datasets")
    paths = [Path(p) for p in datasets if isinstance(p, str)] if isinstance(datasets, dict) else []
    catalog = fixes.add_rows(fixes.catalog_from_files(paths, quiet=True), rows)
    return fixes.place(errata, catalog, {row_key(r) for r in rows}), catalog


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
