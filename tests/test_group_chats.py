"""Group chats keep every speaker: the model, the REALTALK reader and writer, validate and analyze accept
speaker_3 and beyond, and two-speaker chats read and write as before."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import dumps_realtalk, load_chat

from .test_exports_whatsapp import IOS_GB_GROUP

runner = CliRunner()


def group_chat(tmp_path: Path) -> Path:
    source, out = tmp_path / "_chat.txt", tmp_path / "group.json"
    source.write_text(IOS_GB_GROUP, encoding="utf-8")
    result = runner.invoke(app, ["convert", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_group_chat_loads_with_every_speaker_and_writes_back_the_same_bytes(tmp_path):
    out = group_chat(tmp_path)
    chat = load_chat(out)
    assert chat.speakers == ("Cleo Park", "Ana Lima", "Ben Ode")
    assert dumps_realtalk(chat, with_qa=False) == out.read_text(encoding="utf-8")


def test_validate_accepts_a_third_speaker_and_names_all_of_them_for_a_stranger(tmp_path):
    out = group_chat(tmp_path)
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    obj = json.loads(out.read_text(encoding="utf-8"))
    obj["session_1"][0]["speaker"] = "Dan"
    out.write_text(json.dumps(obj), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 1
    assert "speaker 'Dan' is none of the speakers in 'name' ('Cleo Park', 'Ana Lima', 'Ben Ode')" in result.output


def test_speaker_keys_with_a_gap_are_an_error(tmp_path):
    out = group_chat(tmp_path)
    obj = json.loads(out.read_text(encoding="utf-8"))
    obj["name"]["speaker_5"] = obj["name"].pop("speaker_3")
    out.write_text(json.dumps(obj), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 1 and "speaker keys are not speaker_1..speaker_5 without gaps" in result.output


def test_analyze_stats_and_ei_cover_every_speaker(tmp_path):
    out = group_chat(tmp_path)
    rows = json.loads(runner.invoke(app, ["analyze", "stats", str(out), "--json"]).output)
    assert rows[0]["speakers"] == 3 and rows[0]["messages"] == 4
    result = runner.invoke(app, ["analyze", "ei", str(out), "--out", str(tmp_path / "ei"), "--json"])
    assert result.exit_code == 0, result.output
    speakers = json.loads(result.output)["chats"]["group"]["speakers"]
    assert {s: v["messages"] for s, v in speakers.items()} == {"Cleo Park": 2, "Ana Lima": 1, "Ben Ode": 1}
