"""simulate --split: the paper's held-out test chats (first 3 sessions), split files, the speaker cue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat
from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.simulate.split import load_split

from .conftest import REALTALK_JSON, SAMPLE_JSON, model_run_args, needs_shared
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()


def test_paper_split_tests_emi_on_chat_1_first_three_sessions():
    split = load_split("paper")
    assert split.includes(Chat("Chat_1_Emi_Elise", "realtalk", "Emi", "elise"), "Emi")
    assert not split.includes(Chat("Chat_4_Emi_Paola", "realtalk", "Emi", "Paola"), "Emi")
    assert not split.includes(Chat("Chat_10_Emi_X", "realtalk", "Emi", "X"), "Emi")  # Chat_1 is not Chat_10
    assert not split.includes(Chat("Chat_1_Emi_Elise", "realtalk", "Emi", "elise"), "elise")
    assert split.includes_session(3) and not split.includes_session(4)
    chats = [Chat("Chat_1_Emi_Elise", "realtalk", "Emi", "elise"), Chat("Chat_2_K_E", "realtalk", "Kevin", "elise")]
    assert split.undesignated(chats) == ["elise", "kevin"]
    assert load_split("all").includes(chats[1], "Kevin") and load_split("all").undesignated(chats) == []


def test_split_file_and_bad_values(tmp_path: Path):
    path = tmp_path / "split.toml"
    path.write_text('sessions = 2\n[test_chats]\n"Fahim Khan" = "Chat_9"\nelise = "Chat_2"\n')
    split = load_split(str(path))
    assert split.test_chats == {"fahim": "Chat_9", "elise": "Chat_2"} and split.sessions == 2
    assert split.includes(Chat("Chat_9_Fahim_Akib", "realtalk", "Akib", "Fahim Khan"), "Fahim Khan")
    with pytest.raises(RealtalkError, match="choose all, paper"):
        load_split("papr")
    path.write_text("[test_chats]\nemi = 1\n")
    with pytest.raises(RealtalkError, match="expected a \\[test_chats\\] table"):
        load_split(str(path))


@needs_shared
def test_simulate_split_paper_plans_emis_chat_1_only(tmp_path: Path, llm_env):
    chat_1, chat_4 = (next(p for p in REALTALK_JSON if p.name.startswith(n)) for n in ("Chat_1_", "Chat_4_"))
    chat = load_chat(chat_1)
    first = chat.sessions[0].messages[0]
    expected = sum(1 for m in chat.messages() if m.speaker == "Emi" and m.session <= 3 and m is not first)
    with serve_llm(FakeLLM()) as url:
        args = model_run_args("simulate", url, tmp_path / "dry", "--split", "paper", "--dry-run", "--json")
        args[1:2] = [str(chat_1), str(chat_4)]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["requests"] == expected


def test_user_message_ends_with_the_target_speaker_cue_and_report_names_the_split(tmp_path: Path, llm_env):
    fake = FakeLLM(reply=lambda body: "Sure!")
    split = tmp_path / "split.toml"
    split.write_text('[test_chats]\nana = "Chat_S"\n')
    with serve_llm(fake) as url:
        result = runner.invoke(
            app,
            model_run_args("simulate", url, tmp_path / "run", "--no-bertscore", "--split", str(split), "--json"),
        )
    assert result.exit_code == 0, result.output
    assert fake.requests and all(r["messages"][1]["content"].endswith("\nAna:") for r in fake.requests)
    report = json.loads(result.output)
    assert set(report["speakers"]) == {"ana"}
    assert report["manifest"]["split"]["left_out"] == ["ben"]
    assert "left out, no test chat in this split: ben" in (tmp_path / "run" / "report.md").read_text()
    assert SAMPLE_JSON.name.startswith("Chat_S")
