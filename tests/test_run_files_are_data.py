"""A run folder is data, never code: `batch status RUN` takes the memory to import, the endpoint and the API-key
variable from the command line (or the user's config), never from run.json or batch.json; a run file that names
others is refused, one line, exit 2, before anything is imported or sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm
from .test_batch import output_json
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")
SECRET = "aws-secret-value-0123456789"

EVIL = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").touch()

class Evil:
    def __init__(self, **options):
        Path(__file__).with_name("CALLED").touch()

    def ingest(self, chat, tools):
        pass

    def recall(self, question, budget):
        return []
"""


def started(url: str, run: Path, *extra: str) -> None:
    """A `probe --batch` run against the loopback server, submitted and pending."""
    result = runner.invoke(app, model_run_args("probe", url, run, "--batch", *extra))
    assert result.exit_code == 3, result.output


def edit(path: Path, change) -> None:
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def status(run: Path, *flags: str):
    result = runner.invoke(app, ["batch", "status", str(run), "--json", *flags])
    assert "Traceback" not in result.output, result.output
    return result


def test_batch_status_never_imports_a_memory_a_run_file_names(tmp_path: Path, monkeypatch):
    (tmp_path / "evil.py").write_text(EVIL)
    (tmp_path / "evil_module.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        started(url, run)
        flags = ("--base-url", url, "--api-key-env", "TEST_LLM_KEY")
        for spec in (f"{tmp_path / 'evil.py'}:Evil", "evil_module:Evil", "os:system"):
            for file in ("batch.json", "run.json"):  # the record, and the identity forged to match it

                def name_it(state, spec=spec, file=file):
                    where = state["run"]["options"] if file == "batch.json" else state["identity"]
                    where["memory"], where["context"] = spec, "memory"

                edit(run / file, name_it)
            result = status(run, *flags)
            assert result.exit_code == 2, result.output
            assert f"pass --memory {spec}" in result.output
            assert not (tmp_path / "IMPORTED").exists() and not (tmp_path / "CALLED").exists()
            assert "evil_module" not in __import__("sys").modules


def test_a_memory_given_on_the_command_line_must_be_the_one_the_run_was_made_with(tmp_path: Path):
    (tmp_path / "mine.py").write_text(EVIL)
    (tmp_path / "other.py").write_text(EVIL.replace("IMPORTED", "OTHER"))
    run = tmp_path / "run"
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        started(url, run, "--memory", f"{tmp_path / 'mine.py'}:Evil", "--memory-option", "k=1")
        flags = ("--base-url", url, "--api-key-env", "TEST_LLM_KEY")
        other = status(run, *flags, "--memory", f"{tmp_path / 'other.py'}:Evil")
        assert other.exit_code == 2 and f"pass --memory {tmp_path / 'mine.py'}:Evil" in other.output
        assert not (tmp_path / "OTHER").exists()
        no_option = status(run, *flags, "--memory", f"{tmp_path / 'mine.py'}:Evil")
        assert no_option.exit_code == 2 and "--memory-option k=1" in no_option.output
        same = status(run, *flags, "--memory", f"{tmp_path / 'mine.py'}:Evil", "--memory-option", "k=1")
    assert same.exit_code == 3, same.output  # polled: the batch is still running
    assert "pending" in output_json(same)


def test_a_forged_run_folder_cannot_send_a_secret_to_an_endpoint_it_names(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    fake = FakeLLM(reply=gold_reply)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        started(url, run)
        edit(run / "batch.json", lambda s: s["run"]["options"].update(api_key_env="AWS_SECRET_ACCESS_KEY"))
        edit(run / "run.json", lambda s: s["identity"].update(api_key_env="AWS_SECRET_ACCESS_KEY"))
        fake.authorizations.clear()
        tries = [
            status(run),  # the endpoint the files name is not used: the command line names none
            status(run, "--base-url", url),  # nor the key variable they name
            status(run, "--base-url", url, "--api-key-env", "TEST_LLM_KEY"),  # the files disagree: refused
        ]
        for result, flag in zip(tries, ("--base-url", "--api-key-env", "--api-key-env"), strict=True):
            assert result.exit_code == 2, result.output
            assert flag in result.output and len(result.output.strip().splitlines()) == 1, result.output
        assert not any(SECRET in a for a in fake.authorizations)
        assert fake.authorizations == []  # nothing was sent at all


def test_a_run_on_its_providers_default_endpoint_needs_no_flags(tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    with serve_llm(FakeLLM(reply=gold_reply)) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)  # the user's environment, as for `probe` itself
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        args = ["probe", str(model_run_args("probe", url, run)[1]), "--model", "gpt-4o-mini", "--out", str(run)]
        assert runner.invoke(app, [*args, "--batch"]).exit_code == 3
        for _ in range(10):
            result = status(run)
            if result.exit_code != 3:
                break
    assert result.exit_code == 0, result.output
    assert output_json(result)["overall"]["overall"]["f1"] == 1.0


def test_the_api_key_variable_is_part_of_the_identity_and_old_run_files_resume(tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    offline = ["probe", str(model_run_args("probe", "", run)[1]), "--model", "offline:bm25", "--out", str(run)]
    assert runner.invoke(app, offline).exit_code == 0
    edit(run / "run.json", lambda s: s["identity"].pop("api_key_env"))  # as realtalk wrote it before
    resumed = runner.invoke(app, offline)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "run.json").read_text())["identity"]["api_key_env"] is None
    monkeypatch.setenv("OTHER_KEY", "x")
    other = runner.invoke(app, [*offline, "--api-key-env", "OTHER_KEY"])
    assert other.exit_code == 2 and "api_key_env" in other.output


@pytest.mark.parametrize(
    "options, message",
    [
        ({"memory": ["evil"]}, "run.options.memory = ['evil'] is not a string"),
        ({"base_url": 5}, "run.options.base_url = 5 is not a string"),
        ({"memory": "bm25", "memory_options": "k=1"}, "is not a table of strings"),
    ],
)
def test_a_damaged_record_of_what_the_command_line_decides_is_one_line(tmp_path: Path, options, message):
    record = {"task": "probe", "chats": ["c.json"], "options": {"model": "m", **options}}
    (tmp_path / "batch.json").write_text(json.dumps({"jobs": [], "run": record}))
    result = status(tmp_path, "--memory", "bm25") if "memory_options" in options else status(tmp_path)
    assert result.exit_code == 2 and message in result.output, result.output
