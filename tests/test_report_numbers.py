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
