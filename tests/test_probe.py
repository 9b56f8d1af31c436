from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.tasks.probe.judges.realtalk import parse_judge_score

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm

runner = CliRunner()
GOLD = {json.dumps(q["question"]): q["answer"] for q in json.loads(SAMPLE_JSON.read_text())["qa"]}


def gold_reply(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    if "Predicted answer:" in prompt:
        return '```json\n{"score": 1, "reason": "same",}\n```'
    if "Model's prediction:" in prompt:  # the paper's judge (JSON mode)
        return '{"score": 1}'
    for q, a in GOLD.items():
        if json.loads(q) in prompt:
            return a.split(";")[0]  # category 3 golds are scored without the rationale
    return "unknown"


pytestmark = pytest.mark.usefixtures("llm_env")


def probe(url: str, out: Path, *extra: str):
    return runner.invoke(app, model_run_args("probe", url, out, *extra))


def test_probe_end_to_end_with_judge_writes_predictions_and_reports(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run", "--judge-model", "judge-model", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["f1"] == 1.0 and r["judge_score"] == 1.0 for r in rows)
    assert {
        "chat",
        "qa_index",
        "question",
        "answer",
        "category",
        "category_name",
        "evidence",
        "prediction",
        "f1",
        "judge_score",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "cached",
        "error",
    } <= set(rows[0])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    overall = {"count": 6, "f1": 1.0, "f1_date_normalised": 1.0, "judge": 1.0, "judge_count": 6}
    overall["judges"] = {"realtalk/openai:judge-model": {"mean": 1.0, "count": 6}}  # every judge, keyed protocol/model
    assert report["overall"]["overall"] == overall
    assert report["overall"]["overall_1_3"] == report["overall"]["overall_1_4"] == report["overall"]["overall"]
    assert report["manifest"]["judge_model"] == "openai:judge-model"
    assert set(report["manifest"]["prompts"]) == {"probe_answer.txt", "probe_adversarial.txt", "probe_judge.txt"}
    assert (
        "| **all** | **overall (paper: categories 1-3)** | 6 | 1.000 | 1.000 | 1.000 |"
        in (tmp_path / "run" / "report.md").read_text()
    )
    assert API_KEY not in (tmp_path / "run" / "report.json").read_text()
    # the sessions appear once each, oldest first
    prompt = fake.requests[0]["messages"][0]["content"]
    assert prompt.count("DATE: 03.03.2024") == 1 and prompt.index("03.03.2024") < prompt.index("16.03.2024")


def test_probe_resumes_and_retries_failed_questions(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, faults=["429"] * 5)  # Retry-After: 0 keeps the test fast
    with serve_llm(fake) as url:
        first = probe(url, tmp_path / "run", "--concurrency", "1", "--no-cache")
        rows = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
        assert first.exit_code == 3, first.output  # incomplete: one question failed after retries
        assert sum(json.loads(r)["error"] is not None for r in rows) == 1
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        assert report["complete"] is False and report["incomplete"]["failed"] == 1
        assert (tmp_path / "run" / "report.md").read_text().splitlines()[2].startswith("> **INCOMPLETE RUN")
        asked = len(fake.requests)
        # a torn line from a killed run is ignored
        with open(tmp_path / "run" / "predictions.jsonl", "a") as f:
            f.write('{"chat": "Chat_S_Ana_Ben", "qa_in')
        second = probe(url, tmp_path / "run", "--no-cache", "--json")
    assert second.exit_code == 0, second.output
    assert len(fake.requests) == asked + 1  # only the failed question is asked again
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["overall"]["overall"]["count"] == 6 and report["overall"]["overall"]["f1"] == 1.0
    assert report["complete"] is True and report["failed_questions"] == 0  # counted from the final state
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 6  # the success replaced it


def test_probe_dry_run_calls_nothing(tmp_path: Path):
    fake = FakeLLM()
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["requests"] == 6 and plan["prompt_tokens"] > 1000 and plan["priced"]
    assert fake.requests == [] and not (tmp_path / "run").exists()


def test_probe_fail_under_exits_1(tmp_path: Path):
    with serve_llm(FakeLLM()) as url:
        result = probe(url, tmp_path / "run", "--fail-under", "0.5")
    assert result.exit_code == 1
    assert "under --fail-under 0.5" in result.output


def test_probe_unknown_model_is_one_line_exit_2(tmp_path: Path):
    with serve_llm(FakeLLM(models=("other",))) as url:
        result = probe(url, tmp_path / "run")
    assert result.exit_code == 2
    assert "error: openai:gpt-4o-mini: unknown model 'gpt-4o-mini'" in result.output
    assert "Traceback" not in result.output


def test_probe_offline_retrieval_reports_recall_within_the_token_budget(tmp_path: Path, llm_env):
    out_dir = tmp_path / "r"
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out_dir), "--context", "bm25"]
    result = runner.invoke(app, [*args, "--context-tokens", "260", "--json"])  # the whole prompt (issue 22)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert 0.0 <= report["overall"]["overall"]["recall"] <= 1.0
    assert report["overall"]["overall"]["recall"] == report["overall"]["overall"]["recall_at_k"]
    assert report["memory"]["spec"] == "bm25"
    rows = [json.loads(x) for x in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert all(0 < r["context_tokens"] <= 260 - 80 and r["retrieved"] for r in rows)  # instructions take ~100
    assert "| evidence recall | context tokens |" in (out_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "text,score",
    [
        ('{"score": 1}', 1.0),
        ('```json\n{"score": 0.5,}\n```', 0.5),
        ("0", 0.0),
        ('{"score": "x"}', None),
        ("Score: great", None),
        ('{score: 1, reason: "ok"}', 1.0),
        # off the scale: a judge error (asked again), never clamped to 1 or 0
        ('{"score": 7}', None),
        ('{"score": -1}', None),
        ('{"score": NaN}', None),
        ('{"score": Infinity}', None),
        ('{"score": true}', None),
        ("{score: 7}", None),
        ("1.5", None),
    ],
)
def test_judge_score_parsing_tolerates_quirks(text: str, score):
    assert parse_judge_score(text) == score


def test_temporal_questions_carry_the_date_hint(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "run").exit_code == 0
    prompts = [r["messages"][0]["content"] for r in fake.requests]
    hinted = [p for p in prompts if "written with the month in words (e.g. 29 December 2023" in p]
    assert len(hinted) == 2  # the sample has two category-2 questions


def test_compat_official_repeats_each_session_newest_first(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "run", "--compat", "official", "--limit", "1").exit_code == 0
    prompt = fake.requests[0]["messages"][0]["content"]
    assert prompt.count("DATE: 03.03.2024") == 2
    assert prompt.index("DATE: 16.03.2024") < prompt.index("DATE: 07.03.2024") < prompt.index("DATE: 03.03.2024")


def test_rescore_judges_saved_predictions_without_asking_the_model(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "run").exit_code == 0
        answered = len(fake.requests)
        before = json.loads((tmp_path / "run" / "report.json").read_text())
        assert before["overall"]["overall"]["judge"] is None
        result = runner.invoke(
            app,
            [
                "probe",
                "rescore",
                str(tmp_path / "run"),
                "--judge-model",
                "judge-model",
                "--base-url",
                url,
                "--api-key-env",
                "TEST_LLM_KEY",
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    judged = fake.requests[answered:]
    assert len(judged) == 6 and all("Predicted answer:" in r["messages"][0]["content"] for r in judged)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["overall"]["overall"]["judge"] == 1.0
    assert report["manifest"]["judge_model"] == "openai:judge-model"
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["judge_score"] == 1.0 for r in rows)


def test_run_config_toml_with_flag_overrides(tmp_path: Path):
    conf = tmp_path / "run.toml"
    conf.write_text(
        f'chats = ["{SAMPLE_JSON}"]\nmodel = "offline:bm25"\nout = "{tmp_path / "from-config"}"\nlimit = 2\n'
    )
    result = runner.invoke(app, ["probe", "--config", str(conf), "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "from-config" / "predictions.jsonl").read_text().splitlines()) == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('modle = "x"\n')
    result = runner.invoke(app, ["probe", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {bad}: unknown key 'modle'")


def test_locomo_adversarial_question_is_two_choice_and_scored_by_its_rule(tmp_path: Path):
    chat = {
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "I painted a lake."}],
        },
        "qa": [
            {"question": "What did Bo paint?", "evidence": ["D1:1"], "category": 5, "adversarial_answer": "a lake"},
            {"question": "What did Ann paint?", "answer": "a lake", "evidence": ["D1:1"], "category": 4},
        ],
    }
    path = tmp_path / "Chat_L.json"
    path.write_text(json.dumps(chat))

    def reply(body: dict) -> str:
        prompt = body["messages"][0]["content"]
        if "Select the correct answer" in prompt:
            return "(a)" if "(a) Not mentioned" in prompt else "(b)"
        return "a lake"

    with serve_llm(FakeLLM(reply=reply)) as url:
        result = runner.invoke(
            app,
            [
                "probe",
                str(path),
                "--model",
                "gpt-4o-mini",
                "--out",
                str(tmp_path / "r"),
                "--base-url",
                url,
                "--api-key-env",
                "TEST_LLM_KEY",
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    adversarial = report["overall"]["categories"]["5 adversarial"]
    assert adversarial == {
        "count": 1,
        "f1": 1.0,
        "f1_date_normalised": 1.0,
        "judge": None,
        "judge_count": 0,
        "measure": "not-mentioned accuracy",
    }
    assert report["overall"]["overall"]["count"] == 1  # adversarial kept out of the overall mean
    assert report["overall"]["overall_1_4"]["count"] == 1 and report["overall"]["overall_1_3"]["count"] == 0
    rows = [json.loads(x) for x in (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()]
    trap = next(r for r in rows if r["category"] == 5)
    assert trap["prediction"] == "Not mentioned in the conversation"
    assert trap["adversarial_answer"] == "a lake" and "answer" not in trap
    assert "not-mentioned accuracy" in (tmp_path / "r" / "report.md").read_text()


def test_unreachable_endpoint_is_one_line_exit_2(tmp_path: Path):
    result = probe("http://127.0.0.1:9/v1", tmp_path / "run", "--limit", "1")
    assert result.exit_code == 2
    assert result.output.startswith("error: openai:gpt-4o-mini: cannot reach http://127.0.0.1:9/v1")


def test_fail_under_from_config_and_flag(tmp_path: Path):
    conf = tmp_path / "run.toml"
    conf.write_text(f'chats = ["{SAMPLE_JSON}"]\nmodel = "offline:bm25"\nout = "{tmp_path / "r"}"\nfail_under = 0.0\n')
    assert runner.invoke(app, ["probe", "--config", str(conf)]).exit_code == 0
    flagged = runner.invoke(app, ["probe", "--config", str(conf), "--fail-under", "0.99"])
    assert flagged.exit_code == 1 and "under --fail-under 0.99" in flagged.output


@pytest.mark.parametrize(
    "report", ["[1]", '{"manifest": 5}', '{"run": []}', '{"memory": 5}', '{"memory": {"spec": "x"}}']
)
def test_rescore_with_a_malformed_report_json_is_one_line_and_rewrites_nothing(tmp_path: Path, monkeypatch, report):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(run)]
    assert runner.invoke(app, args).exit_code == 0
    (run / "report.json").write_text(report)
    predictions = (run / "predictions.jsonl").read_bytes()
    result = runner.invoke(app, ["probe", "rescore", str(run)])
    assert result.exit_code == 2, result.output
    assert "report.json" in result.output and "Traceback" not in result.output
    assert (run / "predictions.jsonl").read_bytes() == predictions and (run / "report.json").read_text() == report
