"""`realtalk batch status RUN` from another directory than the one the `--batch` run was started in: the run
folder records its chats as absolute paths; folders of earlier versions (chats as typed) still go on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON
from .llm_server import FakeLLM, serve_llm
from .test_batch import endpoint_flags, output_json
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")
CHAT = f"chats/{SAMPLE_JSON.name}"  # relative to the project folder the run is started in


def project(tmp_path: Path) -> Path:
    (tmp_path / "project" / "chats").mkdir(parents=True)
    shutil.copy(SAMPLE_JSON, tmp_path / "project" / CHAT)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "project"


def start(url: str, command: str, *extra: str):
    """`realtalk COMMAND chats/CHAT --out runs/b --batch` in the current directory."""
    args = [command, CHAT, "--model", "gpt-4o-mini", "--out", "runs/b", "--base-url", url]
    return runner.invoke(app, [*args, "--api-key-env", "TEST_LLM_KEY", "--batch", "--json", *extra])


def status_until_done(run: str, url: str) -> object:
    for _ in range(10):
        result = runner.invoke(app, ["batch", "status", run, "--json", *endpoint_flags(url)])
        assert "Traceback" not in result.output, result.output
        if result.exit_code != 3:
            return result
    raise AssertionError(f"still pending: {result.output}")


def test_probe_batch_status_from_another_directory_completes_and_scores(tmp_path: Path, monkeypatch):
    home = project(tmp_path)
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        monkeypatch.chdir(home)
        assert start(url, "probe").exit_code == 3
        saved = json.loads((home / "runs/b/batch.json").read_text())["run"]["chats"]
        assert saved == [str(home.resolve() / CHAT)]
        monkeypatch.chdir(tmp_path / "elsewhere")
        result = status_until_done(str(home / "runs/b"), url)
    assert result.exit_code == 0, result.output
    report = output_json(result)
    assert report["complete"] and report["overall"]["overall"]["count"] == 6
    assert report["overall"]["overall"]["f1"] == 1.0


def test_simulate_batch_status_from_another_directory_completes(tmp_path: Path, monkeypatch):
    home = project(tmp_path)
    fake = FakeLLM(reply=lambda body: "sounds good, see you then")
    with serve_llm(fake) as url:
        monkeypatch.chdir(home)
        assert start(url, "simulate", "--no-bertscore", "--limit", "4").exit_code == 3
        monkeypatch.chdir(tmp_path / "elsewhere")
        result = status_until_done(str(home / "runs/b"), url)
    assert result.exit_code == 0, result.output
    assert output_json(result)["complete"] and fake.requests == []


def as_earlier_versions_saved_it(run: Path) -> Path:
    """The run record with its chat as typed (relative), as realtalk saved it before."""
    record = run / "batch.json"
    state = json.loads(record.read_text())
    state["run"]["chats"] = [CHAT]
    record.write_text(json.dumps(state))
    return record


def test_a_run_folder_of_an_earlier_version_is_found_from_inside_it(tmp_path: Path, monkeypatch):
    home = project(tmp_path)
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        monkeypatch.chdir(home)
        assert start(url, "probe").exit_code == 3
        record = as_earlier_versions_saved_it(home / "runs/b")
        run_json = (home / "runs/b/run.json").read_bytes()
        monkeypatch.chdir(home / "runs/b")  # `cd runs/b && realtalk batch status .`: found from the folder's parents
        result = status_until_done(".", url)
    assert result.exit_code == 0, result.output
    assert output_json(result)["overall"]["overall"]["f1"] == 1.0
    assert (home / "runs/b/run.json").read_bytes() == run_json  # the run's identity is unchanged
    assert json.loads(record.read_text())["run"]["chats"] == [str(home.resolve() / CHAT)]  # recorded absolute now


def test_a_run_folder_of_an_earlier_version_goes_on_from_where_it_was_started(tmp_path: Path, monkeypatch):
    home = project(tmp_path)
    run = tmp_path / "outside" / "b"  # not under the project folder
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        monkeypatch.chdir(home)
        assert start(url, "probe", "--out", str(run)).exit_code == 3
        as_earlier_versions_saved_it(run)
        monkeypatch.chdir(tmp_path / "elsewhere")
        lost = runner.invoke(app, ["batch", "status", str(run), *endpoint_flags(url)])
        assert lost.exit_code == 2 and "Traceback" not in lost.output
        assert CHAT in lost.output and "from the directory the run was started in" in lost.output
        monkeypatch.chdir(home)
        result = status_until_done(str(run), url)
    assert result.exit_code == 0, result.output
    assert output_json(result)["overall"]["overall"]["f1"] == 1.0
