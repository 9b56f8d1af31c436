"""A chat is its content and its place: files of one name in two folders are two chats (their rows never merge),
the same content given twice is asked once (with a note), names that sanitise alike keep their own memory
stores, rows carry a chat id unique within the run, and the run's identity covers the content of every file that
changes answers (a --split file, a --memory plug-in)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import chat_files

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def write_chat(path: Path, first_message: str | None = None) -> str:
    """The sample chat at `path`, its first message changed when given (another chat of the same shape)."""
    data = json.loads(SAMPLE_JSON.read_text())
    if first_message is not None:
        data["session_1"][0]["clean_text"] = first_message
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def probe(out: Path, *args: str):
    result = runner.invoke(app, ["probe", *args, "--model", "offline:bm25", "--out", str(out)])
    assert "Traceback" not in result.output, result.output
    return result


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def test_files_of_one_name_in_two_folders_are_two_chats(tmp_path: Path):
    a = write_chat(tmp_path / "a" / "Chat_S_Ana_Ben.json")
    b = write_chat(tmp_path / "b" / "Chat_S_Ana_Ben.json", "Hello there, Ben!")
    run = tmp_path / "run"
    result = probe(run, a, b)
    assert result.exit_code == 0, result.output
    assert len(rows(run)) == 12
    assert {r["chat"] for r in rows(run)} == {"a/Chat_S_Ana_Ben", "b/Chat_S_Ana_Ben"}
    report = json.loads((run / "report.json").read_text())
    assert sorted(report["chats"]) == ["a/Chat_S_Ana_Ben", "b/Chat_S_Ana_Ben"]
    assert report["chats"]["b/Chat_S_Ana_Ben"]["overall"]["count"] == 6
    identity = json.loads((run / "run.json").read_text())["identity"]["chats"]
    assert sorted(identity) == ["a/Chat_S_Ana_Ben.json", "b/Chat_S_Ana_Ben.json"]
    again = probe(run, a, b)
    assert again.exit_code == 0 and len(rows(run)) == 12  # resumes: nothing asked twice
    shown = runner.invoke(app, ["probe", "show", str(run), "--chat", "b/Chat_S_Ana_Ben", "--json"])
    assert shown.exit_code == 0, shown.output
    questions = json.loads(shown.stdout)
    assert len(questions) == 6 and {q["chat"] for q in questions} == {"b/Chat_S_Ana_Ben"}
    assert all(q["chat_file_found"] for q in questions)


def test_the_same_content_given_twice_is_asked_once_with_a_note(tmp_path: Path):
    (tmp_path / "copy").mkdir()
    copy = shutil.copy(SAMPLE_JSON, tmp_path / "copy" / "Renamed.json")  # the same bytes under another name
    run = tmp_path / "run"
    result = probe(run, str(SAMPLE_JSON), str(copy), str(SAMPLE_JSON))
    assert result.exit_code == 0, result.output
    assert len(rows(run)) == 6 and {r["chat"] for r in rows(run)} == {"Chat_S_Ana_Ben"}
    assert "holds the same chat as" in result.output and "asked once" in result.output
    report = json.loads((run / "report.json").read_text())
    assert any("asked once" in w for w in report.get("warnings", []))


def test_a_single_chat_keeps_its_file_name_as_id_so_earlier_runs_resume():
    files, notes = chat_files([SAMPLE_JSON])
    assert [f.id for f in files] == ["Chat_S_Ana_Ben"] and [f.key for f in files] == ["Chat_S_Ana_Ben.json"]
    assert notes == []


def test_names_that_sanitise_alike_keep_their_own_memory_stores(tmp_path: Path):
    spaced = write_chat(tmp_path / "chats" / "Ana Ben.json")
    underscored = write_chat(tmp_path / "chats" / "Ana_Ben.json", "Hello there, Ben!")
    memory = tmp_path / "store_memory.py"
    memory.write_text(
        "class Stores:\n"
        "    def ingest(self, chat, tools):\n"
        "        marker = tools.store / 'chat.txt'\n"
        "        assert not marker.exists(), f'{chat.name} found the store of {marker.read_text()}'\n"
        "        marker.write_text(chat.name)\n"
        "    def recall(self, question, budget):\n"
        "        return []\n"
    )
    run = tmp_path / "run"
    result = probe(run, spaced, underscored, "--memory", f"{memory}:Stores")
    assert result.exit_code == 0, result.output
    stores = sorted(p.read_text() for p in (run / "memory").rglob("chat.txt"))
    assert stores == ["Ana Ben", "Ana_Ben"]


def test_a_pipe_as_a_chat_is_one_line_exit_2_not_read_twice(tmp_path: Path):
    fifo = tmp_path / "chat.json"
    os.mkfifo(fifo)
    args = ["probe", str(fifo), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    env = {**os.environ, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "realtalk_cli", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "not a regular file" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


SPLIT = '[test_chats]\nana = "Chat_S"\n'


def test_an_edited_split_file_is_another_run(tmp_path: Path):
    split = tmp_path / "split.toml"
    split.write_text("sessions = 2\n" + SPLIT)
    run = tmp_path / "sim"
    with serve_llm(FakeLLM(reply=lambda body: "sounds good")) as url:
        args = model_run_args("simulate", url, run, "--no-bertscore", "--split", str(split), "--limit", "3")
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        assert runner.invoke(app, args).exit_code == 0  # unchanged: resumes
        split.write_text("sessions = 1\n" + SPLIT)
        edited = runner.invoke(app, args)
    assert edited.exit_code == 2, edited.output
    assert "split" in edited.output and "other settings" in edited.output
