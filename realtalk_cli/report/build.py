"""`realtalk report`: read runs, compute the leaderboard, write every output file (each atomically).

report.html's question list goes into `report-data/` beside it when it is larger than one part: the parts are
written into a staging folder first and put in place together, just before report.html, so that a report
stopped half-way leaves the earlier report as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from realtalk_cli.data.errata import read_errata
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import write_atomic
from realtalk_cli.report import audits as judge_audits
from realtalk_cli.report import errata as report_errata
from realtalk_cli.report import reference as published
from realtalk_cli.report import tables
from realtalk_cli.report.explorer import (
    DATA_DIR,
    PART_NAME,
    Questions,
    find_chats,
    page_fields,
    page_token,
    render_html,
    write_questions,
)
from realtalk_cli.report.leaderboard import build_leaderboard
from realtalk_cli.report.runs import Run, load_runs

MAX_RESAMPLES = 100_000  # beyond this the interval's own noise is far below its width; time grows linearly
OUTPUTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.json", "report.html")


def check_writable(out: Path, names: tuple[str, ...], force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RealtalkError(f"{out}: exists and is not a directory")
    run_file = next((n for n in ("predictions.jsonl", "run.json") if (out / n).exists()), None)
    if run_file:  # --force replaces an earlier report, never a run's own report.json
        raise RealtalkError(f"-o {out} is a run directory (it has {run_file}): its report.json would be replaced")
    existing = [n for n in (*names, DATA_DIR) if (out / n).exists() or (out / n).is_symlink()]
    if existing and not force:
        raise RealtalkError(f"{out / existing[0]}: already exists (use --force to overwrite)")
    odd = next((n for n in existing if n != DATA_DIR and not (out / n).is_file()), None)
    if odd:  # found now, before any file is replaced, not after the first ones were
        raise RealtalkError(f"{out / odd}: exists and is not a file")
    check_data_dir(out / DATA_DIR)


def check_data_dir(folder: Path) -> None:
    """An earlier report's parts may be replaced; a folder of that name holding anything else may not."""
    if not (folder.exists() or folder.is_symlink()):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise RealtalkError(f"{folder}: exists and is not a directory")

    def ours(p: Path) -> bool:  # a part as a report writes it: a file, not a link to one
        return bool(PART_NAME.fullmatch(p.name)) and p.is_file() and not p.is_symlink()

    other = next((p for p in sorted(folder.iterdir()) if not ours(p)), None)
    if other is not None:
        raise RealtalkError(f"{other}: not a file of an earlier report; remove it, or choose another --out")


def write_pages(
    runs: list[Run], chat_files: list[Path], staging: Path, corrected: dict[int, dict] | None = None
) -> tuple[Questions, dict, list[str], str]:
    """The question list of the page (its parts written into `staging` when there are several), the chats found
    for it, warnings about them, and the token that names this report in its part files. Run before the
    leaderboard, so that the runs' page fields are let go before the intervals are computed."""
    chats, warnings = find_chats(runs, chat_files) if runs[0].kind == "probe" else ({}, [])
    token = page_token(runs)
    questions = write_questions(runs, chats, staging, token, corrected)
    for run in runs:
        run.pages = None
    return questions, chats, warnings, token


def explorer_html(runs: list[Run], board: dict, pages: tuple[Questions, dict, list[str], str], title: str) -> str:
    questions, chats, found_warnings, token = pages
    warnings = list(found_warnings)
    if not board["questions"]["same_set"]:
        warnings.insert(0, tables.questions_note(board))
    incomplete = [f"{r['id']} ({r['incomplete']})" for r in board["runs"] if r["incomplete"]]
    if incomplete:
        warnings.insert(0, f"incomplete runs: {'; '.join(incomplete)}")
    return render_html(board, runs, questions, sorted(chats), warnings, title, token)


def _install(staging: Path, folder: Path) -> None:
    """Put the staged parts in place of `folder` (an earlier report's, checked by check_data_dir); with no
    parts, an earlier report's folder is removed: its parts belong to a page that is being replaced."""
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{DATA_DIR}.old.", dir=folder.parent))
        folder.rename(old / DATA_DIR)
    if any(staging.iterdir()):
        staging.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _Staging:
    """A folder for the parts inside `out`, removed on the way out (and `out` with it when this made it and
    nothing was written)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.made = not out.exists()

    def __enter__(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        # mkdir, not mkdtemp (0700): the folder becomes report-data/, shared like any output
        self.path = self.out / f".{DATA_DIR}.{os.getpid()}.{secrets.token_hex(4)}"
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.made and exc[0] is not None and not any(self.out.iterdir()):
            self.out.rmdir()


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
    runs = load_runs(run_dirs, category, keep=page_fields)
    if errata is not None and runs[0].kind != "probe":
        raise RealtalkError(f"--errata {errata_file}: errata correct probe questions; these are simulate runs")
    section, corrected = report_errata.apply(runs, errata, chat_files or []) if errata is not None else (None, None)
    with _Staging(out) as staging:
        pages = write_pages(runs, chat_files or [], staging, corrected)
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
        page = explorer_html(runs, board, pages, f"realtalk {board['kind']} report")
        write_atomic(out / "leaderboard.md", tables.markdown(board))
        write_atomic(out / "leaderboard.csv", tables.csv_text(board))
        write_atomic(out / "leaderboard.tex", tables.latex(board))
        write_atomic(out / "report.json", json.dumps(board, indent=2, ensure_ascii=False))
        _install(staging, out / DATA_DIR)
        write_atomic(out / "report.html", page)
    return board


def write_run_html(run_dir: Path, resamples: int = 1000, chat_files: list[Path] | None = None) -> Path:
    """The explorer for a single probe run, written into its own directory (`probe --html`)."""
    runs = load_runs([run_dir], keep=page_fields)
    path = run_dir / "report.html"
    check_data_dir(run_dir / DATA_DIR)
    with _Staging(run_dir) as staging:
        pages = write_pages(runs, chat_files or [], staging)
        board = build_leaderboard(runs, resamples)
        page = explorer_html(runs, board, pages, f"realtalk probe: {runs[0].label}")
        _install(staging, run_dir / DATA_DIR)
        write_atomic(path, page)
    return path
