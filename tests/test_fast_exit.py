"""The console script ends without the interpreter's teardown (cli.main): attacked through real processes.

Each test runs `python -m realtalk_cli` (which calls cli.main, as the installed `realtalk` does) and checks
that nothing is lost, nothing hangs and the exit code is the one the command chose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from realtalk_cli.fileio import read_jsonl

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm
from .test_probe import gold_reply


def realtalk(tmp_path: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TEST_LLM_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run([sys.executable, "-m", "realtalk_cli", *args], env=env, text=True, timeout=120, **streams)


def test_a_second_run_finds_every_answer_and_verdict_in_the_cache(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        first = realtalk(tmp_path, *model_run_args("probe", url, tmp_path / "a", "--judge-model", "judge-model"))
        assert first.returncode == 0, first.stderr
        asked = len(fake.requests)
        assert asked == 12  # 6 answers, 6 verdicts
        second = realtalk(
            tmp_path, *model_run_args("probe", url, tmp_path / "b", "--judge-model", "judge-model", "--json")
        )
    assert second.returncode == 0, second.stderr
    assert len(fake.requests) == asked  # every reply the first process got was in the cache when it ended
    assert json.loads(second.stdout)["run"]["cached"] == 6


def test_sigint_mid_run_is_exit_130_with_valid_files_then_resumes(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, latency_s=0.3)
    out = tmp_path / "run"
    env = {**os.environ, "TEST_LLM_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    with serve_llm(fake) as url:
        cmd = [sys.executable, "-m", "realtalk_cli", *model_run_args("probe", url, out, "--concurrency", "1")]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        predictions = out / "predictions.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (predictions.exists() and predictions.read_bytes().count(b"\n") >= 2):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
        kept = read_jsonl(predictions)
        assert 2 <= len(kept) < 6
        answered = len(fake.requests)
        finished = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["overall"]["overall"]["count"] == 6
    assert len(fake.requests) - answered <= 6 - len(kept)  # the answered questions are not asked again


def test_a_closed_stdout_is_no_traceback(tmp_path: Path):
    args = ("probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "r"), "--json")
    result = realtalk(tmp_path, *args, stdout=None, preexec_fn=lambda: os.close(1))  # `realtalk ... >&-`
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["complete"] is True


LEAKY_MEMORY = """
import json
OPEN = []

class Leaky:
    '''Research code: a log file opened at ingest and never closed, kept by the module.'''
    def ingest(self, chat, tools):
        self.log = open(tools.store / "log.jsonl", "a")
        OPEN.append(self.log)
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        self.log.write(json.dumps({"question": question}) + "\\n")
        return self.ids[:5]
"""


def test_a_memory_plug_in_that_leaves_a_file_open_loses_nothing(tmp_path: Path):
    plugin = tmp_path / "leaky.py"
    plugin.write_text(LEAKY_MEMORY)
    out = tmp_path / "run"
    result = realtalk(
        tmp_path, "probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--memory", f"{plugin}:Leaky", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    (log,) = out.glob("memory/*/*/log.jsonl")
    assert len(log.read_text().splitlines()) == 6  # the interpreter's teardown closed (and flushed) the file


def test_the_sdk_imported_from_two_threads_at_once_is_whole_in_both(tmp_path: Path):
    code = (
        "import sys, threading, time\n"
        "from realtalk_cli.llm.client import openai_sdk\n"
        "t = threading.Thread(target=openai_sdk); t.start()\n"
        "while 'openai' not in sys.modules: time.sleep(0.0005)\n"
        "print(hasattr(openai_sdk(), 'AsyncOpenAI')); t.join()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr


def test_a_cache_left_open_when_the_process_ends_keeps_every_reply_put(tmp_path: Path):
    # A path that raises between the replies and cache.close() (an interrupted batch collection) ends the
    # process with the cache's writer thread still holding replies: they must reach the file all the same.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from realtalk_cli.cli import main\n"
        "from realtalk_cli.llm.cache import CachedResponse, ResponseCache\n"
        f"cache = ResponseCache(Path({str(tmp_path / 'responses.sqlite')!r}))\n"
        "for i in range(100000):\n"
        "    cache.put(f'key-{i}', CachedResponse(f'reply {i}', 5, 1))\n"
        "sys.argv = ['realtalk', '--version']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import sqlite3

    rows = sqlite3.connect(tmp_path / "responses.sqlite").execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert rows == 100000
