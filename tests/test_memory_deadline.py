"""A memory plug-in that hangs, prints, moves the working directory or leaves threads behind (`--memory-timeout`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()

# A file next to the plug-in switches its misbehaviour on, so that a fixed plug-in keeps its identity (spec,
# options, version) and the same command resumes the run.
MEMORIES = """
import os, sys, threading, time
from pathlib import Path

HERE = Path(__file__).parent

def misbehaving(what):
    return (HERE / what).exists()

print("imported")
if misbehaving("hang-import"):
    threading.Event().wait()

class Base:
    def __init__(self):
        if misbehaving("hang-init"):
            threading.Event().wait()

    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]
        if misbehaving("hang-ingest"):
            threading.Event().wait()

    def recall(self, question, budget):
        if misbehaving("hang-every-recall"):
            threading.Event().wait()
        if misbehaving("hang-recall") and "Ben" in question:
            (HERE / "in-recall").touch()
            threading.Event().wait()
        return self.ids[:3]

class Noisy(Base):
    def ingest(self, chat, tools):
        print("ingesting", chat.name)
        os.system("echo from-a-child-process")
        super().ingest(chat, tools)

    def recall(self, question, budget):
        print("recalling", question)
        return super().recall(question, budget)

class MovesAway(Base):
    def ingest(self, chat, tools):
        os.makedirs(HERE / "elsewhere", exist_ok=True)
        os.chdir(HERE / "elsewhere")
        super().ingest(chat, tools)

class LeavesAThread(Base):
    def ingest(self, chat, tools):
        threading.Thread(target=threading.Event().wait, name="indexer", daemon=False).start()
        super().ingest(chat, tools)

class EndlessList(list):
    def __iter__(self):
        yield "D1:1"
        threading.Event().wait()  # never ends (without spinning the CPU of the test process)

class ReturnsAnEndlessList(Base):
    def recall(self, question, budget):
        return EndlessList(["D1:1"])

class Chatty(Base):
    def recall(self, question, budget):
        while "Ben" in question:  # past its deadline it keeps printing
            print("still thinking")
            time.sleep(0.01)
        return super().recall(question, budget)

class EvilId(str):
    def __str__(self):
        raise RuntimeError("read me not")

    def strip(self, *args):
        raise RuntimeError("read me not")

class ReturnsEvilStrings(Base):
    def recall(self, question, budget):
        from realtalk_cli.tasks.memory import Passage
        return [EvilId("D1:1"), Passage(EvilId("a fact"), [EvilId("D1:2")], EvilId("May"))]

class BadRequests(Base):
    def ingest(self, chat, tools):
        tools.complete("Summarise this chat")

class SqliteMemory(Base):
    # sqlite3 objects may only be used in the thread that made them: ingest and recall must share one

    def ingest(self, chat, tools):
        import sqlite3
        self.db = sqlite3.connect(":memory:")
        self.db.execute("create table m (id text)")
        self.db.executemany("insert into m values (?)", [(m.dia_id,) for m in chat.messages()])

    def recall(self, question, budget):
        return [row[0] for row in self.db.execute("select id from m limit 2")]

class SeesNoAnswers(Base):
    def ingest(self, chat, tools):
        assert chat.qa == [], "the memory saw the questions"
        super().ingest(chat, tools)
        for s in chat.sessions:
            s.messages.clear()  # its copy only
"""


def write_memories(tmp_path: Path) -> Path:
    path = tmp_path / "mems.py"
    path.write_text(MEMORIES)
    return path


def rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def test_a_recall_past_the_deadline_is_an_error_for_that_question_and_the_next_run_asks_it(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    (tmp_path / "hang-recall").touch()
    fake = FakeLLM(reply=lambda body: "pottery")
    out = tmp_path / "run"
    args = ["--memory", f"{mems}:Base", "--memory-timeout", "0.5", "--json"]
    with serve_llm(fake) as url:
        started = time.monotonic()
        first = runner.invoke(app, model_run_args("probe", url, out, *args))
        assert time.monotonic() - started < 20
        assert first.exit_code == 3, first.output
        assert "Traceback" not in first.output
        failed = [r for r in rows(out) if r["error"]]
        answered = [r for r in rows(out) if not r["error"]]
        assert failed and all("Ben" in r["question"] for r in failed)
        assert all("--memory-timeout 0.5 s" in r["error"] and r["f1"] is None for r in failed)
        assert len(fake.requests) == len(answered)  # nothing was asked for the failed questions
        report = json.loads((out / "report.json").read_text())
        assert report["complete"] is False and report["failed_questions"] == len(failed)
        assert report["memory"]["recall_timeouts"] == len(failed)
        assert f"{len(failed)} recalls took longer than --memory-timeout" in (out / "report.md").read_text()

        (tmp_path / "hang-recall").unlink()
        again = runner.invoke(app, model_run_args("probe", url, out, *args))
        assert again.exit_code == 0, again.output
        assert len(fake.requests) == len(answered) + len(failed)  # only the failed ones asked
    assert all(r["error"] is None for r in rows(out)) and len(rows(out)) == 6


def test_an_ingest_past_the_deadline_stops_the_run_with_one_line_exit_3_and_the_command_resumes(
    tmp_path: Path, llm_env
):
    mems = write_memories(tmp_path)
    (tmp_path / "hang-ingest").touch()
    out = tmp_path / "run"
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out), "--memory", f"{mems}:Base"]
    args += ["--memory-timeout", "0.5"]
    started = time.monotonic()
    result = runner.invoke(app, args)
    assert time.monotonic() - started < 20
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    [line] = [x for x in result.output.splitlines() if x.startswith("error:")]  # the memory printed "imported"
    assert "ingest on Chat_S_Ana_Ben took longer than --memory-timeout 0.5 s" in line
    assert not (out / "predictions.jsonl").exists()

    (tmp_path / "hang-ingest").unlink()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(rows(out)) == 6


def test_a_dry_run_leaves_out_the_questions_whose_recall_timed_out(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "gpt-4o-mini", "--out", str(tmp_path / "run"), "--dry-run"]
    args += ["--memory", f"{mems}:Base", "--memory-timeout", "0.5", "--json"]
    full = runner.invoke(app, args)
    assert full.exit_code == 0, full.output
    (tmp_path / "hang-recall").touch()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plan, whole = json.loads(result.stdout), json.loads(full.stdout)
    assert 0 < plan["requests"] < whole["requests"]
    assert plan["recall_timeouts"] == whole["requests"] - plan["requests"]


def test_a_memory_timeout_that_is_no_duration_is_one_line_exit_2(tmp_path: Path, llm_env):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--memory", "bm25"]
    for bad in ("0", "-1", "nan", "soon"):
        result = runner.invoke(app, [*args, "--memory-timeout", bad])
        assert result.exit_code == 2, (bad, result.output)
        assert "Traceback" not in result.output and "memory-timeout" in result.output.replace("_", "-")
    assert not (tmp_path / "run").exists()


def test_the_memory_sees_a_copy_of_the_chat_without_its_questions(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--json"]
    result = runner.invoke(app, [*args, "--memory", f"{mems}:SeesNoAnswers"])
    assert result.exit_code == 0, result.output
    # it emptied the sessions of its copy: the messages it names are still shown and scored
    assert all(r["retrieved"] == ["D1:1", "D1:2", "D1:3"] and r["context_tokens"] > 0 for r in rows(tmp_path / "run"))


def test_a_memory_that_changes_the_working_directory_does_not_move_the_run(tmp_path: Path, llm_env, monkeypatch):
    mems = write_memories(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", "run", "--memory", f"{mems}:MovesAway"]
    )
    assert result.exit_code == 0, result.output
    assert "changed the working directory" in result.stderr
    assert (tmp_path / "run" / "report.json").exists()
    assert not (tmp_path / "elsewhere" / "run").exists()
    assert Path.cwd() == tmp_path


def run_cli(tmp_path: Path, spec: str, *extra: str) -> subprocess.CompletedProcess:
    """The console script itself (its exit path is under test), in a process of its own."""
    mems = write_memories(tmp_path)
    env = {**os.environ, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--json"]
    cmd = [sys.executable, "-m", "realtalk_cli", *args, "--memory", f"{mems}:{spec}", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_what_a_memory_prints_goes_to_stderr_and_json_output_stays_clean(tmp_path: Path):
    result = run_cli(tmp_path, "Noisy")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["complete"] is True
    assert "ingesting Chat_S_Ana_Ben" in result.stderr and "from-a-child-process" in result.stderr
    assert "imported" in result.stderr  # at import too
    assert "recalling" in result.stderr


def test_a_recall_that_keeps_printing_past_its_deadline_keeps_stdout_clean(tmp_path: Path):
    result = run_cli(tmp_path, "Chatty", "--memory-timeout", "0.3")
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["complete"] is False
    assert "still thinking" in result.stderr


def test_the_process_exits_promptly_past_a_hung_recall_and_a_thread_the_memory_left_running(tmp_path: Path):
    (tmp_path / "hang-recall").touch()
    started = time.monotonic()
    result = run_cli(tmp_path, "LeavesAThread", "--memory-timeout", "0.5")
    assert time.monotonic() - started < 30
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "left threads running (indexer)" in result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is False and report["memory"]["recall_timeouts"] >= 1
    assert json.loads((tmp_path / "run" / "report.json").read_text())["complete"] is False


def test_a_hung_ingest_ends_the_process_promptly_with_exit_3(tmp_path: Path):
    (tmp_path / "hang-ingest").touch()
    started = time.monotonic()
    result = run_cli(tmp_path, "Base", "--memory-timeout", "0.5")
    assert time.monotonic() - started < 30
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "--memory-timeout 0.5 s" in result.stderr


def test_a_batch_run_sends_no_request_for_a_question_whose_recall_timed_out(tmp_path: Path, llm_env):
    from .test_batch import until_done

    mems = write_memories(tmp_path)
    (tmp_path / "hang-recall").touch()
    run = tmp_path / "run"
    with serve_llm(FakeLLM(reply=lambda body: "pottery")) as url:
        codes, last = until_done(url, run, "--memory", f"{mems}:Base", "--memory-timeout", "0.5")
    assert codes[-1] == 3
    sent = [json.loads(x)["custom_id"] for x in (run / "batch-answer-1.jsonl").read_text().splitlines()]
    failed = {f"{r['chat']}#{r['qa_index']}" for r in rows(run) if r["error"]}
    assert failed and sent and not failed & set(sent)
    assert all("--memory-timeout" in r["error"] for r in rows(run) if r["error"])


def test_ctrl_c_during_a_hung_recall_ends_the_process_at_once_with_exit_130(tmp_path: Path):
    mems = write_memories(tmp_path)
    (tmp_path / "hang-recall").touch()
    env = {**os.environ, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    cmd = [sys.executable, "-m", "realtalk_cli", *args, "--memory", f"{mems}:Base", "--memory-timeout", "600"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "in-recall").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr


def test_a_memory_whose_import_or_constructor_hangs_is_bounded_too(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    args += ["--memory", f"{mems}:Base", "--memory-timeout", "0.5"]
    (tmp_path / "hang-import").touch()
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output  # nothing could start: not even the memory's identity is known
    assert "importing it took longer than --memory-timeout 0.5 s" in result.output
    assert not (tmp_path / "run").exists()
    (tmp_path / "hang-import").unlink()
    (tmp_path / "hang-init").touch()
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "ingest on Chat_S_Ana_Ben took longer" in result.output and "Traceback" not in result.output


def test_requests_a_memory_sends_that_are_no_chat_requests_are_one_line_exit_2(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    for dry in ([], ["--dry-run"]):
        result = runner.invoke(app, [*args, "--memory", f"{mems}:BadRequests", *dry])
        assert result.exit_code == 2, result.output
        assert "tools.complete() takes a list of requests" in result.output and "Traceback" not in result.output


def test_a_memory_is_called_from_one_thread_so_thread_bound_resources_work(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--memory", f"{mems}:SqliteMemory", "--memory-timeout", "5"])
    assert result.exit_code == 0, result.output
    assert all(r["retrieved"] == ["D1:1", "D1:2"] for r in rows(tmp_path / "run"))


def test_a_recalled_list_that_never_ends_is_a_recall_past_the_deadline(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--memory", f"{mems}:ReturnsAnEndlessList", "--memory-timeout", "0.3"])
    assert result.exit_code == 3, result.output
    assert all("--memory-timeout" in r["error"] for r in rows(tmp_path / "run"))


def test_time_a_memory_waits_on_realtalks_llm_client_does_not_count_towards_the_deadline(tmp_path: Path, llm_env):
    """llm-summaries asks for 3 summaries one after another at 0.4 s each: 1.2 s of ingest, nearly all of it in
    tools.complete (whose requests have --timeout of their own), under a 0.5 s --memory-timeout."""
    fake = FakeLLM(reply=lambda body: "Ana took up pottery.", latency_s=0.4)
    with serve_llm(fake) as url:
        args = ["--memory", "llm-summaries", "--memory-timeout", "0.5", "--concurrency", "1", "--json"]
        result = runner.invoke(app, model_run_args("probe", url, tmp_path / "run", *args))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["memory"]["ingest_llm"]["requests"] == 3 and report["memory"]["ingest_total_s"] > 1.0


def test_after_three_recalls_in_a_row_past_the_deadline_a_chats_other_questions_are_not_asked(tmp_path: Path, llm_env):
    """A memory stuck for good (say, on a lock its first stuck recall holds) costs three deadlines, not one per
    question; the questions fail and the same command asks them again."""
    mems = write_memories(tmp_path)
    (tmp_path / "hang-every-recall").touch()
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--json"]
    started = time.monotonic()
    result = runner.invoke(app, [*args, "--memory", f"{mems}:Base", "--memory-timeout", "0.3"])
    assert time.monotonic() - started < 10
    assert result.exit_code == 3, result.output
    memory = json.loads(result.stdout)["memory"]
    assert memory["recall_timeouts"] == 3 and memory["recalls_not_asked"] == 3
    errors = [r["error"] for r in rows(tmp_path / "run")]
    assert sum("recall on Chat_S_Ana_Ben took longer" in e for e in errors) == 3
    assert sum("recall not asked: 3 recalls in a row" in e for e in errors) == 3
    assert "3 questions failed unasked" in (tmp_path / "run" / "report.md").read_text()


def test_strings_a_memory_returns_are_read_as_plain_strings(tmp_path: Path, llm_env):
    mems = write_memories(tmp_path)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--memory", f"{mems}:ReturnsEvilStrings"])
    assert result.exit_code == 0, result.output
    assert all(r["retrieved"] == ["D1:1", "D1:2"] for r in rows(tmp_path / "run"))
