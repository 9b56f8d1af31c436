"""`--batch` end to end through the real openai client against the loopback server's files and batches
endpoints: submit and return, poll through the status steps, collect, judge in a second batch, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.llm.providers import Prices

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def output_json(result) -> dict:
    """The JSON printed on stdout (the runner mixes stderr's notes in after it)."""
    return json.JSONDecoder().raw_decode(result.output)[0]


def endpoint_flags(url: str) -> list[str]:
    """What `batch status` needs to reach the loopback server: a run folder never names its endpoint or key."""
    return ["--base-url", url, "--api-key-env", "TEST_LLM_KEY"]


def until_done(url: str, run: Path, *extra: str, limit: int = 20):
    """Run the same command until no batch is pending any more; the exit codes seen and the last result
    (whose output is the report: exit 0 complete, 3 incomplete)."""
    codes = []
    for _ in range(limit):
        result = runner.invoke(app, [*model_run_args("probe", url, run, "--batch", "--json", *extra)])
        assert "Traceback" not in result.output, result.output
        codes.append(result.exit_code)
        if "pending" not in output_json(result):
            return codes, result
        assert result.exit_code == 3
    raise AssertionError(f"still pending after {limit} runs: {codes}")


def test_batch_probe_end_to_end_with_judge(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        first = runner.invoke(app, model_run_args("probe", url, run, "--judge-model", "judge-model", "--batch"))
        assert first.exit_code == 3, first.output
        assert "submitted answer batch batch_1 (6 requests)" in first.output
        state = json.loads((run / "batch.json").read_text())
        assert [j["id"] for j in state["jobs"]] == ["batch_1"] and state["jobs"][0]["status"] == "validating"
        assert fake.requests == [] and not (run / "predictions.jsonl").exists()  # nothing sent live
        lines = (run / "batch-answer-1.jsonl").read_text().splitlines()
        assert len(lines) == 6 and json.loads(lines[0])["body"]["max_tokens"] == 32

        codes, last = until_done(url, run, "--judge-model", "judge-model")
        # answer batch: in_progress, finalizing, then completed -> collected, judge batch submitted; then the judge's
        assert codes == [3, 3, 3, 3, 3, 0], codes
        status = runner.invoke(app, ["batch", "status", str(run), "--json", *endpoint_flags(url)])
    assert status.exit_code == 0, status.output  # a complete run stays complete
    assert fake.requests == [] and fake.batches.created == ["batch_1", "batch_2"]
    report = output_json(last)
    assert report["overall"]["overall"]["count"] == 6 and report["overall"]["overall"]["f1"] == 1.0
    assert report["overall"]["overall"]["judge"] == 1.0
    assert report["run"]["batch"] and [b["stage"] for b in report["manifest"]["batches"]] == ["answer", "judge"]
    got = rows(run)
    assert (
        len(got) == 6
        and {r["batch_id"] for r in got} == {"batch_1"}
        and {r["judge_batch_id"] for r in got} == {"batch_2"}
    )
    prices = Prices.load()
    for r in got:  # billed at the batch price
        assert r["cost_usd"] == pytest.approx(
            prices.cost("gpt-4o-mini", r["prompt_tokens"], r["completion_tokens"], batch=True)
        )
        assert r["cost_usd"] < prices.cost("gpt-4o-mini", r["prompt_tokens"], r["completion_tokens"])
    assert API_KEY not in (run / "batch.json").read_text() + (run / "report.json").read_text()


def test_failed_and_expired_items_are_sent_again_by_the_next_invocation(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.item_faults = {
        "Chat_S_Ana_Ben#1": "expired",
        "Chat_S_Ana_Ben#2": "malformed",
        "Chat_S_Ana_Ben#3": "error",
    }
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, last = until_done(url, run)
        assert codes[-1] == 3 and len(fake.batches.created) == 1  # complete but for 3 failed questions
        errors = {r["qa_index"]: r["error"] for r in rows(run) if r["error"]}
        assert set(errors) == {1, 2, 3}
        assert errors[1].startswith("not answered by the batch") and errors[2].startswith("bad reply")
        assert errors[3].startswith("HTTP 500")
        assert json.loads((run / "report.json").read_text())["failed_questions"] == 3
        fake.batches.item_faults = {}
        codes, last = until_done(url, run)
    assert len(fake.batches.created) == 2
    resent = (run / "batch-answer-2.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in resent) == [f"Chat_S_Ana_Ben#{i}" for i in (1, 2, 3)]
    report = output_json(last)
    assert report["overall"]["overall"]["count"] == 6 and report["overall"]["overall"]["f1"] == 1.0


def test_a_whole_batch_that_fails_or_expires_is_retried(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    fake.batches.steps = ("validating", "expired")
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, _ = until_done(url, run)
        assert all(r["error"] for r in rows(run)) and len(rows(run)) == 6
        fake.batches.steps = ("validating", "failed")
        until_done(url, run)
        fake.batches.steps = ("completed",)
        codes, last = until_done(url, run)
    assert len(fake.batches.created) == 3 and last.exit_code == 0 and output_json(last)["complete"]
    assert output_json(last)["overall"]["overall"]["f1"] == 1.0


def test_cache_hits_never_go_into_a_batch(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        live = runner.invoke(app, model_run_args("probe", url, tmp_path / "live"))
        assert live.exit_code == 0, live.output
        asked = len(fake.requests)
        result = runner.invoke(app, [*model_run_args("probe", url, tmp_path / "batch", "--batch", "--json")])
    assert result.exit_code == 0, result.output  # every answer came from the cache: nothing to submit
    assert fake.batches.created == [] and len(fake.requests) == asked
    assert all(r["cached"] for r in rows(tmp_path / "batch"))


def test_batch_answers_fill_the_response_cache(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        until_done(url, tmp_path / "batch")
        live = runner.invoke(app, model_run_args("probe", url, tmp_path / "live"))
    assert live.exit_code == 0, live.output
    assert fake.requests == [] and all(r["cached"] for r in rows(tmp_path / "live"))


def test_max_cost_counts_batch_prices_and_dry_run_prices_a_batch(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        plan = json.loads(
            runner.invoke(app, model_run_args("probe", url, tmp_path / "d", "--dry-run", "--json")).output
        )
        batch_plan = json.loads(
            runner.invoke(app, model_run_args("probe", url, tmp_path / "d", "--dry-run", "--json", "--batch")).output
        )
        assert batch_plan["batch"] and batch_plan["estimated_cost_usd"] == pytest.approx(
            plan["estimated_cost_usd"] / 2, rel=0.01
        )
        per_question = batch_plan["estimated_cost_usd"] / 6
        result = runner.invoke(
            app, model_run_args("probe", url, tmp_path / "run", "--batch", "--max-cost", f"{per_question * 3.5:.8f}")
        )
    assert result.exit_code == 3, result.output
    assert "(3 requests)" in result.output


def test_batch_refuses_what_it_cannot_do(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        offline = runner.invoke(
            app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "o"), "--batch"]
        )
        assert offline.exit_code == 2 and "needs an API endpoint" in offline.output
        run = tmp_path / "run"
        first = runner.invoke(app, model_run_args("probe", url, run, "--batch"))
        assert first.exit_code == 3
        other = runner.invoke(app, model_run_args("probe", url, run, "--batch", "--context", "retrieval"))
        assert other.exit_code == 2 and "context" in other.output and "Traceback" not in other.output
        none = runner.invoke(app, ["batch", "status", str(tmp_path / "nothing")])
        assert none.exit_code == 2 and "no batch run here" in none.output
        record = json.loads((run / "batch.json").read_text())
        del record["jobs"][0]["id"]
        (run / "batch.json").write_text(json.dumps(record))
        broken = runner.invoke(app, model_run_args("probe", url, run, "--batch"))
        assert broken.exit_code == 2 and "job 1 lacks its id" in broken.output and "Traceback" not in broken.output
        (run / "batch.json").write_text("{not json")
        broken = runner.invoke(app, model_run_args("probe", url, run, "--batch"))
        assert broken.exit_code == 2 and "batch.json: not valid JSON" in broken.output
    bad = runner.invoke(app, model_run_args("probe", "http://127.0.0.1:9/v1", tmp_path / "x", "--batch"))
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_simulate_batch_end_to_end(tmp_path: Path):
    fake = FakeLLM(reply=lambda body: "sounds good, see you then")
    run = tmp_path / "sim"
    args = model_run_args("simulate", "URL", run, "--no-bertscore", "--limit", "4", "--json", "--batch")
    with serve_llm(fake) as url:
        args[args.index("URL")] = url
        first = runner.invoke(app, args)
        assert first.exit_code == 3 and "submitted reply batch batch_1 (4 requests)" in output_json(first)["pending"]
        for _ in range(5):
            result = runner.invoke(app, ["batch", "status", str(run), "--json", *endpoint_flags(url)])
            assert "Traceback" not in result.output, result.output
            if "pending" not in output_json(result):
                break
    assert result.exit_code == 0, result.output
    report = output_json(result)
    assert report["complete"] and fake.requests == [] and fake.batches.created == ["batch_1"]
    assert len(rows(run)) == 4 and all(r["prediction"] == "sounds good, see you then" for r in rows(run))


def test_analyze_ei_llm_batch_end_to_end(tmp_path: Path, monkeypatch):
    from .test_analyze import _llm_reply

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fake = FakeLLM(reply=_llm_reply)
    fake.batches.item_faults = {"Chat_S_Ana_Ben#0": "malformed"}  # the first session's call: no labels back
    args = ["analyze", "ei", str(SAMPLE_JSON), "--out", str(tmp_path / "ei"), "--backend", "llm"]
    args += ["--model", "gpt-4o-mini", "--per", "session", "--json", "--batch"]
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        codes = []
        for _ in range(12):
            result = runner.invoke(app, args)
            assert "Traceback" not in result.output, result.output
            codes.append(result.exit_code)
            metrics = output_json(result)
            if "pending" not in metrics:
                if fake.batches.item_faults:  # the run ended without the first session's labels: ask again
                    assert result.exit_code == 3 and not metrics["complete"]
                    fake.batches.item_faults = {}
                    continue
                break
    assert result.exit_code == 0 and metrics["complete"], codes
    assert fake.requests == [] and len(fake.batches.created) == 2  # the failed session went in a second batch
    resent = (tmp_path / "ei" / "batch-label-2.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in resent] == ["Chat_S_Ana_Ben#0"]
    ben = metrics["chats"]["Chat_S_Ana_Ben"]["speakers"]["Ben"]
    assert ben["empathy"] == 2.0 and ben["grounding_frequency"] == 1.0


def test_batch_probe_with_an_llm_memory_ingests_live_once_and_reports_it(tmp_path: Path):
    fake = FakeLLM(reply=lambda body: "Ana took up pottery.")
    run = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, last = until_done(url, run, "--memory", "llm-summaries")
    live = [r for r in fake.requests if "Summarise this conversation" in r["messages"][0]["content"]]
    assert len(live) == 3  # one per session, written once, then read from the run folder on every poll
    report = output_json(last)
    assert report["memory"]["spec"] == "llm-summaries" and report["run"]["batch"]
    assert all(
        "pottery" in json.loads(line)["body"]["messages"][0]["content"]
        for line in (run / "batch-answer-1.jsonl").read_text().splitlines()
    )
