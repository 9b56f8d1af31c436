"""Input edges: a TOML file that is not UTF-8 or is a FIFO, `sessions = true` in a split file, LoCoMo's category-5
gold in `probe show`, and `--force` into a finished folder: one line and exit 2, or the right value."""

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
from .llm_server import FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def one_line_exit_2(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output


def test_a_config_or_split_file_that_is_not_utf8_is_one_line_exit_2(tmp_path: Path):
    config = tmp_path / "run.toml"
    config.write_bytes(b'model = "offline:bm25"\n# caf\xe9\n')
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--config", str(config), "--out", str(tmp_path / "r")])
    one_line_exit_2(result, str(config), "not UTF-8")
    split = tmp_path / "split.toml"
    split.write_bytes(b'[test_chats]\nana = "Chat_S\xff"\n')
    with serve_llm(FakeLLM()) as url:
        result = runner.invoke(app, model_run_args("simulate", url, tmp_path / "s", "--split", str(split)))
    one_line_exit_2(result, str(split), "not UTF-8")


def test_a_config_that_is_a_fifo_is_one_line_exit_2_not_a_hang(tmp_path: Path):
    fifo = tmp_path / "run.toml"
    os.mkfifo(fifo)
    args = ["probe", str(SAMPLE_JSON), "--config", str(fifo), "--model", "offline:bm25", "--out", str(tmp_path / "r")]
    env = {**os.environ, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "realtalk_cli", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "not a regular file" in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["true", "0", '"3"', "2.5"])
def test_sessions_in_a_split_file_must_be_a_positive_integer(tmp_path: Path, value: str):
    split = tmp_path / "split.toml"
    split.write_text(f'sessions = {value}\n[test_chats]\nana = "Chat_S"\n')
    with serve_llm(FakeLLM()) as url:
        result = runner.invoke(app, model_run_args("simulate", url, tmp_path / "s", "--split", str(split)))
    one_line_exit_2(result, "sessions", "positive integer")


LOCOMO = {
    "conversation": {
        "speaker_a": "Ana",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ana", "dia_id": "D1:1", "text": "I started pottery classes this week."},
            {"speaker": "Ben", "dia_id": "D1:2", "text": "Nice! I ran my first half marathon."},
        ],
    },
    "qa": [
        {"question": "What did Ana start?", "answer": "pottery classes", "evidence": ["D1:1"], "category": 4},
        {
            "question": "What did Ben's pottery teacher say?",
            "adversarial_answer": "that he is a natural",
            "evidence": ["D1:2"],
            "category": 5,
        },
    ],
}


def test_probe_show_gives_locomos_category_5_gold_its_adversarial_answer(tmp_path: Path):
    chat = tmp_path / "Chat_L_Ana_Ben.json"
    chat.write_text(json.dumps(LOCOMO))
    run = tmp_path / "run"
    probed = runner.invoke(app, ["probe", str(chat), "--model", "offline:not-mentioned", "--out", str(run)])
    assert probed.exit_code == 0, probed.output
    shown = runner.invoke(app, ["probe", "show", str(run), "--json"])
    assert shown.exit_code == 0, shown.output
    assert [q["gold"] for q in json.loads(shown.stdout)] == ["pottery classes", "that he is a natural"]
    text = runner.invoke(app, ["probe", "show", str(run), "--category", "5"])
    assert "gold: that he is a natural" in text.stdout and "None" not in text.stdout


def test_force_into_a_finished_folder_starts_it_afresh(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, run, "--json")
        assert runner.invoke(app, args).exit_code == 0
        assert len(fake.requests) == 6
        (run / "predictions.jsonl").write_text(
            (run / "predictions.jsonl").read_text().replace('"prediction":', '"stale":true,"prediction":')
        )
        again = runner.invoke(app, [*args, "--force", "--no-cache"])
    assert again.exit_code == 0, again.output
    assert len(fake.requests) == 12  # every question asked again
    assert json.loads(again.stdout)["run"]["requests"] == 6
    assert "stale" not in (run / "predictions.jsonl").read_text()
