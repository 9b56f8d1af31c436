"""Outputs a script can get wrong: a predictions file that is no regular file, an empty -o (an unset shell
variable), and a reader that closes the pipe early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON

runner = CliRunner()


def _bm25_run(out: Path) -> None:
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)])
    assert result.exit_code == 0, result.output


PROBE_AGAIN = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", "{run}"]


@pytest.mark.parametrize(
    "file, command",
    [
        ("predictions.jsonl", ["probe", "rescore", "{run}"]),
        ("predictions.jsonl", PROBE_AGAIN),
        ("run.json", PROBE_AGAIN),
        ("batch.json", ["batch", "status", "{run}"]),
    ],
)
def test_a_run_file_that_is_a_fifo_is_exit_2_not_a_hang(tmp_path: Path, file, command):
    run = tmp_path / "run"
    _bm25_run(run)
    (run / file).unlink(missing_ok=True)
    os.mkfifo(run / file)
    args = [a.format(run=run) for a in command]
    result = subprocess.run([sys.executable, "-m", "realtalk_cli", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{file}: not a regular file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "-o", ""],
        ["analyze", "ei", str(SAMPLE_JSON), "-o", ""],
        ["analyze", "compare", str(SAMPLE_JSON), "-o", ""],
        ["report", "{run}", "-o", ""],
        ["simulate", "export-sft", str(SAMPLE_JSON), "-o", ""],
        ["convert", str(SAMPLE_JSON), "-o", ""],
    ],
)
def test_an_empty_output_path_is_a_usage_error_not_the_current_directory(tmp_path: Path, monkeypatch, args):
    run = tmp_path / "run"
    _bm25_run(run)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = runner.invoke(app, [a.format(run=run) for a in args])
    assert result.exit_code == 2, result.output
    assert "empty path" in result.output
    assert list(cwd.iterdir()) == []


def test_a_reader_that_closes_the_pipe_early_keeps_the_exit_code(tmp_path: Path):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtalk_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # before the process has written anything: its output meets a closed pipe
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr  # not 1, which means "under --fail-under"
    assert "Traceback" not in stderr
    assert (tmp_path / "run" / "report.json").is_file()
