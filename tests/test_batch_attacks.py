"""Hostile batch results: output files with broken, unknown, duplicate and missing lines, error bodies of
the wrong shape, file downloads that fail, a batch the provider no longer knows, odd cached-token counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.llm.providers import Prices

from .conftest import model_run_args
from .llm_server import FakeLLM, serve_llm
from .test_batch import rows, until_done
from .test_probe import gold_reply

pytestmark = pytest.mark.usefixtures("llm_env")
runner = CliRunner()


def _mangle(output: bytes) -> bytes:
    lines = [json.loads(line) for line in output.splitlines()]
    by_id = {r["custom_id"]: r for r in lines}
    bad = dict(by_id["Chat_S_Ana_Ben#1"], custom_id=["Chat_S_Ana_Ben#1"])  # unhashable custom_id
    error_string = dict(by_id["Chat_S_Ana_Ben#2"], response={"status_code": 400, "body": {"error": "a plain string"}})
    unknown = dict(by_id["Chat_S_Ana_Ben#3"], custom_id="Chat_S_Ana_Ben#99")
    del by_id["Chat_S_Ana_Ben#4"]  # missing
    out = [b"{not json", b"[1, 2]", b'"text"', b"42", json.dumps(bad).encode(), json.dumps(error_string).encode()]
    out += [json.dumps(unknown).encode(), json.dumps(by_id["Chat_S_Ana_Ben#0"]).encode()]
    out += [json.dumps(r).encode() for cid, r in by_id.items() if cid not in ("Chat_S_Ana_Ben#2",)]
    return b"\n".join(out) + b"\n"


def test_a_hostile_output_file_is_errors_for_its_items_never_a_crash(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.mangle_output = _mangle
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, last = until_done(url, run)
    assert codes[-1] == 3
    errors = {r["qa_index"]: r["error"] for r in rows(run) if r["error"]}
    assert set(errors) == {2, 4}, errors  # the error body of the wrong shape, the missing line
    assert errors[2].startswith("HTTP 400") and errors[4].startswith("not answered by the batch")
    assert len(rows(run)) == 6


def test_a_failing_file_download_is_one_line_and_collected_later(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.file_status = 500
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        results = [runner.invoke(app, model_run_args("probe", url, run, "--batch")) for _ in range(5)]
        last = results[-1]
        assert "Traceback" not in last.output and last.exit_code == 2, last.output
        assert "downloading the results of batch batch_1 failed: HTTP 500" in last.output
        fake.batches.file_status = None
        codes, last = until_done(url, run)
    assert codes == [0] and fake.batches.created == ["batch_1"]


def test_results_or_a_batch_the_provider_no_longer_has_are_sent_again(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.file_status = 404  # output file deleted (past the provider's retention)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, last = until_done(url, run)
        assert codes[-1] == 3 and all(r["error"].startswith("not answered by the batch") for r in rows(run))
        fake.batches.file_status = None
        runner.invoke(app, model_run_args("probe", url, run, "--batch"))  # resubmitted: batch_2
        fake.batches.batches.pop("batch_2")  # ... and deleted on the provider's side
        result = runner.invoke(app, model_run_args("probe", url, run, "--batch"))
        assert result.exit_code == 3 and "Traceback" not in result.output, result.output
        codes, last = until_done(url, run)
    assert codes[-1] == 0 and len(fake.batches.created) == 3


def test_cached_tokens_in_a_batch_reply_never_credit(tmp_path: Path):
    def odd(output: bytes) -> bytes:
        out = []
        for n, line in enumerate(output.splitlines()):
            r = json.loads(line)
            usage = r["response"]["body"]["usage"]
            usage["prompt_tokens_details"] = {"cached_tokens": [10**9, -5, "100", 1.5, True, usage["prompt_tokens"]][n]}
            out.append(json.dumps(r).encode())
        return b"\n".join(out) + b"\n"

    fake = FakeLLM(reply=gold_reply)
    fake.batches.mangle_output = odd
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        until_done(url, run)
    prices = Prices.load()
    for r in rows(run):
        assert 0 <= r["cached_tokens"] <= r["prompt_tokens"]
        assert r["cost_usd"] == pytest.approx(
            prices.cost("gpt-4o-mini", r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"], batch=True)
        )
    flagged = {r["qa_index"]: r.get("cached_tokens_ignored") for r in rows(run)}
    assert flagged == {0: 10**9, 1: -5, 2: "100", 3: 1.5, 4: True, 5: None}, flagged


def test_an_interrupt_between_creating_the_batch_and_saving_its_id_loses_nothing(tmp_path: Path, monkeypatch):
    from openai.resources.batches import Batches

    create = Batches.create

    def create_then_interrupt(self, **kwargs):
        create(self, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C before the id came back

    run = tmp_path / "run"
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        monkeypatch.setattr(Batches, "create", create_then_interrupt)
        interrupted = runner.invoke(app, model_run_args("probe", url, run, "--batch"))
        assert interrupted.exit_code == 130 and "Traceback" not in interrupted.output
        monkeypatch.setattr(Batches, "create", create)
        codes, last = until_done(url, run)
    assert codes[-1] == 0 and fake.batches.created == ["batch_1"]  # found again, not submitted twice
    assert {r["batch_id"] for r in rows(run)} == {"batch_1"}


def test_a_refused_batch_leaves_no_job_behind(tmp_path: Path, monkeypatch):
    fake = FakeLLM(reply=gold_reply)
    post = fake.batches.post

    def refuse(path, content_type, raw):
        if path.rstrip("/") == "/v1/batches":
            return 400, {"error": {"message": "quota exceeded"}}
        return post(path, content_type, raw)

    run = tmp_path / "run"
    with serve_llm(fake) as url:
        monkeypatch.setattr(fake.batches, "post", refuse)
        refused = runner.invoke(app, model_run_args("probe", url, run, "--batch"))
        assert refused.exit_code == 2 and "HTTP 400" in refused.output and "Traceback" not in refused.output
        assert json.loads((run / "batch.json").read_text())["jobs"] == []
        monkeypatch.setattr(fake.batches, "post", post)
        codes, last = until_done(url, run)
    assert codes[-1] == 0 and fake.batches.created == ["batch_1"]


@pytest.mark.parametrize(
    "run, message",
    [
        ({"task": "probe", "chats": ["c.json"], "options": {"model": "m", "bogus": 1}}, "do not fit this version"),
        ({"task": "probe", "chats": ["c.json"], "options": {}}, "do not fit this version"),
        ({"task": "simulate", "chats": [1], "options": {"model": "m"}}, "run.chats is not a list"),
        ({"task": "probe", "chats": "c.json", "options": {"model": "m"}}, "run.chats is not a list"),
        ({"task": "probe", "chats": ["c.json"], "options": {"model": 5}}, "run.options.model = 5"),
        ({"task": "probe", "chats": ["c.json"], "options": {"model": "m", "concurrency": "x"}}, "concurrency"),
    ],
)
def test_batch_status_on_a_damaged_run_record_is_one_line(tmp_path: Path, run: dict, message: str):
    (tmp_path / "batch.json").write_text(json.dumps({"jobs": [], "run": run}))
    result = runner.invoke(app, ["batch", "status", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit)


def test_a_judge_batch_is_credited_to_the_judge_that_was_asked(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.models = (*fake.models, "other-judge")
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        for _ in range(4):  # answer batch submitted, polled, collected -> judge batch (judge-model) submitted
            runner.invoke(app, model_run_args("probe", url, run, "--batch", "--judge-model", "judge-model"))
        assert [j["stage"] for j in json.loads((run / "batch.json").read_text())["jobs"]] == ["answer", "judge"]
        other = runner.invoke(app, model_run_args("probe", url, run, "--batch", "--judge-model", "other-judge"))
        assert (
            other.exit_code == 2
            and "was sent to openai:judge-model" in other.output
            and "Traceback" not in other.output
        )
        codes, last = until_done(url, run, "--judge-model", "judge-model")
    assert codes[-1] == 0 and {r["judge_model"] for r in rows(run)} == {"openai:judge-model"}
