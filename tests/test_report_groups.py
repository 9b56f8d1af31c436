"""`realtalk report` ranks like with like: runs over the same items, of the same dataset, graded by the same
judge (protocol + model) share a group and a ranking; others stand in groups of their own, saying why."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from realtalk_cli.cli import app

from .test_report import offline_run, rows, two_runs  # noqa: F401  (fixture)

runner = CliRunner()


def judged_copy(source: Path, target: Path, judge: str, compat: str | None = None, score=lambda i: i % 2) -> Path:
    """A copy of a run whose rows carry a judge's scores, as a run judged by `judge` would."""
    target.mkdir()
    lines = rows(source)
    for i, r in enumerate(lines):
        r["judge_score"], r["judge_model"] = float(score(i)), judge
    (target / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    manifest = {"model": "offline:bm25", "judge_model": judge, "parameters": {"compat": compat}}
    (target / "report.json").write_text(json.dumps({"manifest": manifest, "complete": True}))
    return target


def report(tmp_path: Path, *runs: Path, name: str = "out") -> dict:
    result = runner.invoke(app, ["report", *map(str, runs), "-o", str(tmp_path / name), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_runs_over_the_same_items_and_judge_share_one_group_ranked_best_first(two_runs, tmp_path):  # noqa: F811
    board = report(tmp_path, *two_runs)
    assert [g["runs"] for g in board["groups"]] and len(board["groups"]) == 1
    group = board["groups"][0]
    assert group["dataset"] == "realtalk" and group["items"]["count"] == 6 and group["judge"] is None
    means = {r["id"]: r["scores"]["f1"]["overall"]["mean"] for r in board["runs"]}
    assert group["runs"] == sorted(means, key=lambda i: -means[i]) and group["ranked_by"] == "f1"
    assert [r["group"] for r in board["runs"]] == ["G1", "G1"] and "why" not in group
    assert all({"path", "complete", "group"} <= set(r) for r in board["runs"])


def test_a_limited_run_and_another_judge_stand_apart_and_every_output_says_why(two_runs, tmp_path):  # noqa: F811
    short = offline_run(tmp_path / "short", "--limit", "4")
    judge_a = judged_copy(two_runs[0], tmp_path / "ja", "openai:judge-a")
    judge_b = judged_copy(two_runs[1], tmp_path / "jb", "openai:judge-b")
    paper_a = judged_copy(two_runs[1], tmp_path / "pa", "openai:judge-a", compat="paper")
    board = report(tmp_path, two_runs[0], short, judge_a, judge_b, paper_a)
    groups = {g["id"]: g for g in board["groups"]}
    assert [r["group"] for r in board["runs"]] == ["G1", "G2", "G3", "G4", "G5"]
    assert groups["G2"]["items"]["count"] == 4 and "4 other items" in groups["G2"]["why"]
    assert groups["G3"]["judge"] == "realtalk/openai:judge-a" and groups["G3"]["ranked_by"] == "judge_score"
    assert groups["G4"]["judge"] == "realtalk/openai:judge-b"
    assert groups["G5"]["judge"] == "paper/openai:judge-a" and "judge paper/openai:judge-a" in groups["G5"]["why"]
    assert groups["G3"]["items"] == groups["G1"]["items"]  # the same items: apart for the judge alone
    # paired differences only between runs graded alike (the same judge, or none): A-B, never A-C
    assert {(c["a"], c["b"]) for c in board["comparisons"]} == {("A", "B")}
    out = tmp_path / "out"
    md = (out / "leaderboard.md").read_text()
    assert md.count("## F1: group G") == 5 and "ranked apart from G1" in md
    table = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["group"] for r in table] == ["G1", "G2", "G3", "G4", "G5"]
    tex = (out / "leaderboard.tex").read_text()
    assert tex.count("\\caption{judge per category") == 3 and "Group G5" in tex  # a judge table for G3-G5 only
    assert not any(set(line.split(" & ")[1:]) == {"--", r"-- \\"} for line in tex.splitlines())
    terminal = runner.invoke(
        app, ["report", str(two_runs[0]), str(short), "-o", str(tmp_path / "t")], env={"COLUMNS": "200"}
    )
    assert terminal.exit_code == 0 and "F1, group G2: mean" in terminal.output and "2 groups" in terminal.output


def test_common_only_puts_runs_over_different_items_back_in_one_group(two_runs, tmp_path):  # noqa: F811
    short = offline_run(tmp_path / "short", "--limit", "4")
    result = runner.invoke(app, ["report", str(two_runs[0]), str(short), "-o", str(tmp_path / "c"), "--common-only"])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "c" / "report.json").read_text())
    assert len(board["groups"]) == 1 and board["groups"][0]["items"]["count"] == 4
