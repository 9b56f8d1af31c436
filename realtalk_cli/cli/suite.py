"""`suite`: a grid of probe runs declared in one TOML file, run and resumed as one, with one leaderboard."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Annotated

import typer

from realtalk_cli.cli.common import (
    AsJson,
    DryRun,
    NoCache,
    Shown,
    err,
    handles_errors,
    out,
    out_option,
    print_json,
    print_wide_table,
)

app = typer.Typer()


@app.command()
@handles_errors
def suite(
    file: Annotated[Path, typer.Argument(metavar="FILE.toml", help="The suite file.", show_default=False)],
    out_dir: Annotated[
        Path | None, out_option(help="Root folder of the suite's runs and report (else `out` in the file).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions of every cell.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="USD for the whole grid, every invocation (else the file's).")
    ] = None,
    fail_under: Annotated[
        float | None, typer.Option("--fail-under", help="Exit 1 when a cell's overall F1 is below this.")
    ] = None,
    dry_run: DryRun = False,
    no_cache: NoCache = False,
    as_json: AsJson = False,
) -> None:
    """Run a grid of probe runs (models x datasets x contexts x protocols) declared in FILE.toml: each cell a
    probe run folder under the root (ROOT/cells/MODEL+DATASET+CONTEXT+PROTOCOL), run in parallel within one limit
    of requests in flight per endpoint and one max_cost for the whole grid; then the leaderboard and the HTML
    explorer over every cell in ROOT/report. Running it again resumes every cell (nothing finished is sent again).
    The whole file is checked before any request: an unknown key, a dataset path that does not exist or a model
    without a price under max_cost is one line naming it, exit 2.

    Exit codes: 0 every cell complete, 1 a cell's overall F1 under --fail-under, 2 bad input (a cell that stopped
    on one), 3 a cell incomplete (questions failed, or max_cost reached).

    Example: `realtalk suite configs/suite-example.toml --dry-run`

    Example: `realtalk suite configs/suite-example.toml --out runs/suite --max-cost 5`
    """
    from realtalk_cli.tasks.probe.suite import load_suite, plan_suite, prepare_suite, run_suite, suite_exit_code

    overrides = {
        "out": out_dir,
        "limit": limit,
        "max_cost": max_cost,
        "fail_under": fail_under,
        "use_cache": False if no_cache else None,
    }
    grid = load_suite(file, overrides)
    prepare_suite(grid, dry_run)
    if dry_run:
        _print_plan(plan_suite(grid), as_json)
        return
    with _view(grid, as_json) as view:
        run_suite(grid, view.started, view.finished)
    board, unwritten = _write_report(grid)
    code = suite_exit_code(grid)
    _print_outcome(grid, board, as_json)
    if unwritten:  # the cells' outcome is shown all the same
        err.print(f"error: no leaderboard written: {unwritten}", soft_wrap=True)
        code = 2
    if code:
        raise typer.Exit(code)


def _write_report(grid) -> tuple[dict | None, str | None]:
    """The leaderboard and HTML over every cell that holds a run, into ROOT/report (replaced each time); or why
    not (a run file the report cannot read)."""
    from realtalk_cli.errors import RealtalkError
    from realtalk_cli.report.build import make_report

    runs = grid.run_dirs()
    try:
        return (make_report(runs, grid.report_dir, force=True) if runs else None), None
    except RealtalkError as e:
        return None, str(e)


def _print_outcome(grid, board: dict | None, as_json: bool) -> None:
    from realtalk_cli.tasks.probe.suite import cell_summary, suite_exit_code

    report_dir = grid.report_dir if board is not None else None
    ids = {r["path"]: r["id"] for r in (board or {}).get("runs", [])}  # the cell's letter in the leaderboard
    cells = [{**cell_summary(c), "run": ids.get(str(c.opts.out))} for c in grid.cells]
    spent = sum(c["spent_usd"] or 0.0 for c in cells)
    if as_json:
        print_json(
            {
                "suite": str(grid.file),
                "root": str(grid.root),
                "complete": all(c["status"] == "complete" for c in cells),
                "exit_code": suite_exit_code(grid),
                "spent_usd": spent,
                "max_cost": grid.max_cost,
                "report": str(report_dir) if report_dir else None,
                "cells": cells,
            }
        )
    else:
        rows = [
            (
                c["cell"],
                [
                    c["run"] or "-",
                    c["status"],
                    _cell(c["questions"]),
                    _cell(c["f1"], ".3f"),
                    _cell(c["judge"], ".3f"),
                    _cell(c["requests"]),
                    _cell(c["cost_usd"], ".4f", "$"),
                ],
            )
            for c in cells
        ]
        headers = ["run", "status", "questions", "F1", "judge", "requests now", "cost now"]
        print_wide_table(f"suite {grid.file}: cells (run: its letter in the leaderboard)", "cell", headers, rows)
        cap = f" of max_cost ${grid.max_cost:g}" if grid.max_cost is not None else ""
        out.print(f"spent ${spent:.4f}{cap} in all the cells' folders, every invocation", soft_wrap=True)
        if report_dir:
            out.print(
                f"leaderboard written to {report_dir}: leaderboard.md, leaderboard.csv, leaderboard.tex, report.json, "
                "report.html",
                soft_wrap=True,
            )
    for c in cells:
        if c["status"] != "complete":
            err.print(f"{c['status']} cell {c['cell']}: {c['reason']}", soft_wrap=True)
    if any(c["status"] == "incomplete" or c["exit_code"] == 3 for c in cells):
        err.print("run the same command again to continue the cells that did not finish", soft_wrap=True)


def _cell(value, spec: str = "", prefix: str = "") -> str:
    return "-" if value is None else f"{prefix}{value:{spec}}"


def _print_plan(plan: dict, as_json: bool) -> None:
    if as_json:
        print_json(plan)
        return

    def cost(usd: float, priced: bool) -> str:
        return f"${usd:.4f}" if priced else f"${usd:.4f} + unknown (a model not in prices.toml)"

    for c in plan["cells"]:
        spent = f"; its folder spent ${c['spent_usd']:.4f} so far" if c["spent_usd"] else ""
        out.print(
            f"{c['cell']}: {c['requests']} requests ({c['already_done']} questions already done), estimated "
            f"{cost(c['estimated_cost_usd'], c['priced'])}{spent}",
            soft_wrap=True,
        )
    total = plan["total"]
    line = (
        f"dry run of {len(plan['cells'])} cells: {total['requests']} requests, estimated "
        f"{cost(total['estimated_cost_usd'], total['priced'])}; spent so far ${total['spent_usd']:.4f}"
    )
    if total["max_cost"] is not None:
        line += f"; max_cost ${total['max_cost']:g} leaves ${total['left_usd']:.4f}"
        if total["estimated_cost_usd"] > total["left_usd"]:
            line += " (less than the estimate: the grid would stop at max_cost)"
    out.print(line, soft_wrap=True)


class _View:
    """The suite's one progress view on stderr: on a terminal a line per running cell under a line for the
    grid; otherwise one line as each cell starts and one as it ends (none with --json)."""

    def __init__(self, grid, bar, quiet: bool) -> None:
        self.grid, self.bar, self.quiet = grid, bar, quiet
        self.total = len(grid.cells)
        self.started_n = self.finished_n = 0
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()
        self.top = bar.add_task("suite", total=self.total, note="", info="") if bar is not None else None

    def started(self, cell) -> Shown:
        self.started_n += 1
        if self.bar is not None:
            task = self.bar.add_task(cell.name, total=None, note="", info="")
            self.tasks[cell.name] = task
            return Shown(self.bar, task, quiet=True, brief=True)
        if not self.quiet:
            err.print(f"[{self.started_n}/{self.total}] started {cell.name}", soft_wrap=True)
        return Shown(None, None, quiet=True)

    def finished(self, cell) -> None:
        from realtalk_cli.tasks.probe.suite import cell_summary

        self.finished_n += 1
        c = cell_summary(cell)
        what = c["status"] if c["reason"] is None else f"{c['status']} ({c['reason']})"
        figures = (
            f", F1 {_cell(c['f1'], '.3f')}, {c['requests']} requests, ${c['cost_usd']:.4f}"
            if c["requests"] is not None
            else ""
        )
        line = f"[{self.finished_n}/{self.total}] finished {cell.name}: {what}{figures}"
        if self.bar is not None:
            self.bar.remove_task(self.tasks.pop(cell.name))
            spent = f"${self.grid.budget.spent():.4f} of ${self.grid.max_cost:g}" if self.grid.budget else ""
            self.bar.update(self.top, advance=1, info=spent)
            self.bar.console.print(line, soft_wrap=True, markup=False, highlight=False)
        elif not self.quiet:
            err.print(line, soft_wrap=True)


@contextlib.contextmanager
def _view(grid, quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet or not err.is_terminal:
        yield _View(grid, None, quiet)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}{task.fields[info]}"),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        yield _View(grid, bar, quiet)
