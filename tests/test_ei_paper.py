"""`analyze ei --backend paper`: the paper's prompts and labellers, its history rule, its fits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.analysis import ei_paper
from realtalk_cli.analysis.metrics import exponential_rate
from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat

from .conftest import SAMPLE_JSON, SHARED
from .llm_server import API_KEY, FakeLLM, serve_llm

runner = CliRunner()


@pytest.mark.skipif(
    not (SHARED / "PAPER_PROTOCOL.md").is_file(), reason=f"shared/PAPER_PROTOCOL.md not found at {SHARED}"
)
def test_prompts_are_the_papers():
    protocol = (SHARED / "PAPER_PROTOCOL.md").read_text(encoding="utf-8")
    for system, dialogue in ei_paper.load_prompts().values():
        assert system.rstrip("\n") in protocol and dialogue in protocol


def test_prompts_hold_the_history_up_to_the_message():
    prompts = ei_paper.load_prompts()
    chat = load_chat(SAMPLE_JSON)
    histories = ei_paper.session_histories(chat)
    first_session = chat.sessions[0].messages
    history = histories[2]
    assert history == first_session[:3]
    (message,) = ei_paper.request(prompts["reflective"], history)
    assert message["role"] == "system" and message["content"].startswith(prompts["reflective"][0])
    lines = "\n".join(f"{m.speaker}: {m.clean_text}" for m in first_session[:3])
    assert (
        f"Given this dialogue context:\n{lines}\n\nDetermine whether the {history[-1].speaker}'s last"
        in (message["content"])
    )
    assert first_session[3].clean_text not in message["content"]  # no later message
    assert histories[len(first_session)] == chat.sessions[1].messages[:1]  # a new session starts afresh


def test_edited_prompt_file_is_refused(monkeypatch):
    monkeypatch.setitem(ei_paper.PROMPT_SHA256, "paper_empathy_system.txt", "0" * 64)
    with pytest.raises(Exception, match="differs from the paper's prompt"):
        ei_paper.load_prompts()


@pytest.mark.parametrize(
    ("reply", "flag"), [("True", True), ("False", False), ("False, not true", True), ("  TRUE.", True)]
)
def test_flag_parsing_is_the_papers_substring_rule(reply: str, flag: bool):
    assert ei_paper.parse_flag(reply) is flag


def test_empathy_sums_every_value():
    assert ei_paper.empathy_total('{"emotional_reaction": 2, "interpretation": 1, "exploration": 0}') == 3.0
    assert ei_paper.empathy_total('{"a": 1, "b": 1.5}') == 2.5  # whatever the keys, as the paper
    assert ei_paper.empathy_total('{"a": "2"}') is None and ei_paper.empathy_total("nope") is None


def test_growth_rate_is_the_papers_nonlinear_fit():
    # y = 0.5 e^(0.3 x), x = 1..5: a least-squares fit on y recovers the rate exactly.
    import math

    ys = [0.5 * math.exp(0.3 * x) for x in range(1, 6)]
    assert exponential_rate(ys) == pytest.approx(0.3, abs=1e-6)


def _reply(body: dict) -> str:
    content = body["messages"][0]["content"]
    if "Score the empathy" in content:
        return '{"emotional_reaction": 1, "interpretation": 1, "exploration": 1}'
    return "True" if "reflective" in content else "False"


def _paper_ei(tmp_path: Path, monkeypatch, tiny_hf_models: dict, *extra: str):
    """`analyze ei --backend paper` with the tiny local models and the loopback LLM: (result, fake)."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeLLM(reply=_reply)
    args = ["analyze", "ei", str(SAMPLE_JSON), "--out", str(tmp_path / "ei"), "--backend", "paper", "--json"]
    for kind, path in tiny_hf_models.items():
        args += ["--hf-model", f"{kind}={path}"]
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        return runner.invoke(app, [*args, *extra]), fake


def test_paper_backend_with_local_models_and_a_loopback_llm(tmp_path: Path, monkeypatch, tiny_hf_models):
    result, fake = _paper_ei(tmp_path, monkeypatch, tiny_hf_models)
    assert result.exit_code == 0, result.output
    assert len(fake.requests) == 26 * 3  # reflective, grounding, empathy per message
    assert all([m["role"] for m in r["messages"]] == ["system"] for r in fake.requests)
    assert all(set(r) <= {"model", "messages", "response_format"} for r in fake.requests)  # no sampling params
    empathy = [r for r in fake.requests if "Score the empathy" in r["messages"][0]["content"]]
    assert len(empathy) == 26 and all(r["response_format"] == {"type": "json_object"} for r in empathy)
    metrics = json.loads(result.output)
    assert metrics["backend"] == "paper (llm labels: openai:gpt-4o-mini)" and metrics["hf_models"] == tiny_hf_models
    assert metrics["emotion_entropy_max_bits"] == 3.46 and "paper" in metrics["warning"]
    ana = metrics["chats"]["Chat_S_Ana_Ben"]["speakers"]["Ana"]
    assert ana["reflective_frequency"] == 1.0 and ana["grounding_frequency"] == 0.0 and ana["empathy"] == 3.0
    assert ana["intimacy_linear_coefficient"] is not None and ana["intimacy_exp_rate"] is not None
    rows = [json.loads(x) for x in (tmp_path / "ei" / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 26 and {r["backend"] for r in rows} == {"paper"}
    assert all(isinstance(r["intimacy"], float) for r in rows)  # the raw regressor output, not clipped


def test_paper_backend_labels_merged_turns_and_refuses_to_mix(tmp_path: Path, monkeypatch, tiny_hf_models):
    result, fake = _paper_ei(tmp_path, monkeypatch, tiny_hf_models, "--unit", "turns")
    assert result.exit_code == 0, result.output
    turns = len(load_chat(SAMPLE_JSON).turns())
    assert turns < 26 and len(fake.requests) == turns * 3
    assert json.loads(result.output)["unit"] == "turns"
    result = runner.invoke(app, ["analyze", "ei", str(SAMPLE_JSON), "--out", str(tmp_path / "ei")])
    assert result.exit_code == 2 and "backend" in result.output  # another labelling of the same folder


def test_paper_backend_offline_names_the_missing_model(tmp_path: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "realtalk_cli", "analyze", "ei", str(SAMPLE_JSON), "--out", str(tmp_path)]
    result = subprocess.run([*cmd, "--backend", "paper"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the paper backend cannot load model 'cardiffnlp/twitter-roberta-")
    assert len(result.stderr.strip().splitlines()) == 1
