"""`realtalk probe judge-audit`: a lenient judge is measured lenient and a strict one strict; the audit is a run
(cached, resumable, --limit, --max-cost, --dry-run), and `realtalk report` shows the false-accept rate of the
judge that graded the runs beside them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.scoring.dates import normalise_dates
from realtalk_cli.scoring.f1 import normalize_answer
from realtalk_cli.tasks.probe.audit import VAGUE, answer_type, audit_questions, audit_rows, paraphrase

from .conftest import SAMPLE_JSON
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
LOCOMO_CHAT = Path(__file__).parent / "data" / "Chat_L_Ann_Bo.json"
JUDGED = re.compile(r"Gold answer: (.*)\nPredicted answer: (.*)\n")

pytestmark = pytest.mark.usefixtures("llm_env")


def same(a: str, b: str) -> bool:
    return normalize_answer(normalise_dates(a)) == normalize_answer(normalise_dates(b))


def lenient(body: dict) -> str:
    """Accepts anything that is not an abstention (on topic is enough)."""
    _, prediction = JUDGED.search(body["messages"][-1]["content"]).groups()
    return '{"score": 0}' if "not mentioned" in prediction.lower() else '{"score": 1}'


def strict(body: dict) -> str:
    """Accepts the gold's own words only (dates compared as dates)."""
    gold, prediction = JUDGED.search(body["messages"][-1]["content"]).groups()
    return '{"score": 1}' if same(gold, prediction) else '{"score": 0}'


def audit(url: str, out: Path, *extra: str):
    args = ["probe", "judge-audit", str(SAMPLE_JSON), str(LOCOMO_CHAT), "--judge-model", "gpt-4o-mini"]
    args += ["--out", str(out), "--base-url", url, "--api-key-env", "TEST_LLM_KEY", *extra]
    return runner.invoke(app, args)


def test_a_lenient_judge_is_measured_lenient_and_a_strict_one_strict(tmp_path: Path):
    reports = {}
    for name, judge in (("lenient", lenient), ("strict", strict)):
        with serve_llm(FakeLLM(reply=judge)) as url:
            result = audit(url, tmp_path / name, "--json")
        assert result.exit_code == 0, result.output
        reports[name] = json.loads(result.stdout)
    loose, tight = reports["lenient"], reports["strict"]
    assert loose["questions"] == tight["questions"] == 8  # 6 + 2 (LoCoMo's category 5 left out)
    # "18 km" has no other number-question's gold to stand in for it: 7 specific wrong answers, counted
    counts = {k: s["n"] for k, s in loose["kinds"].items()}
    assert counts == {**dict.fromkeys(loose["kinds"], 8), "specific-wrong": 7}
    assert loose["without_specific_wrong"] == 1
    assert (loose["protocol"], loose["model"]) == ("realtalk", "openai:gpt-4o-mini")
    assert {k: s["rate"] for k, s in loose["kinds"].items()} == {
        "gold": 1.0, "paraphrase": 1.0, "specific-wrong": 1.0, "vague-on-topic": 1.0, "abstention": 0.0
    }  # fmt: skip
    assert loose["false_accept_rate"] == round(15 / 23, 4) and loose["false_accept"]["accepted"] == 15
    assert {k: s["rate"] for k, s in tight["kinds"].items()} == {
        "gold": 1.0, "paraphrase": 1.0, "specific-wrong": 0.0, "vague-on-topic": 0.0, "abstention": 0.0
    }  # fmt: skip
    assert (tight["false_accept_rate"], tight["true_accept_rate"]) == (0.0, 1.0)
    fa = loose["false_accept"]
    assert fa["low"] < fa["rate"] < fa["high"]  # a bootstrap interval over the 24 wrong answers
    md = (tmp_path / "lenient" / "report.md").read_text()
    assert "**False-accept rate**" in md and "| specific-wrong | 7 | 7 | 1.000 [1.000, 1.000] |" in md


def test_the_answers_are_built_from_the_gold_deterministically_and_wrong_ones_share_no_word_with_it():
    pool = audit_questions([SAMPLE_JSON, LOCOMO_CHAT])
    rows = audit_rows(pool, pool, "m")
    assert rows == audit_rows(pool, pool, "m")
    by = {(r["chat"], r["qa_index"], r["kind"]): r["prediction"] for r in rows}
    assert by[("Chat_S_Ana_Ben", 2, "paraphrase")] == "March 7, 2024"  # gold 07 March, 2024
    assert by[("Chat_S_Ana_Ben", 5, "paraphrase")] == "part beagle."
    assert by[("Chat_L_Ann_Bo", 1, "specific-wrong")] == "07 March, 2024"  # another date
    assert by[("Chat_S_Ana_Ben", 2, "abstention")] == "Not mentioned in the conversation"

    def words(text: str) -> set[str]:
        return set(normalize_answer(normalise_dates(text)).split())

    for r in rows:  # the wrong answers hold no word of the gold (the vague one's fixed sentence aside)
        if r["kind"] in ("specific-wrong", "vague-on-topic"):
            assert not (words(r["prediction"]) - words(VAGUE)) & words(r["answer"]), r
    assert answer_type("When did Bo move?", "9 May 2023") == "date" and paraphrase("Yes.") == "yes"


def test_the_audit_resumes_asks_nothing_twice_and_stops_at_max_cost(tmp_path: Path):
    fake = FakeLLM(reply=strict)
    with serve_llm(fake) as url:
        first = audit(url, tmp_path / "a", "--limit", "2", "--json")
        assert first.exit_code == 0 and json.loads(first.stdout)["questions"] == 2 and len(fake.requests) == 10
        plan = audit(url, tmp_path / "a", "--dry-run", "--json")
        assert plan.exit_code == 0 and json.loads(plan.stdout)["requests"] == 29  # 39 answers, 10 graded
        stopped = audit(url, tmp_path / "a", "--max-cost", "0.000001", "--no-cache")
        assert stopped.exit_code == 3 and "stopped at --max-cost" in stopped.output
        graded = {(r["chat"], r["qa_index"], r["kind"]) for r in verdicts(tmp_path / "a")}
        assert 10 < len(graded) < 39
        sent = len(fake.requests)
        rest = audit(url, tmp_path / "a", "--no-cache", "--json")
        assert rest.exit_code == 0, rest.output
        assert len(fake.requests) - sent == 39 - len(graded)  # only what lacked a verdict was asked
        again = audit(url, tmp_path / "a", "--no-cache")
        assert again.exit_code == 0 and len(fake.requests) - sent == 39 - len(graded)
    rows = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 39 and all(r["judge_score"] is not None for r in rows)


def verdicts(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("judge_score") is not None]


def test_an_unknown_judge_protocol_or_another_judge_in_the_folder_is_exit_2(tmp_path: Path):
    with serve_llm(FakeLLM(reply=strict)) as url:
        unknown = audit(url, tmp_path / "x", "--judge-protocol", "nope")
        assert unknown.exit_code == 2 and "judge protocol 'nope': choose realtalk, paper, mem0" in unknown.output
        assert not (tmp_path / "x").exists()
        assert audit(url, tmp_path / "a", "--limit", "1").exit_code == 0
        other = audit(url, tmp_path / "a", "--limit", "1", "--judge-protocol", "mem0")
        assert other.exit_code == 2 and "holds a run with other settings" in other.output


def test_mem0_judge_is_audited_with_its_own_prompt_and_labels(tmp_path: Path):
    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        assert "Generated answer:" in prompt and body["response_format"] == {"type": "json_object"}
        return '{"label": "WRONG"}' if "Not mentioned" in prompt else '{"label": "CORRECT"}'

    with serve_llm(FakeLLM(reply=reply)) as url:
        result = audit(url, tmp_path / "m", "--judge-protocol", "mem0", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["protocol"] == "mem0" and report["false_accept_rate"] == round(15 / 23, 4)


def test_report_shows_the_false_accept_rate_of_the_judge_that_graded_the_runs(tmp_path: Path):
    from .conftest import model_run_args

    def reply(body: dict) -> str:  # answers "Lisbon"; grades leniently
        return lenient(body) if JUDGED.search(body["messages"][-1]["content"]) else "Lisbon"

    with serve_llm(FakeLLM(reply=reply)) as url:
        assert audit(url, tmp_path / "audit", "--limit", "3").exit_code == 0
        args = model_run_args("probe", url, tmp_path / "run", "--judge-model", "gpt-4o-mini")
        assert runner.invoke(app, args).exit_code == 0
        other = model_run_args("probe", url, tmp_path / "other", "--judge-model", "judge-model")
        assert runner.invoke(app, other).exit_code == 0
    runs = [str(tmp_path / "run"), str(tmp_path / "audit"), str(tmp_path / "other")]
    result = runner.invoke(app, ["report", *runs, "-o", str(tmp_path / "rep"), "--json"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert [r["path"] for r in board["runs"]] == [runs[0], runs[2]]  # the audit is not ranked
    audited = json.loads((tmp_path / "audit" / "report.json").read_text())["false_accept"]
    first, second = board["groups"]
    assert first["judge"] == "realtalk/openai:gpt-4o-mini" and first["judge_audit"]["false_accept"] == audited
    assert second["judge_audit"] is None  # another judge: no audit of it was given
    assert board["runs"][0]["judge_audit"]["path"] == runs[1]
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert f"Judge audit: false-accept rate {audited['rate']:.3f}" in md
    table = (tmp_path / "rep" / "leaderboard.csv").read_text().splitlines()
    assert "judge_false_accept" in table[0] and str(audited["rate"]) in table[1]
    text = runner.invoke(app, ["report", *runs, "-o", str(tmp_path / "rep2")], env={"COLUMNS": "200"})
    assert "this judge's false-accept rate" in text.output and "group G1: judge false-accept rate" in text.output
    only = runner.invoke(app, ["report", str(tmp_path / "audit"), "-o", str(tmp_path / "rep3")])
    assert only.exit_code == 2 and "only judge audits given" in only.output


def test_rescore_refuses_an_audit_folder_and_leaves_its_report_alone(tmp_path: Path):
    with serve_llm(FakeLLM(reply=strict)) as url:
        assert audit(url, tmp_path / "a", "--limit", "1").exit_code == 0
    before = (tmp_path / "a" / "report.json").read_text()
    result = runner.invoke(app, ["probe", "rescore", str(tmp_path / "a")])
    assert result.exit_code == 2 and "a judge audit, not a probe run" in result.output
    assert (tmp_path / "a" / "report.json").read_text() == before
