"""A probe protocol is one module registered in one place: a toy protocol, registered by a test, runs a
probe end to end against the loopback server with its own prompt, parameters and judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import chat_paths, load_chat
from realtalk_cli.tasks.probe import judges, protocols
from realtalk_cli.tasks.probe.items import Item
from realtalk_cli.tasks.probe.protocol import JudgeProtocol, ProbeProtocol

from .conftest import model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


class ShoutJudge(JudgeProtocol):
    name = "shout"
    params = {"temperature": 0.5, "max_tokens": 3}
    batch_params = params

    def prompt_hashes(self) -> dict[str, str]:
        return {"toy:judge": "0123456789ab"}

    def messages(self, row: dict) -> list[dict]:
        return [{"role": "user", "content": f"GRADE {row['prediction']} AGAINST {row['answer']}"}]

    def parse(self, text: str) -> float | None:
        return {"YES": 1.0, "NO": 0.0}.get(text.strip())


class ToyProtocol(ProbeProtocol):
    """Every question alone, no chat at all: the prompt is `TOY: <question>`."""

    name = "toy"
    answer_params = {"temperature": 0.7, "max_tokens": 5}
    judge = "shout"
    takes_context = False

    def prompt_hashes(self) -> dict[str, str]:
        return {"toy:answer": "ba9876543210"}

    def build_items(self, files, opts, model, memories) -> list[Item]:
        items = []
        for path in chat_paths(files):
            chat = load_chat(path)
            for i, qa in enumerate(chat.qa[: opts.limit]):
                items.append(Item.with_prompt(chat, path, i, qa, f"TOY: {qa.question}"))
        return items


@pytest.fixture
def toy_registered():
    protocols.register(ToyProtocol)
    judges.register(ShoutJudge)
    yield
    del protocols.PROTOCOLS["toy"], judges.JUDGES["shout"]


def reply(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    return "YES" if prompt.startswith("GRADE") else "an answer"


def test_a_registered_toy_protocol_runs_a_probe_with_its_prompts_parameters_and_judge(tmp_path: Path, toy_registered):
    fake = FakeLLM(reply=reply)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, out, "--compat", "toy", "--judge-model", "judge-model", "--limit", "2")
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        again = runner.invoke(app, args)  # the same run resumes: nothing is asked again
        assert again.exit_code == 0, again.output
    answers = [r for r in fake.requests if r["model"] == "gpt-4o-mini"]
    verdicts = [r for r in fake.requests if r["model"] == "judge-model"]
    assert len(answers) == 2 and len(verdicts) == 2
    assert all(r["messages"][0]["content"].startswith("TOY: ") for r in answers)
    assert all((r["temperature"], r["max_tokens"]) == (0.7, 5) for r in answers)
    assert all((r["temperature"], r["max_tokens"]) == (0.5, 3) for r in verdicts)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["judge_score"] for r in rows] == [1.0, 1.0]
    assert {r["judge_prompt"] for r in rows} == {"0123456789ab"}
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["manifest"]["parameters"]["compat"] == "toy"
    assert report["manifest"]["prompts"] == {"toy:answer": "ba9876543210", "toy:judge": "0123456789ab"}


def test_an_unregistered_protocol_is_a_usage_error_naming_the_registered_ones(tmp_path: Path, toy_registered):
    result = runner.invoke(app, model_run_args("probe", "http://127.0.0.1:9", tmp_path / "r", "--compat", "toys"))
    names = "choose paper, paper-once, locomo, locomo-batched, mem0, longmemeval, toy, official"
    assert result.exit_code == 2 and names in result.output
    result = runner.invoke(
        app, model_run_args("probe", "http://127.0.0.1:9", tmp_path / "r", "--compat", "toy", "--context", "bm25")
    )
    assert result.exit_code == 2 and "drop --context/--memory" in result.output
