"""Every billed request counted once, where the user looks: judge re-asks bounded and billed, the summary's
counts, the run folder's totals across invocations, --max-cost over everything the folder spends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import model_run_args
from .llm_server import FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def probe(url: str, out: Path, *extra: str):
    return runner.invoke(app, model_run_args("probe", url, out, *extra))


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def is_judge(body: dict) -> bool:
    return "Predicted answer:" in body["messages"][0]["content"]


def verdicts(verdict: str):
    def reply(body: dict) -> str:
        return verdict if is_judge(body) else gold_reply(body)

    return reply


def test_an_unreadable_verdict_is_billed_counted_and_asked_twice_per_invocation(tmp_path: Path):
    fake = FakeLLM(reply=verdicts("It is correct."))
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        result = probe(url, out, "--judge-model", "gpt-4o-mini")
        assert result.exit_code == 3, result.output
        judged = [r for r in fake.requests if is_judge(r)]
        assert len(judged) == 12  # each of the 6 items asked twice, not once more after the answers
        rows = rows_of(out)
        # the billed replies are on the rows: tokens and cost of both replies
        words = sum(len(r["messages"][0]["content"].split()) for r in judged)
        assert sum(r["judge_prompt_tokens"] for r in rows) == words
        assert all(r["judge_cost_usd"] > 0 and r["judge_error"] for r in rows)
        report = report_of(out)
        assert report["overall"]["judge_cost_usd"] > 0
        assert report["run"]["judge_requests"] == 6 and report["run"]["retries"] == 6
        again = probe(url, out, "--judge-model", "gpt-4o-mini")
        assert again.exit_code == 3 and len([r for r in fake.requests if is_judge(r)]) == 24  # twice more each


@pytest.mark.usefixtures("llm_env")
def test_the_paper_judge_asks_four_times_in_all(tmp_path: Path):
    from .test_paper_protocol import _chat

    def reply(body: dict) -> str:
        return "not json" if body["messages"][0]["content"].startswith("Given the question") else "Ann"

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--compat", "paper")
        args[1] = str(_chat(tmp_path))
        result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    judged = [r for r in fake.requests if r["messages"][0]["content"].startswith("Given the question")]
    assert len(judged) == 2 * 4  # two items, four attempts each (utils_llm.py), not 8 each
    assert all(r["judge_cost_usd"] > 0 for r in rows_of(tmp_path / "run"))
