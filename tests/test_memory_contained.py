"""A --memory plug-in is the user's code, run inside fences: its exception text is redacted like a server's
error, what it prints (at import, in its calls, in __del__, at exit) goes to stderr and never into `--json`
stdout, a working directory it changes cannot move what realtalk writes, its file runs once per run, and
an edit to its source is another memory (a resume with the edited file is refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
OTHER_SECRET = "sk-openai-secret-0123456789"

PLUGIN = """
import atexit, os, threading, time
from pathlib import Path

HERE = Path(__file__).parent
with open(HERE / "imports.log", "a") as log:
    log.write("imported\\n")
print("PRINT-AT-IMPORT")
atexit.register(lambda: print("PRINT-AT-EXIT"))

class Quiet:
    version = "1"

    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        return self.ids[:2]

class Loud(Quiet):

    def __init__(self):
        print("PRINT-IN-INIT")

    def ingest(self, chat, tools):
        print("PRINT-IN-INGEST")
        super().ingest(chat, tools)

    def recall(self, question, budget):
        print("PRINT-IN-RECALL")
        return super().recall(question, budget)

    def __del__(self):
        print("PRINT-IN-DEL")

class LoudCycle(Loud):
    def __init__(self):
        super().__init__()
        self.me = self  # freed by the garbage collector only

class Wanders(Quiet):
    def ingest(self, chat, tools):
        super().ingest(chat, tools)
        away = HERE / "elsewhere"
        away.mkdir(exist_ok=True)

        def wander():
            for _ in range(5000):
                os.chdir(away)
                time.sleep(0.001)

        threading.Thread(target=wander, daemon=True).start()
"""

LEAKS = """
import os

def leak(where):
    key = os.environ.get("TEST_LLM_KEY", "")
    other = os.environ.get("OPENAI_API_KEY", "")
    raise RuntimeError(f"{where}: key {key} refused; other key {other}; sent Authorization: Bearer tok-abc-123456")

class Base:
    version = "1"

    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        return self.ids[:2]

class LeaksInIngest(Base):
    def ingest(self, chat, tools):
        leak("ingest")

class LeaksInRecall(Base):
    def recall(self, question, budget):
        leak("recall")

class LeaksInInit(Base):
    def __init__(self):
        leak("init")

class Unprintable(Exception):
    def __str__(self):
        raise ValueError("no")

class RaisesUnprintable(Base):
    def ingest(self, chat, tools):
        raise Unprintable()

class RaisesOverLines(Base):
    def ingest(self, chat, tools):
        raise RuntimeError("first line\\nsecond line\\n\\nthird")

if os.environ.get("LEAK_AT_IMPORT"):
    leak("import")

class Fine(Base):
    pass
"""


def plugin(tmp_path: Path, source: str = PLUGIN) -> Path:
    path = tmp_path / "plugin.py"
    path.write_text(source)
    return path


def two_chats(tmp_path: Path) -> list[str]:
    """The sample chat and a second chat that differs from it in one message."""
    chats = tmp_path / "chats"
    chats.mkdir()
    data = json.loads(SAMPLE_JSON.read_text())
    (chats / SAMPLE_JSON.name).write_text(json.dumps(data))
    data["session_1"][0]["clean_text"] = "Hello Ben! How was the weekend?"
    (chats / "Chat_T_Ana_Ben.json").write_text(json.dumps(data))
    return [str(chats / SAMPLE_JSON.name), str(chats / "Chat_T_Ana_Ben.json")]


@pytest.mark.parametrize("cls", ["LeaksInIngest", "LeaksInRecall", "LeaksInInit", "import"])
def test_a_plugins_exception_text_never_shows_an_api_key(tmp_path: Path, llm_env, monkeypatch, cls):
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_SECRET)
    if cls == "import":
        monkeypatch.setenv("LEAK_AT_IMPORT", "1")
    spec = f"{plugin(tmp_path, LEAKS)}:{'Fine' if cls == 'import' else cls}"
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        result = runner.invoke(app, model_run_args("probe", url, tmp_path / "run", "--memory", spec))
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and "[redacted]" in result.output and "Traceback" not in result.output
    for secret in (API_KEY, OTHER_SECRET, "tok-abc-123456"):
        assert secret not in result.output
    for file in (tmp_path / "run").rglob("*") if (tmp_path / "run").exists() else []:
        if file.is_file():
            assert API_KEY not in file.read_text(errors="replace")


@pytest.mark.parametrize(
    "cls, shown",
    [("RaisesUnprintable", "Unprintable (its message could not be read)"), ("RaisesOverLines", "first line second")],
)
def test_a_plugins_odd_exception_is_still_one_line(tmp_path: Path, llm_env, cls, shown):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--memory", f"{plugin(tmp_path, LEAKS)}:{cls}"])
    assert result.exit_code == 2 and shown in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def probe_json(tmp_path: Path, spec: str, *chats: str) -> subprocess.CompletedProcess:
    """The console script itself, with --json: its exit path (atexit, teardown) is under test too."""
    env = {**os.environ, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    args = ["probe", *chats, "--model", "offline:bm25", "--out", "run", "--json", "--memory", spec]
    return subprocess.run(
        [sys.executable, "-m", "realtalk_cli", *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


@pytest.mark.parametrize("cls", ["Loud", "LoudCycle"])
def test_what_a_plugin_prints_anywhere_goes_to_stderr_and_its_file_runs_once(tmp_path: Path, cls):
    result = probe_json(tmp_path, f"{plugin(tmp_path)}:{cls}", *two_chats(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is the JSON alone
    assert report["overall"]["overall"]["count"] == 12
    printed = ("AT-IMPORT", "IN-INIT", "IN-INGEST", "IN-RECALL", "IN-DEL", "AT-EXIT")
    for what in printed:
        assert f"PRINT-{what}" in result.stderr, what
    assert result.stderr.count("PRINT-IN-DEL") == 2  # one memory per chat, each let go of
    assert result.stderr.count("PRINT-AT-EXIT") == 1
    assert (tmp_path / "imports.log").read_text() == "imported\n"  # one run, one import


def test_a_plugin_that_keeps_changing_the_working_directory_cannot_move_the_run(tmp_path: Path):
    result = probe_json(tmp_path, f"{plugin(tmp_path)}:Wanders", *two_chats(tmp_path))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "elsewhere" / "run").exists()
    assert (tmp_path / "run" / "report.json").exists() and (tmp_path / "run" / "predictions.jsonl").exists()
    assert json.loads(result.stdout)["complete"]


def test_an_edited_plugin_is_another_memory_even_without_a_version_bump(tmp_path: Path, llm_env):
    path = plugin(tmp_path, LEAKS)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    args += ["--memory", f"{path}:Fine"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output  # unchanged: resumes
    path.write_text(LEAKS.replace("return self.ids[:2]", "return self.ids[:3]"))  # `version` still "1"
    edited = runner.invoke(app, args)
    assert edited.exit_code == 2, edited.output
    assert "memory.source_sha256" in edited.output
