"""Batch jobs never pay twice and never lose what was paid for: idempotent submission (a lost create reply is
adopted, strays cancelled and recorded), a job collected only once its rows are written, unreadable batch
verdicts asked again, a damaged run record refused."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .llm_server import FakeLLM, serve_llm
from .test_batch import rows, until_done
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def jobs(run: Path) -> list[dict]:
    return json.loads((run / "batch.json").read_text())["jobs"]


def test_a_create_whose_reply_was_lost_is_adopted_not_created_again(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.lose_create_replies = 1
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, last = until_done(url, run)
    assert codes[-1] == 0, last.output
    assert fake.batches.created == ["batch_1"]  # billed once
    usage = json.loads((run / "report.json").read_text())["usage"]["run_folder"]
    assert usage["invocations"] == len(codes) and usage["answer"]["requests"] == 6  # every poll's time counted
    (job,) = jobs(run)
    assert job["id"] == "batch_1" and job["batch_ids"] == ["batch_1"] and job["client_key"]
    assert fake.batches.batches["batch_1"]["metadata"]["realtalk_key"] == job["client_key"]
    assert {r["batch_id"] for r in rows(run)} == {"batch_1"}


def test_a_stray_batch_is_cancelled_and_recorded(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.lose_create_replies = 1
    fake.batches.unlisted = {"batch_1"}  # the lost create is not listed yet: a second create goes out
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        first = runner.invoke(app, ["probe", *until_args(url, run)])
        assert first.exit_code == 3 and fake.batches.created == ["batch_1", "batch_2"], first.output
        fake.batches.unlisted = set()
        codes, last = until_done(url, run)
    assert codes[-1] == 0, last.output
    (job,) = jobs(run)
    assert job["id"] == "batch_2" and job["batch_ids"] == ["batch_2", "batch_1"] and job["strays"] == ["batch_1"]
    assert fake.batches.batches["batch_1"]["status"] == "cancelled"
    assert {r["batch_id"] for r in rows(run)} == {"batch_2"}


def until_args(url: str, run: Path) -> list[str]:
    from .conftest import model_run_args

    return model_run_args("probe", url, run, "--batch")[1:]


def test_a_full_disk_while_writing_collected_rows_collects_again_and_submits_nothing_new(tmp_path: Path, monkeypatch):
    import realtalk_cli.tasks.probe.batch as probe_batch

    write_jsonl = probe_batch.write_jsonl
    full = {"on": False}

    def disk_full(path, rows):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_jsonl(path, rows)

    monkeypatch.setattr(probe_batch, "write_jsonl", disk_full)
    fake = FakeLLM(reply=gold_reply)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        for _ in range(3):  # submitted, validating -> in_progress, -> finalizing
            runner.invoke(app, ["probe", *until_args(url, run)])
        full["on"] = True
        failed = runner.invoke(app, ["probe", *until_args(url, run)])  # completed: collecting fails
        assert failed.exit_code == 2 and "No space left" in failed.output and "Traceback" not in failed.output
        assert not jobs(run)[0]["collected"]
        full["on"] = False
        codes, last = until_done(url, run)
    assert codes[-1] == 0, last.output
    assert fake.batches.created == ["batch_1"] and len(rows(run)) == 6  # collected again, nothing paid twice
    usage = json.loads(last.output[: last.output.rindex("}") + 1])["usage"]["run_folder"]
    assert usage["answer"]["requests"] == 6  # the batch is counted once


def test_unreadable_batch_verdicts_are_asked_again_never_cached(tmp_path: Path):
    verdict = {"text": "It is correct."}

    def reply(body: dict) -> str:
        return verdict["text"] if "Predicted answer:" in body["messages"][0]["content"] else gold_reply(body)

    fake = FakeLLM(reply=reply)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, last = until_done(url, run, "--judge-model", "judge-model")
        assert codes[-1] == 3 and all(r["judge_error"] for r in rows(run))
        verdict["text"] = '{"score": 1}'
        codes, last = until_done(url, run, "--judge-model", "judge-model")
    assert codes[-1] == 0, last.output  # asked again in a new judge batch, not read back from the cache
    assert [j["stage"] for j in jobs(run)] == ["answer", "judge", "judge"]
    assert all(r["judge_score"] == 1.0 for r in rows(run))


@pytest.mark.parametrize("timeout", ["NaN", '"soon"', "-1", "Infinity", "true"])
def test_a_nan_or_non_numeric_timeout_in_batch_json_is_one_line(tmp_path: Path, timeout: str):
    fake = FakeLLM(reply=gold_reply)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        assert runner.invoke(app, ["probe", *until_args(url, run)]).exit_code == 3
        record = (run / "batch.json").read_text()
        (run / "batch.json").write_text(record.replace('"timeout": 120.0', f'"timeout": {timeout}'))
        result = runner.invoke(app, ["batch", "status", str(run)])
    assert result.exit_code == 2, result.output
    assert re.search(r"run\.options(: |\.)timeout", " ".join(result.output.split())), result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
