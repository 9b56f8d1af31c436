"""Prompt fields are filled in one pass, as `str.format` fills them: text from a chat, a memory or a gold answer
that looks like a field ("{question}", "{context}", "{prediction}") is sent as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.tasks.prompts import fill

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
ODD = "I painted {context} and {question} here {speaker_1}."


def test_fill_never_reads_what_it_put_in():
    assert fill("{a} {b}", a="{b}", b="{a}") == "{b} {a}"
    assert fill('{"score": 1} {a} {unknown}', a="x") == '{"score": 1} x {unknown}'


@pytest.mark.parametrize("compat", [[], ["--compat", "mem0"], ["--compat", "locomo"], ["--compat", "paper"]])
def test_field_like_chat_text_reaches_the_model_and_the_judge_unchanged(tmp_path: Path, llm_env, compat):
    chat = json.loads(SAMPLE_JSON.read_text())
    chat["session_1"][0]["clean_text"] = ODD
    chat["qa"] = chat["qa"][:1]
    chat["qa"][0]["answer"] = "pottery {prediction}"
    path = tmp_path / SAMPLE_JSON.name
    path.write_text(json.dumps(chat))
    from .test_probe import gold_reply

    def reply(body: dict) -> str:  # mem0's judge J answers with a label
        return '{"label": "CORRECT"}' if "Generated answer:" in body["messages"][0]["content"] else gold_reply(body)

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--judge-model", "judge-model", *compat)
        args[1] = str(path)
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    sent = [m["content"] for body in fake.requests for m in body["messages"]]
    assert any(ODD in text for text in sent), sent[0][:500]
    judged = [t for t in sent if "pottery {prediction}" in t]
    assert judged or "--compat" in compat and compat[1] == "locomo"  # LoCoMo has no judge of its own
