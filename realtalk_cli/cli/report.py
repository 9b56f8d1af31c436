"""`report`: leaderboards and paired comparisons over saved runs, as files and on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box

from realtalk_cli.cli.common import (
    AsJson,
    ErrataFile,
    handles_errors,
    out,
    out_option,
    print_json,
    print_wide_table,
)

app = typer.Typer()


@app.command()
@handles_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Probe run directories (or simulate run directories).")],
    out_dir: Annotated[Path, out_option(help="Directory for the leaderboard files.")],
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples per interval.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the bootstrap and permutation draws.")] = 0,
    common_only: Annotated[
        bool, typer.Option("--common-only", help="Score every run only on the items all runs answered.")
    ] = False,
    chats: Annotated[
        list[Path] | None,
        typer.Option("--chats", help="Chat files for the evidence text, when the paths in the runs' manifests moved."),
    ] = None,
    category: Annotated[
        str | None,
        typer.Option(
            "--category", help="Only this category: number or name (LoCoMo's numbering). Example: --category 2"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the leaderboard files of an earlier report in --out.")
    ] = False,
    as_json: AsJson = False,
    errata: ErrataFile = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            metavar="FILE.toml",
            help="Published results written down by hand ([[result]] tables with system, dataset, protocol, judge, "
            "scores per category name and a required source; see configs/reference-example.toml): shown marked "
            "beside the runs, never ranked.",
        ),
    ] = None,
) -> None:
    """Compare runs: a leaderboard with 95% bootstrap intervals and paired tests between every two runs.

    Writes leaderboard.md, leaderboard.csv, leaderboard.tex (booktabs), report.json and report.html (sortable
    leaderboard, chart, question explorer with evidence; a long question list goes beside it into report-data/)
    into --out.

    Example: `realtalk report runs/bm25-full runs/bm25-retrieval -o reports/bm25`
    """
    from realtalk_cli.report.build import make_report

    board = make_report(runs, out_dir, resamples, seed, common_only, chats, force, errata, reference, category)
    if as_json:
        print_json(board)
        return
    print_leaderboard(board)
    data = ", report-data/" if (out_dir / "report-data").is_dir() else ""
    out.print(f"written to {out_dir}: leaderboard.md, leaderboard.csv, leaderboard.tex, report.json, report.html{data}")


def _print_references(board: dict) -> None:
    from realtalk_cli.report import reference
    from realtalk_cli.report.tables import reference_metrics

    out.print(reference.NOTE, soft_wrap=True)
    cats = board["categories"]
    for metric, name in reference_metrics(board).items():
        rows = [
            (f"{ref['id']} {ref['system']}", [_two_lines({"mean": v}) for v in values] + [other or "-"])
            for ref, values, other in reference.rows(board, metric)
        ]
        print_wide_table(f"{name} (published, not measured here)", "published", [*cats, "other"], rows)
    for ref in board["references"]:
        out.print(f"{reference.label(ref)}; source: {ref['source']}", soft_wrap=True)


def _two_lines(ci: dict | None, digits: int = 3) -> str:
    if not ci or ci.get("mean") is None:
        return "-"
    if ci.get("low") is None:
        return f"{ci['mean']:.{digits}f}"
    return f"{ci['mean']:.{digits}f}\n{_short(ci['low'])}-{_short(ci['high'])}"


def _short(v: float) -> str:
    """0.012 -> .012 and -0.010 -> -.010, so that an interval fits in 9 columns."""
    return f"{v:.3f}".replace("0.", ".", 1)


def print_leaderboard(board: dict) -> None:
    from rich.table import Table

    from realtalk_cli.report.tables import group_lines, group_metrics, group_runs, p_value, questions_note, usage_cell

    runs = Table(title=f"{board['kind']} runs", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    runs.add_column("run", no_wrap=True)
    runs.add_column("model, context, memory, judge", overflow="fold", ratio=1)
    runs.add_column("answered", justify="right", no_wrap=True)
    runs.add_column("usage", overflow="fold")
    for r in board["runs"]:
        answered = f"{r['answered']}" + ("" if r["complete"] else " (incomplete)")
        runs.add_row(r["id"], r["label"], answered, usage_cell(r))
    out.print(runs)
    for r in board["runs"]:
        if r["incomplete"]:
            out.print(f"{r['id']} is incomplete: {r['incomplete']}")
    for line in group_lines(board):
        out.print(line, markup=False)
    cats = board["categories"]
    several = len(board["groups"]) > 1
    for group in board["groups"]:
        runs_of_group = group_runs(board, group)
        for metric, name in group_metrics(board, group).items():
            rows = [(r["id"], [_two_lines(r["scores"][metric].get(c)) for c in cats]) for r in runs_of_group]
            title = f"{name}, group {group['id']}" if several else name
            fa = ((group.get("judge_audit") or {}).get("false_accept") or {}).get("rate")
            if metric.startswith("judge_score") and fa is not None:
                title += f" (this judge's false-accept rate: {fa:.3f})"
            print_wide_table(f"{title}: mean and 95% interval", "run", cats, rows)
    for metric, name in board["metrics"].items():
        if not board["comparisons"]:
            break
        rows = []
        for comp in board["comparisons"]:
            cells = []
            for c in cats:
                d = comp["differences"][metric].get(c)
                if not d or d.get("mean") is None:
                    cells.append("-")
                    continue
                mark = "" if d["significant"] else " ns"
                cells.append(f"{d['mean']:+.3f}\np {p_value(d['p'])}{mark}")
            rows.append((f"{comp['b']} - {comp['a']}\nn={comp['common']}", cells))
        print_wide_table(f"{name}: paired difference b - a, p-value (ns: not significant)", "b - a", cats, rows)
    if board.get("references"):
        _print_references(board)
    out.print(questions_note(board), soft_wrap=False)
    if board.get("errata"):
        from realtalk_cli.report.errata import lines

        for line in lines(board["errata"]):
            out.print(line, soft_wrap=True)
