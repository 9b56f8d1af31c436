from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.probe import parse_judge_score

from .conftest import SAMPLE_JSON
from .llm_server import API_KEY, FakeLLM, serve_llm

runner = CliRunner()
GOLD = {json.dumps(q["question"]): q["answer"] for q in json.loads(SAMPLE_JSON.read_text())["qa"]}


def gold_reply(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    if "Predicted answer:" in prompt:
        return '```json\n{"score": 1, "reason": "same",}\n```'
    for q, a in GOLD.items():
        if json.loads(q) in prompt:
            return a.split(";")[0]  # category 3 golds are scored without the rationale
    return "unknown"


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))


def probe(url: str, out: Path, *extra: str):
    args = [
        "probe",
        str(SAMPLE_JSON),
        "--model",
        "gpt-4o-mini",
        "--out",
        str(out),
        "--base-url",
        url,
        "--api-key-env",
        "TEST_LLM_KEY",
        *extra,
    ]
    return runner.invoke(app, args)


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
    assert report["overall"]["overall"] == {"count": 6, "f1": 1.0, "judge": 1.0}
    assert report["manifest"]["judge_model"] == "openai:judge-model"
    assert set(report["manifest"]["prompts"]) == {"probe_answer.txt", "probe_judge.txt"}
    assert "| **all** | **overall** | 6 | 1.000 | 1.000 |" in (tmp_path / "run" / "report.md").read_text()
    assert API_KEY not in (tmp_path / "run" / "report.json").read_text()
    # the sessions appear once each, oldest first
    prompt = fake.requests[0]["messages"][0]["content"]
    assert prompt.count("DATE: 03.03.2024") == 1 and prompt.index("03.03.2024") < prompt.index("16.03.2024")


def test_probe_resumes_and_retries_failed_questions(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, faults=["429"] * 5)  # Retry-After: 0 keeps the test fast
    with serve_llm(fake) as url:
        first = probe(url, tmp_path / "run", "--concurrency", "1", "--no-cache")
        rows = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
        assert first.exit_code == 0, first.output
        assert sum(json.loads(r)["error"] is not None for r in rows) == 1
        asked = len(fake.requests)
        # a torn line from a killed run is ignored
        with open(tmp_path / "run" / "predictions.jsonl", "a") as f:
            f.write('{"chat": "Chat_S_Ana_Ben", "qa_in')
        second = probe(url, tmp_path / "run", "--no-cache", "--json")
    assert second.exit_code == 0, second.output
    assert len(fake.requests) == asked + 1  # only the failed question is asked again
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["overall"]["overall"]["count"] == 6 and report["overall"]["overall"]["f1"] == 1.0


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


def test_probe_offline_retrieval_reports_recall(tmp_path: Path):
    result = runner.invoke(
        app,
        [
            "probe",
            str(SAMPLE_JSON),
            "--model",
            "offline:bm25",
            "--out",
            str(tmp_path / "r"),
            "--context",
            "retrieval",
            "--top-k",
            "5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert 0.0 <= report["overall"]["overall"]["recall_at_k"] <= 1.0
    rows = [json.loads(x) for x in (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()]
    assert all(len(r["retrieved"]) == 5 for r in rows)


@pytest.mark.parametrize(
    "text,score",
    [
        ('{"score": 1}', 1.0),
        ('```json\n{"score": 0.5,}\n```', 0.5),
        ("0", 0.0),
        ('{"score": "x"}', None),
        ("Score: great", None),
        ('{score: 1, reason: "ok"}', 1.0),
    ],
)
def test_judge_score_parsing_tolerates_quirks(text: str, score):
    assert parse_judge_score(text) == score
