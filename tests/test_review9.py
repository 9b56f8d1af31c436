"""Review of issue 9 across the features that landed on it: attacks that found bugs, kept as tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON

runner = CliRunner()


def _bm25_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    ("field", "value"),
    [("f1", "high"), ("judge_score", [1]), ("qa_index", "3"), ("chat", ["a"]), ("question", {"q": 1})],
)
def test_report_and_probe_show_name_a_row_with_a_wrong_typed_field(tmp_path: Path, field: str, value):
    out = _bm25_run(tmp_path)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    rows[2][field] = value
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for args in (["report", str(out), "--out", str(tmp_path / "rep")], ["probe", "show", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "row 3" in result.output and field in result.output


def test_a_memory_that_fails_before_any_answer_leaves_no_folder(tmp_path: Path):
    out = tmp_path / "run"
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)]
    failed = runner.invoke(app, [*args, "--memory", "session-summaries"])  # a REALTALK chat has no summaries
    assert failed.exit_code == 2 and "session_summary" in failed.output
    assert not out.exists()
    assert runner.invoke(app, args).exit_code == 0  # the folder is not claimed by the run that never ran


def _label_or_reply(body: dict) -> str:
    if "Label the message marked >>>" in body["messages"][-1]["content"]:
        return '{"sentiment": "positive", "emotion": "joy", "reflective": false, "grounding": true}'
    return "Sounds good!"


def test_simulate_ei_model_uses_the_runs_endpoint_and_key(tmp_path: Path, monkeypatch):
    """--ei-model goes to --base-url with --api-key-env, as probe's --judge-model does."""
    from .conftest import model_run_args
    from .llm_server import API_KEY, FakeLLM, serve_llm

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeLLM(reply=_label_or_reply)
    with serve_llm(fake) as url:
        extra = ("--no-bertscore", "--limit", "2", "--ei-backend", "llm", "--ei-model", "judge-model")
        result = runner.invoke(app, model_run_args("simulate", url, tmp_path / "sim", *extra))
    assert result.exit_code == 0, result.output
    assert {b["model"] for b in fake.requests} == {"gpt-4o-mini", "judge-model"}


def test_simulate_with_no_key_for_the_ei_model_stops_before_any_request(tmp_path: Path, monkeypatch):
    from .llm_server import FakeLLM, serve_llm

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeLLM(reply=_label_or_reply)
    out = tmp_path / "sim"
    with serve_llm(fake) as url:
        args = ["simulate", str(SAMPLE_JSON), "--model", "offline:not-mentioned", "--base-url", url, "--out", str(out)]
        result = runner.invoke(app, [*args, "--no-bertscore", "--limit", "2", "--ei-backend", "llm", "--ei-model", "m"])
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output, result.output
    assert fake.requests == [] and not out.exists()


def test_analyze_compare_with_failed_labels_is_an_incomplete_run(tmp_path: Path, monkeypatch):
    """Every labelling request of `analyze compare --backend llm` failing was exit 0 with a report."""
    import shutil

    from .llm_server import API_KEY, FakeLLM, serve_llm

    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir(), b.mkdir()
    shutil.copy(SAMPLE_JSON, a), shutil.copy(SAMPLE_JSON, b)
    labels = '{"sentiment": "positive", "emotion": "joy", "reflective": false, "grounding": true}'
    fake = FakeLLM(reply=lambda body: labels, faults=["html"] * 200)
    out = tmp_path / "cmp"
    with serve_llm(fake) as url:
        args = ["analyze", "compare", str(a), str(b), "--backend", "llm", "--model", "gpt-4o-mini"]
        args += ["--out", str(out), "--base-url", url, "--api-key-env", "TEST_LLM_KEY"]
        result = runner.invoke(app, args)
        assert result.exit_code == 3, result.output
        assert "Traceback" not in result.output and "INCOMPLETE" in result.output
        summary = json.loads((out / "compare.json").read_text())
        assert summary["complete"] is False and "A:" in summary["incomplete"]["reason"]
        assert (out / "report.md").read_text().startswith("> **INCOMPLETE RUN")
        fake.faults.clear()
        again = runner.invoke(app, args)  # the same command resumes it
        assert again.exit_code == 0, again.output
        assert json.loads((out / "compare.json").read_text())["complete"] is True
        assert runner.invoke(app, args).exit_code == 2  # a finished comparison is not overwritten


@pytest.mark.parametrize("recorded", ['{"identity": [1]}', '{"identity": "x"}', '{"identity": 5}'])
def test_a_hand_edited_identity_in_run_json_is_one_line(tmp_path: Path, recorded: str):
    out = _bm25_run(tmp_path)
    (out / "run.json").write_text(recorded)
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)])
    assert result.exit_code == 2 and "unreadable run.json" in result.output, result.output


def test_max_cost_with_an_unpriced_judge_does_not_suggest_flags_that_price_the_answerer(tmp_path: Path):
    args = ["probe", str(SAMPLE_JSON), "--model", "gpt-4o-mini", "--judge-model", "my-judge", "--max-cost", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run"), "--price-in", "1", "--price-out", "1"])
    assert result.exit_code == 2 and "no price for openai:my-judge" in result.output
    assert "pass --price-in" not in result.output and "prices.toml" in result.output
    assert not (tmp_path / "run").exists()


def test_jobs_that_fail_together_leave_no_unretrieved_task_error(caplog):
    """Two captions failing at once printed asyncio's 'Task exception was never retrieved' with a traceback."""
    import gc
    import logging

    from realtalk_cli.errors import RealtalkError
    from realtalk_cli.llm.client import LLMClient
    from realtalk_cli.llm.jobs import run_jobs
    from realtalk_cli.llm.providers import resolve_model
    from realtalk_cli.tasks.probe import baselines  # noqa: F401  (registers the offline models)

    client = LLMClient(resolve_model("offline:not-mentioned"), concurrency=4)

    def done(tag, completion) -> None:
        raise RealtalkError(f"job {tag} failed")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.raises(RealtalkError):
            run_jobs(client, [(n, [{"role": "user", "content": "hi"}]) for n in range(4)], done)
        gc.collect()
    assert "never retrieved" not in caplog.text
