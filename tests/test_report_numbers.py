"""`realtalk report`'s numbers against the runs they name: each score the judge a run names gave (the run's own
report.json agrees), every judge's cost and score checked like the row's own fields, and names as written."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def graded(body: dict) -> str:
    """Answers 'unknown'; each judge (by prompt and model) accepts about half of them, differently."""
    prompt = " ".join(str(m["content"]) for m in body["messages"])
    coin = hashlib.sha256((body["model"] + prompt).encode()).digest()[0] % 2
    if "Predicted answer:" in prompt:  # realtalk's judge
        return json.dumps({"score": coin})
    if "Generated answer:" in prompt:  # mem0's J
        return json.dumps({"label": "CORRECT" if coin else "WRONG"})
    return "unknown"


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def mean_of(run: Path, key: str) -> float:
    """The overall mean of one judge's verdicts, from the rows (each item's latest line)."""
    latest = {(r["chat"], r["qa_index"]): r for r in rows_of(run)}
    scores = [r["judges"][key]["score"] for r in latest.values() if key in r.get("judges", {})]
    return sum(scores) / len(scores)


def page_questions(page: Path) -> list[dict]:
    """The question list of a report.html that holds it whole."""
    data = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    return json.loads(data.group(1))["parts"][0]["data"]["questions"]


def report(tmp_path: Path, *runs: Path) -> dict:
    result = runner.invoke(app, ["report", *map(str, runs), "-o", str(tmp_path / "rep"), "--resamples", "20"])
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "rep" / "report.json").read_text())


def test_the_judge_column_holds_the_verdicts_of_the_judge_the_run_names(tmp_path: Path):
    # A: judged by realtalk's judge, then rescored by mem0's (its manifest, label and own report now name mem0's);
    # B: three questions judged by judge-model, then resumed with judge-2 (which judged all six).
    a, b = tmp_path / "a", tmp_path / "b"
    with serve_llm(FakeLLM(reply=graded, models=("gpt-4o-mini", "judge-model", "judge-2"))) as url:
        assert runner.invoke(app, model_run_args("probe", url, a, "--judge-model", "judge-model")).exit_code == 0
        rescore = ["probe", "rescore", str(a), "--judge-protocol", "mem0", "--judge-model", "judge-model"]
        assert runner.invoke(app, [*rescore, "--base-url", url, "--api-key-env", "TEST_LLM_KEY"]).exit_code == 0
        first = model_run_args("probe", url, b, "--judge-model", "judge-model", "--limit", "3")
        assert runner.invoke(app, first).exit_code == 0
        assert runner.invoke(app, model_run_args("probe", url, b, "--judge-model", "judge-2")).exit_code == 0
    mem0, judge_2 = "mem0/openai:judge-model", "realtalk/openai:judge-2"
    assert mean_of(a, mem0) != mean_of(a, "realtalk/openai:judge-model")  # else this test could not fail
    board = report(tmp_path, a, b)
    runs = {r["id"]: r for r in board["runs"]}
    for run_id, run, key in (("A", a, mem0), ("B", b, judge_2)):
        own = json.loads((run / "report.json").read_text())["overall"]["overall"]
        shown = runs[run_id]["scores"]["judge_score"]["overall"]
        assert shown["mean"] == pytest.approx(mean_of(run, key)) == pytest.approx(own["judge"])
        assert shown["n"] == 6
    groups = {g["id"]: g for g in board["groups"]}
    assert groups[runs["A"]["group"]]["judge"] == mem0 and groups[runs["B"]["group"]]["judge"] == judge_2
    # the page shows each answer's score from the same judge
    latest = {(r["chat"], r["qa_index"]): r for r in rows_of(a)}
    for q in page_questions(tmp_path / "rep" / "report.html"):
        assert q["runs"]["A"]["judge"] == latest[(q["chat"], q["qa"])]["judges"][mem0]["score"]


def test_errata_columns_hold_the_named_judges_verdicts_against_the_corrected_gold(tmp_path: Path):
    from .test_errata import CHANGED, ERRATA, probe
    from .test_errata import reply as errata_reply

    def mem0_reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if "Generated answer:" not in prompt:
            return errata_reply(body)
        gold, predicted = re.search(r"Gold answer: (.*)\nGenerated answer: (.*)\n", prompt).groups()
        return json.dumps({"label": "WRONG" if predicted.strip().lower() in gold.strip().lower() else "CORRECT"})

    run = tmp_path / "run"
    errata = ["--errata", str(ERRATA)]
    mem0 = ["probe", "rescore", str(run), "--judge-protocol", "mem0", "--judge-model", "judge-model"]
    with serve_llm(FakeLLM(reply=mem0_reply)) as url:
        assert probe(url, run, "--judge-model", "judge-model", *errata).exit_code == 0
        # mem0's judge grades the published golds only: the corrected golds' verdicts are still realtalk's judge's
        assert runner.invoke(app, [*mem0, "--base-url", url, "--api-key-env", "TEST_LLM_KEY"]).exit_code == 0
        out = tmp_path / "rep"
        result = runner.invoke(app, ["report", str(run), "-o", str(out), *errata, "--resamples", "0", "--json"])
        assert result.exit_code == 0, result.output
        board = json.loads(result.stdout)
        assert board["errata"]["runs"]["A"]["judge_missing"] == len(CHANGED)
        assert "judge_score_errata" not in board["metrics"]
        rescored = runner.invoke(app, [*mem0, *errata, "--base-url", url, "--api-key-env", "TEST_LLM_KEY"])
        assert rescored.exit_code == 0, rescored.output
    result = runner.invoke(app, ["report", str(run), "-o", str(out), *errata, "--resamples", "0", "--force", "--json"])
    board = json.loads(result.stdout)
    rows = {(r["chat"], r["qa_index"]): r for r in rows_of(run)}
    mem0_key = "mem0/openai:judge-model"
    in_overall = {k: r for k, r in rows.items() if r["category"] != 5}  # LoCoMo's adversarial items stand apart
    want = [
        r["erratum"]["judge_score"] if k in CHANGED else r["judges"][mem0_key]["score"] for k, r in in_overall.items()
    ]
    assert board["runs"][0]["scores"]["judge_score_errata"]["overall"]["mean"] == pytest.approx(sum(want) / len(want))
    # and so does the run's own report, beside the published gold's verdicts of the same judge
    published = [r["judges"][mem0_key]["score"] for r in in_overall.values()]
    own = json.loads((run / "report.json").read_text())["errata"]["scores"]["overall"]
    assert own["judge"] == pytest.approx(sum(published) / len(published)) != pytest.approx(own["judge_corrected"])
    assert own["judge_corrected"] == pytest.approx(sum(want) / len(want))
    # a rescore without a judge keeps grading with the judge the run names
    assert runner.invoke(app, ["probe", "rescore", str(run), *errata]).exit_code == 0
    again = json.loads((run / "report.json").read_text())["errata"]["scores"]["overall"]
    assert (again["judge"], again["judge_corrected"]) == (own["judge"], own["judge_corrected"])


def crafted(run: Path, rows: list[dict], manifest: dict | None = None) -> Path:
    run.mkdir(parents=True)
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "report.json").write_text(json.dumps({"complete": True, "manifest": manifest or {"model": "m"}}))
    return run


def judged_row(i: int, **judges) -> dict:
    """A row graded by realtalk's judge (its first) and by the judges given."""
    first = {"score": 1.0, "error": None, "cost_usd": 0.5}
    return {
        "chat": "c", "qa_index": i, "question": f"q{i}", "category": 1, "f1": 0.5, "error": None,
        "judge_score": 1.0, "judge_model": "j", "judge_key": "realtalk/j", "judge_cost_usd": 0.5, "cost_usd": 1.0,
        "judges": {"realtalk/j": first, **judges},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("judges", "error"),
    [
        ([1, 2], "'judges' must be an object"),
        ({"mem0/j": 5}, "'judges' entry 'mem0/j' must be an object"),
        ({"mem0/j": {"score": "1"}}, "'judges' entry 'mem0/j': 'score' must be a number from 0 to 1, got '1'"),
        ({"mem0/j": {"score": 7}}, "'judges' entry 'mem0/j': 'score' must be a number from 0 to 1, got 7"),
        ({"mem0/j": {"score": 1, "cost_usd": -5.0}}, "'judges' entry 'mem0/j': 'cost_usd' must be a non-negative"),
        ({"mem0/j": {"score": 1, "cost_usd": 1e300}}, "'judges' entry 'mem0/j': 'cost_usd' must be a non-negative"),
        ({"mem0/j": {"score": 1, "cost_usd": "0.1"}}, "'judges' entry 'mem0/j': 'cost_usd' must be a non-negative"),
    ],
)
def test_a_judges_table_is_checked_like_the_rows_own_fields(tmp_path: Path, judges, error):
    # a cost or score the report cannot count is one line naming the row, not a value silently left out
    bad = judged_row(1)
    bad["judges"] = judges if not isinstance(judges, dict) else {**bad["judges"], **judges}
    run = crafted(tmp_path / "run", [judged_row(0), bad])
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "rep")])
    assert result.exit_code == 2 and not (tmp_path / "rep").exists()
    assert f"{run / 'predictions.jsonl'}: row 2: {error}" in result.output


def test_every_judges_cost_and_score_counts_as_the_rows_own(tmp_path: Path):
    rows = [judged_row(0, **{"mem0/j": {"score": True, "cost_usd": 0.25}}), judged_row(1)]
    rows[1]["judges"]["mem0/j"] = {"score": 0.0, "error": None, "cost_usd": 0.25}
    rows[1]["erratum"] = {"judge_cost_usd": 0.125}
    board = report(tmp_path, crafted(tmp_path / "run", rows, {"model": "m", "judge_model": "j"}))
    run = board["runs"][0]
    assert run["cost_usd"] == 2 * (1.0 + 0.5 + 0.25) + 0.125
    assert run["scores"]["judge:mem0/j"]["overall"] == {"mean": 0.5, "low": 0.0, "high": 1.0, "n": 2}


def test_a_judge_named_with_markdown_keeps_every_table_whole(tmp_path: Path):
    from html import unescape

    from markdown_it import MarkdownIt

    from .test_report_hostile import EVIL

    runs = []
    for name, score in (("a", 1.0), ("b", 0.0)):
        rows = [judged_row(i, **{EVIL: {"score": score, "error": None}}) for i in range(3)]
        runs.append(crafted(tmp_path / name, rows, {"model": name, "judge_model": "j", "judge_protocol": "realtalk"}))
    report(tmp_path, *runs)
    html = MarkdownIt("commonmark").enable("table").render((tmp_path / "rep" / "leaderboard.md").read_text())
    tables = re.findall(r"<table>(.*?)</table>", html, re.S)
    for table in tables:
        header = len(re.findall(r"<th[ >]", table))
        rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
        assert rows and all(len(re.findall(r"<td[ >]", row)) == header for row in rows)
    shown = "judge " + EVIL.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    assert shown in [unescape(c) for c in re.findall(r"<td>(.*?)</td>", tables[-1], re.S)]  # the paired comparisons
    assert "<script>" not in html and "<em>" not in html


def test_a_group_is_ranked_by_a_score_its_runs_have(tmp_path: Path):
    # two runs without a judge beside a judged one: theirs are ranked by F1, not by a judge they do not have
    plain = [
        crafted(tmp_path / name, [{**judged_row(i), "f1": f1} for i in range(3)], {})
        for name, f1 in (("worse", 0.1), ("better", 0.9))
    ]
    for run in plain:  # no judge at all
        lines = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
        for r in lines:
            for k in ("judge_score", "judge_model", "judge_key", "judges"):
                r.pop(k)
        (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    judged = crafted(tmp_path / "judged", [judged_row(i, **{"mem0/j": {"score": 0.0}}) for i in range(3)])
    board = report(tmp_path, *plain, judged)
    first, second = board["groups"]
    assert first["runs"] == ["B", "A"] and first["ranked_by"] == "f1" and "rankings" not in first
    assert second["runs"] == ["C"] and second["ranked_by"] == "judge_score"
    assert set(second["rankings"]) == {"judge:realtalk/j", "judge:mem0/j"}
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert "judge none; ranked by overall F1: B \\> A" in md


def test_two_run_folders_reading_one_predictions_file_are_one_run_given_twice(tmp_path: Path):
    run = crafted(tmp_path / "run", [judged_row(i) for i in range(3)])
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "predictions.jsonl").symlink_to(run / "predictions.jsonl")  # and a report.json of its own
    (twin / "report.json").write_text(json.dumps({"complete": True, "manifest": {"model": "other"}}))
    result = runner.invoke(app, ["report", str(run), str(twin), "-o", str(tmp_path / "rep")])
    assert result.exit_code == 2 and not (tmp_path / "rep").exists()
    assert f"{twin / 'predictions.jsonl'} is the predictions file of {run}: give each run once" in result.output


def test_a_link_in_report_data_is_not_taken_for_an_earlier_reports_part(tmp_path: Path):
    run = crafted(tmp_path / "run", [judged_row(i) for i in range(3)])
    kept = tmp_path / "kept.js"
    kept.write_text("mine")
    (tmp_path / "rep" / "report-data").mkdir(parents=True)
    (tmp_path / "rep" / "report-data" / "part-0001.js").symlink_to(kept)
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "rep"), "--force"])
    assert result.exit_code == 2 and "not a file of an earlier report" in result.output
    assert (tmp_path / "rep" / "report-data" / "part-0001.js").is_symlink() and kept.read_text() == "mine"


def test_longmemeval_figures_of_one_type_are_its_own_mean_and_say_so(tmp_path: Path):
    rows = [
        {**judged_row(i), "chat": f"q{i}", "qa_index": 0, "dataset": "longmemeval", "category": 4,
         "category_name": "multi-session", "abstention": i == 0, "judge_score": float(i % 2)}
        for i in range(3)
    ]  # fmt: skip
    for r in rows:
        r.pop("judges")
        r.pop("judge_key")
    board = report(tmp_path, crafted(tmp_path / "run", rows, {"model": "m", "judge_model": "j"}))
    scores = board["runs"][0]["scores"]["judge_score"]
    assert scores["task-averaged"]["mean"] == scores["overall"]["mean"] == pytest.approx(1 / 3)
    assert scores["abstention"]["mean"] == 0.0 and scores["abstention"]["n"] == 1
    assert board["groups"][0]["note"] == "task-averaged over the 1 type present: multi-session"


@pytest.mark.parametrize("judges", [[1, 2], {"mem0/j": 5}, {"mem0/j": {"score": "1"}}, {"mem0/j": {"cost_usd": -1}}])
def test_a_run_read_back_with_an_unreadable_judges_table_is_one_line_not_a_traceback(tmp_path: Path, judges):
    with serve_llm(FakeLLM(reply=graded)) as url:
        run = tmp_path / "run"
        assert runner.invoke(app, model_run_args("probe", url, run, "--judge-model", "judge-model")).exit_code == 0
        lines = rows_of(run)
        lines[1]["judges"] = judges
        (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        before = (run / "predictions.jsonl").read_text()
        for args in (["probe", "rescore", str(run)], model_run_args("probe", url, run, "--judge-model", "judge-model")):
            result = runner.invoke(app, args)
            assert result.exit_code == 2, result.output
            assert result.output.startswith(f"error: {run / 'predictions.jsonl'}: row 2: 'judges'"), result.output
            assert (run / "predictions.jsonl").read_text() == before
