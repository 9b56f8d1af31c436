"""A probe run killed with SIGKILL keeps a valid predictions.jsonl and loses only requests in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from realtalk_cli.fileio import read_jsonl

from .conftest import model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm


def test_kill_9_mid_run_then_resume(tmp_path: Path):
    fake = FakeLLM(reply=lambda body: "pottery", latency_s=0.3)
    out = tmp_path / "run"
    env = {**os.environ, "TEST_LLM_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    with serve_llm(fake) as url:
        cmd = [sys.executable, "-m", "realtalk_cli", *model_run_args("probe", url, out, "--concurrency", "1")]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        predictions = out / "predictions.jsonl"
        while time.monotonic() < deadline:
            if predictions.exists() and predictions.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kept = read_jsonl(predictions)
        assert 2 <= len(kept) < 6
        asked_before = len(fake.requests)
        assert asked_before <= len(kept) + 1  # at most the one request in flight is lost

        finished = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert sorted(r["qa_index"] for r in rows) == list(range(6))
    assert len(fake.requests) == asked_before + (6 - len(kept))
