"""Every billed request counted once, where the user looks: judge re-asks bounded and billed, the summary's
counts, the run folder's totals across invocations, --max-cost over everything the folder spends."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import model_run_args
from .llm_server import FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def probe(url: str, out: Path, *extra: str):
    return runner.invoke(app, model_run_args("probe", url, out, *extra))


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def is_judge(body: dict) -> bool:
    return "Predicted answer:" in body["messages"][0]["content"]


def verdicts(verdict: str):
    def reply(body: dict) -> str:
        return verdict if is_judge(body) else gold_reply(body)

    return reply


def test_an_unreadable_verdict_is_billed_counted_and_asked_twice_per_invocation(tmp_path: Path):
    fake = FakeLLM(reply=verdicts("It is correct."))
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        result = probe(url, out, "--judge-model", "gpt-4o-mini")
        assert result.exit_code == 3, result.output
        judged = [r for r in fake.requests if is_judge(r)]
        assert len(judged) == 12  # each of the 6 items asked twice, not once more after the answers
        rows = rows_of(out)
        # the billed replies are on the rows: tokens and cost of both replies
        words = sum(len(r["messages"][0]["content"].split()) for r in judged)
        assert sum(r["judge_prompt_tokens"] for r in rows) == words
        assert all(r["judge_cost_usd"] > 0 and r["judge_error"] for r in rows)
        report = report_of(out)
        assert report["overall"]["judge_cost_usd"] > 0
        assert report["run"]["judge_requests"] == 6 and report["run"]["retries"] == 6
        again = probe(url, out, "--judge-model", "gpt-4o-mini")
        assert again.exit_code == 3 and len([r for r in fake.requests if is_judge(r)]) == 24  # twice more each


@pytest.mark.usefixtures("llm_env")
def test_the_paper_judge_asks_four_times_in_all(tmp_path: Path):
    from .test_paper_protocol import _chat

    def reply(body: dict) -> str:
        return "not json" if body["messages"][0]["content"].startswith("Given the question") else "Ann"

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--compat", "paper")
        args[1] = str(_chat(tmp_path))
        result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    judged = [r for r in fake.requests if r["messages"][0]["content"].startswith("Given the question")]
    assert len(judged) == 2 * 4  # two items, four attempts each (utils_llm.py), not 8 each
    assert all(r["judge_cost_usd"] > 0 for r in rows_of(tmp_path / "run"))


def test_the_summary_counts_answer_and_judge_requests_and_a_resume_shows_the_folders_totals(tmp_path: Path):
    fake = FakeLLM(reply=verdicts('{"score": 1}'), latency_s=0.05)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        first = probe(url, out, "--judge-model", "gpt-4o-mini", "--concurrency", "1")
        assert first.exit_code == 0, first.output
        assert "12 requests (6 answer, 6 judge; 0 cached, 0 retries, 0 errors)" in first.output
        took = report_of(out)["run"]["wall_time_s"]
        again = probe(url, out, "--judge-model", "gpt-4o-mini")
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "0 requests (0 answer, 0 judge; 0 cached, 0 retries, 0 errors)" in text
    assert "run folder, all 2 invocations: 12 requests (6 answer, 6 judge; 0 cached" in text
    report = report_of(out)
    assert report["run"]["wall_seconds_total"] >= took > 0.5 > report["run"]["wall_time_s"]
    folder = report["usage"]["run_folder"]
    assert folder["invocations"] == 2 and folder["all_stages"]["requests"] == 12
    assert folder["judge"]["cost_usd"] > 0 and folder["answer"]["cost_usd"] > 0
    assert "Run folder, all 2 invocations: 12 requests" in (out / "report.md").read_text()


def test_max_cost_covers_every_invocation_of_the_folder(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "priced", "--concurrency", "1", "--no-cache").exit_code == 0
        costs = [r["cost_usd"] for r in rows_of(tmp_path / "priced")]
        cap = str(costs[0] + costs[1] * 0.99)  # reached by the second answer
        out = tmp_path / "run"
        first = probe(url, out, "--concurrency", "1", "--no-cache", "--max-cost", cap)
        assert first.exit_code == 3 and len(rows_of(out)) == 2, first.output
        sent = len(fake.requests)
        second = probe(url, out, "--concurrency", "1", "--no-cache", "--max-cost", cap)
    assert second.exit_code == 3, second.output
    assert len(fake.requests) == sent  # the folder spent its cap already: nothing more is sent
    report = report_of(out)
    assert report["incomplete"]["stopped_for_max_cost"] and report["incomplete"]["not_run"] == 4
    assert report["usage"]["run_folder"]["all_stages"]["cost_usd"] >= float(cap)


def test_replies_in_flight_when_max_cost_stops_are_recorded(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, latency_s=0.3)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        args = ("--context", "bm25", "--concurrency", "3", "--no-cache", "--max-cost", "0.0000001")
        result = probe(url, out, *args)
    assert result.exit_code == 3, result.output
    rows = rows_of(out)
    assert len(fake.requests) == 3 and len(rows) == 3  # every reply billed is kept, none sent after the stop
    assert all(r["error"] is None and r["cost_usd"] > 0 for r in rows)
    assert report_of(out)["usage"]["run_folder"]["answer"]["requests"] == 3


def test_memory_ingestion_counts_against_max_cost_and_is_shown_on_its_own_line(tmp_path: Path):
    fake = FakeLLM(reply=lambda body: "Ana took up pottery.")
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        args = ("--memory", "llm-summaries", "--concurrency", "1", "--no-cache", "--max-cost", "0.0000001")
        result = probe(url, out, *args)
        assert result.exit_code == 3, result.output
        assert len(fake.requests) == 1  # one summary reached the cap: no more summaries, no answer
        report = report_of(out)
        assert report["incomplete"]["stopped_for_max_cost"] and report["run"]["memory_requests"] == 1
        assert report["usage"]["run_folder"]["memory"]["cost_usd"] > 0
        full = probe(url, tmp_path / "full", "--memory", "llm-summaries", "--no-cache")
    assert full.exit_code == 0, full.output
    text = " ".join(full.output.split())
    assert "6 requests (6 answer; 0 cached" in text and "memory ingestion: 3 requests (0 cached" in text


def test_a_reply_without_usage_is_estimated_and_says_so(tmp_path: Path):
    fake = FakeLLM(reply=verdicts('{"score": 1}'), faults=["usage_null"])
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        result = probe(url, out, "--concurrency", "1")
        assert result.exit_code == 0, result.output
        estimated = [r for r in rows_of(out) if r.get("tokens_estimated")]
        assert len(estimated) == 1 and estimated[0]["prompt_tokens"] > 0
        assert report_of(out)["run"]["tokens_estimated"] == 1
        assert "1 replies came without usage" in " ".join(result.output.split())
        assert "estimated with realtalk's tokenizer" in (out / "report.md").read_text()
        fake.faults.append("usage_null")
        judged = probe(url, out, "--judge-model", "gpt-4o-mini", "--concurrency", "1")
    assert judged.exit_code == 0, judged.output
    assert sum(bool(r.get("judge_tokens_estimated")) for r in rows_of(out)) == 1


def test_simulate_max_cost_covers_every_invocation(tmp_path: Path):
    fake = FakeLLM(reply=lambda body: "hello there")
    out = tmp_path / "sim"
    args = model_run_args("simulate", "", out, "--no-bertscore", "--no-cache", "--concurrency", "1")
    with serve_llm(fake) as url:
        args[args.index("--base-url") + 1] = url
        first = runner.invoke(app, [*args, "--max-cost", "0.0000001"])
        assert first.exit_code == 3 and len(fake.requests) == 1, first.output
        second = runner.invoke(app, [*args, "--max-cost", "0.0000001"])
    assert second.exit_code == 3 and len(fake.requests) == 1, second.output
    report = json.loads((out / "report.json").read_text())
    assert report["usage"]["run_folder"]["invocations"] == 2 and report["incomplete"]["stopped_for_max_cost"]


def test_a_session_reply_that_labels_only_part_of_it_is_asked_again_not_cached(tmp_path: Path, monkeypatch):
    from .conftest import SAMPLE_JSON
    from .llm_server import API_KEY

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    labels = {"upto": 3}  # the first replies label messages 0-2 of each session only

    def reply(body: dict) -> str:
        numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", body["messages"][0]["content"], flags=re.M)]
        shown = [i for i in numbers if i - numbers[0] < labels["upto"]]
        return json.dumps([{"i": i, "sentiment": "neutral", "emotion": "joy"} for i in shown])

    fake = FakeLLM(reply=reply)
    out = tmp_path / "ei"
    args = ["analyze", "ei", str(SAMPLE_JSON), "--out", str(out), "--backend", "llm", "--model", "gpt-4o-mini"]
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        for _ in range(2):  # the second asks for what the first left out (a smaller reply budget: other requests)
            partial = runner.invoke(app, [*args, "--per", "session"])
            assert partial.exit_code == 3, partial.output
        labels["upto"] = 100
        third = runner.invoke(app, [*args, "--per", "session"])  # the same requests as the second's
    assert third.exit_code == 0, third.output  # they reached the model: the partial replies were not cached
    assert json.loads((out / "metrics.json").read_text())["complete"]


def test_a_killed_resume_leaves_no_report_claiming_complete(tmp_path: Path, monkeypatch):
    import realtalk_cli.tasks.probe.run as probe_run

    fake = FakeLLM(reply=gold_reply)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        assert probe(url, out, "--limit", "2").exit_code == 0 and report_of(out)["complete"]

        def killed(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(probe_run, "judge_earlier_rows", killed)  # after the answers, before the report
        interrupted = probe(url, out, "--limit", "6")
        assert interrupted.exit_code == 130, interrupted.output
    report = report_of(out)
    assert report["complete"] is False and report["incomplete"]["unfinished"]
    assert report["overall"]["overall"]["count"] == 2  # the earlier invocation's figures, said to be stale
    assert "INCOMPLETE RUN" in (out / "report.md").read_text().splitlines()[2]
    board = json.loads(runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "board"), "--json"]).output)
    assert board["runs"][0]["complete"] is False


def test_a_pending_batch_for_more_items_leaves_no_report_claiming_complete(tmp_path: Path):
    from .test_batch import until_done

    fake = FakeLLM(reply=gold_reply)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        codes, _ = until_done(url, out, "--limit", "2")
        assert codes[-1] == 0 and report_of(out)["complete"]
        pending = probe(url, out, "--batch", "--limit", "6")
    assert pending.exit_code == 3 and "submitted answer batch" in pending.output
    assert report_of(out)["complete"] is False


def test_rescore_of_a_run_stopped_by_max_cost_stays_incomplete(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        stopped = probe(url, out, "--concurrency", "1", "--max-cost", "0.0000001")
    assert stopped.exit_code == 3, stopped.output
    rescored = runner.invoke(app, ["probe", "rescore", str(out), "--json"])
    assert rescored.exit_code == 3, rescored.output
    report = report_of(out)
    assert report["complete"] is False and report["incomplete"]["stopped_for_max_cost"]
    assert report["incomplete"]["not_run"] == 5


def test_report_figures_are_rounded_once_and_the_judge_says_its_n():
    from realtalk_cli.tasks.probe.report import build_report, report_markdown

    def row(i: int, f1: float, judge: float | None) -> dict:
        return {
            "chat": "c",
            "dataset": "realtalk",
            "qa_index": i,
            "category": 1,
            "category_name": "multi-hop",
            "f1": f1,
            "f1_date_normalised": f1,
            "judge_score": judge,
            "judge_model": "j" if judge is not None else None,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "cost_usd": 0.0,
            "error": None,
        }

    report = build_report([row(0, 0.12251, 1.0), row(1, 0.12251, None)], {"judge_model": "j"})
    overall = report["overall"]["overall"]
    assert overall["f1"] == pytest.approx(0.12251)  # exact, not 0.1225 (which shows as 0.122)
    assert overall["judge"] == 1.0 and overall["judge_count"] == 1 and overall["count"] == 2
    table = report_markdown(report)
    assert "| all | 1 multi-hop | 2 | 0.123 | 0.123 | 1.000 (n=1) |" in table


def test_stats_round_once_and_a_total_says_how_it_aggregates():
    from realtalk_cli.analysis.stats import ChatStats, _fill_summaries, total_stats

    chat = ChatStats("c", "realtalk", gaps_hours=[1.004, 1.004, 1.009], spans_days=[1.014])
    _fill_summaries(chat)
    other = ChatStats("d", "realtalk", spans_days=[2.0])
    _fill_summaries(other)
    # exact values rounded once: the mean of 1.004, 1.004, 1.009 is 1.0057 -> 1.01 (not 1.0, from 1.0, 1.0, 1.01)
    assert chat.gap_hours_mean == 1.01 and chat.days_spanned == 1.01
    total = total_stats([chat, other])
    assert total.days_spanned == 1.51  # the mean per chat of the exact spans (1.507), not of 1.01 and 2.0
    assert "mean per chat" in total.row()["aggregation"] and "aggregation" not in chat.row()


def test_dry_run_estimates_answers_judge_and_memory_and_their_total(tmp_path: Path):
    fake = FakeLLM(reply=verdicts('{"score": 1}'))
    out = tmp_path / "run"
    args = ("--judge-model", "gpt-4o-mini", "--memory", "llm-summaries", "--max-cost", "5")
    with serve_llm(fake) as url:
        plan = json.loads(probe(url, out, *args, "--dry-run", "--json").output)
        parts = [plan["estimated_cost_usd"], plan["judge"]["estimated_cost_usd"], plan["memory"]["estimated_cost_usd"]]
        assert all(p > 0 for p in parts) and plan["total"]["estimated_cost_usd"] == pytest.approx(sum(parts))
        batch = json.loads(probe(url, out, *args, "--dry-run", "--json", "--batch").output)
        assert batch["judge"]["batch"] and batch["judge"]["estimated_cost_usd"] < plan["judge"]["estimated_cost_usd"]
        assert (
            probe(url, out, "--judge-model", "gpt-4o-mini", "--memory", "llm-summaries", "--limit", "1").exit_code == 0
        )
        text = probe(url, out, *args, "--dry-run").output
    assert fake.requests and "estimated total (answers, judge, memory ingestion): $" in text
    assert "the run folder has spent $" in " ".join(text.split()) and "--max-cost 5 covers both" in " ".join(
        text.split()
    )


def test_a_folder_of_an_earlier_version_is_credited_with_what_its_rows_cost(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        assert probe(url, out, "--limit", "3", "--no-cache").exit_code == 0
        spent = sum(r["cost_usd"] for r in rows_of(out))
        (out / "usage.jsonl").unlink()  # as a run of an earlier version left it
        sent = len(fake.requests)
        dry = json.loads(probe(url, out, "--no-cache", "--dry-run", "--json").output)
        assert dry["total"]["spent_usd"] == pytest.approx(spent) and not (out / "usage.jsonl").exists()
        capped = probe(url, out, "--no-cache", "--max-cost", str(spent * 0.9))
    assert capped.exit_code == 3 and len(fake.requests) == sent, capped.output
    assert report_of(out)["usage"]["run_folder"]["answer"]["requests"] == 3


def test_analyze_ei_max_cost_covers_every_invocation(tmp_path: Path, monkeypatch):
    from .conftest import SAMPLE_JSON
    from .llm_server import API_KEY

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fake = FakeLLM(reply=lambda body: '{"sentiment": "neutral", "emotion": "joy"}')
    out = tmp_path / "ei"
    args = ["analyze", "ei", str(SAMPLE_JSON), "--out", str(out), "--backend", "llm", "--model", "gpt-4o-mini"]
    args += ["--concurrency", "1", "--max-cost", "0.0000001"]
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        first = runner.invoke(app, args)
        assert first.exit_code == 3 and len(fake.requests) == 1, first.output
        second = runner.invoke(app, args)
    assert second.exit_code == 3 and len(fake.requests) == 1, second.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["usage"]["stopped_for_max_cost"] and metrics["spending"]["run_folder"]["invocations"] == 2


def test_simulate_dry_run_estimates_the_ei_labels_too(tmp_path: Path):
    args = model_run_args("simulate", "http://127.0.0.1:9/v1", tmp_path / "sim", "--no-bertscore", "--dry-run")
    args += ["--ei-backend", "llm", "--ei-model", "gpt-4o-mini", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["labels"]["requests"] == 2 * plan["requests"] and plan["labels"]["estimated_cost_usd"] > 0
    assert plan["total"]["estimated_cost_usd"] == pytest.approx(
        plan["estimated_cost_usd"] + plan["labels"]["estimated_cost_usd"]
    )
    text = runner.invoke(app, args[:-1]).output
    assert "EI labels openai:gpt-4o-mini" in text and "estimated total (answers, labels)" in " ".join(text.split())
