"""`realtalk report`: read runs, compute the leaderboard, write every output file (each atomically)."""

from __future__ import annotations

import json
from pathlib import Path

from realtalk_cli.data.errata import read_errata
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import write_atomic
from realtalk_cli.report import audits as judge_audits
from realtalk_cli.report import errata as report_errata
from realtalk_cli.report import reference as published
from realtalk_cli.report import tables
from realtalk_cli.report.explorer import explorer_data, find_chats, render_html
from realtalk_cli.report.leaderboard import build_leaderboard
from realtalk_cli.report.runs import Run, load_runs, only_category

MAX_RESAMPLES = 100_000  # beyond this the interval's own noise is far below its width; time grows linearly
OUTPUTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.json", "report.html")


def check_writable(out: Path, names: tuple[str, ...], force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RealtalkError(f"{out}: exists and is not a directory")
    run_file = next((n for n in ("predictions.jsonl", "run.json") if (out / n).exists()), None)
    if run_file:  # --force replaces an earlier report, never a run's own report.json
        raise RealtalkError(f"-o {out} is a run directory (it has {run_file}): its report.json would be replaced")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise RealtalkError(f"{out / existing[0]}: already exists (use --force to overwrite)")
    odd = next((n for n in existing if not (out / n).is_file()), None)
    if odd:  # found now, before any file is replaced, not after the first ones were
        raise RealtalkError(f"{out / odd}: exists and is not a file")


def explorer_html(runs: list[Run], board: dict, chat_files: list[Path], title: str) -> str:
    chats, warnings = find_chats(runs, chat_files) if board["kind"] == "probe" else ({}, [])
    if not board["questions"]["same_set"]:
        warnings.insert(0, tables.questions_note(board))
    incomplete = [f"{r['id']} ({r['incomplete']})" for r in board["runs"] if r["incomplete"]]
    if incomplete:
        warnings.insert(0, f"incomplete runs: {'; '.join(incomplete)}")
    return render_html(board, explorer_data(runs, board, chats), warnings, title)


def make_report(
    run_dirs: list[Path],
    out: Path,
    resamples: int = 1000,
    seed: int = 0,
    common_only: bool = False,
    chat_files: list[Path] | None = None,
    force: bool = False,
    errata_file: Path | None = None,
    reference_file: Path | None = None,
    category: str | None = None,
) -> dict:
    if not 0 <= resamples <= MAX_RESAMPLES:
        raise RealtalkError(f"--resamples {resamples}: expected 0 (no intervals) to {MAX_RESAMPLES}")
    if seed < 0:
        raise RealtalkError(f"--seed {seed}: expected 0 or more")
    if not run_dirs:
        raise RealtalkError("no run directories given")
    errata = read_errata(errata_file) if errata_file is not None else None
    references = published.read_reference(reference_file) if reference_file is not None else None
    run_dirs, audit_dirs = judge_audits.split(run_dirs)
    if not run_dirs:
        raise RealtalkError("only judge audits given: give the runs whose judge they measured beside them")
    audits = [judge_audits.load_audit(p) for p in audit_dirs]
    check_writable(out, OUTPUTS, force)
    runs = load_runs(run_dirs)
    if category is not None:
        only_category(runs, category)
    report_errata.clear(runs)
    if errata is not None and runs[0].kind != "probe":
        raise RealtalkError(f"--errata {errata_file}: errata correct probe questions; these are simulate runs")
    section = report_errata.apply(runs, errata, chat_files or []) if errata is not None else None
    board = build_leaderboard(runs, resamples, seed, common_only)
    if section is not None:
        board["errata"] = section
    if audits:
        judge_audits.attach(board, audits)
    if references is not None:
        if board["kind"] != "probe":
            raise RealtalkError(
                f"--reference {reference_file}: published results are probe scores; these are simulate runs"
            )
        board["references"] = published.place(references, board)
    board["settings"]["category"] = category
    page = explorer_html(runs, board, chat_files or [], f"realtalk {board['kind']} report")
    write_atomic(out / "leaderboard.md", tables.markdown(board))
    write_atomic(out / "leaderboard.csv", tables.csv_text(board))
    write_atomic(out / "leaderboard.tex", tables.latex(board))
    write_atomic(out / "report.json", json.dumps(board, indent=2, ensure_ascii=False))
    write_atomic(out / "report.html", page)
    return board


def write_run_html(run_dir: Path, resamples: int = 1000, chat_files: list[Path] | None = None) -> Path:
    """The explorer for a single probe run, written into its own directory (`probe --html`)."""
    runs = load_runs([run_dir])
    board = build_leaderboard(runs, resamples)
    path = run_dir / "report.html"
    write_atomic(path, explorer_html(runs, board, chat_files or [], f"realtalk probe: {runs[0].label}"))
    return path
