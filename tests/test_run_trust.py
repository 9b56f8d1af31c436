"""Runs you can trust (probe): one run per folder, a lock, bad replies as errors, exit codes, money limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import model_run_args
from .llm_server import API_KEY, BAD_REPLIES, SLOW_REPLIES, FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def probe(url: str, out: Path, *extra: str):
    return runner.invoke(app, model_run_args("probe", url, out, *extra))


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def no_traceback(result) -> None:
    assert "Traceback" not in (result.stderr or "") and "Traceback" not in result.output


def test_other_settings_into_a_run_folder_exit_2_naming_them(tmp_path: Path):
    out = tmp_path / "A"
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        first = runner.invoke(
            app, ["probe", str(model_run_args("probe", url, out)[1]), "--model", "offline:bm25", "--out", str(out)]
        )
        assert first.exit_code == 0, first.output
        before = (out / "report.json").read_bytes()
        other = probe(url, out)
        assert other.exit_code == 2 and len(fake.requests) == 0
        assert "model" in other.output and "endpoint" in other.output
        assert "use a new --out, or --force" in other.output
        no_traceback(other)
        context = runner.invoke(
            app,
            [
                "probe",
                str(model_run_args("probe", url, out)[1]),
                "--model",
                "offline:bm25",
                "--out",
                str(out),
                "--context",
                "retrieval",
            ],
        )
        assert context.exit_code == 2 and "context" in context.output
        assert (out / "report.json").read_bytes() == before  # nothing rewritten
        forced = probe(url, out, "--force")
        assert forced.exit_code == 0, forced.output
        assert report_of(out)["manifest"]["model"] == "openai:gpt-4o-mini"
        assert {r["model"] for r in rows_of(out)} == {"openai:gpt-4o-mini"} and len(fake.requests) == 6


def test_a_growing_limit_resumes(tmp_path: Path):
    out = tmp_path / "run"
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        assert probe(url, out, "--limit", "2").exit_code == 0
        assert len(fake.requests) == 2
        grown = probe(url, out, "--limit", "4")
        assert grown.exit_code == 0, grown.output
        assert len(fake.requests) == 4 and len(rows_of(out)) == 4


def test_a_judge_added_to_a_finished_run_judges_what_lacks_its_score(tmp_path: Path):
    out = tmp_path / "run"
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        assert probe(url, out).exit_code == 0
        judged = probe(url, out, "--judge-model", "judge-model", "--json")
        assert judged.exit_code == 0, judged.output
        assert len(fake.requests) == 12  # 6 answers, then 6 verdicts; no answer asked again
        assert all(r["judge_score"] == 1.0 and r["judge_model"] == "openai:judge-model" for r in rows_of(out))
        report = report_of(out)
        assert report["overall"]["overall"]["judge"] == 1.0 and report["complete"]
        # answer and judge usage apart
        assert report["overall"]["judge_prompt_tokens"] > 0
        assert report["overall"]["prompt_tokens"] > report["overall"]["judge_prompt_tokens"]
        again = probe(url, out, "--judge-model", "judge-model")
        assert again.exit_code == 0 and len(fake.requests) == 12


@pytest.mark.parametrize(
    "verdict", ['{"score": ...}', "It is correct.", "", '{"score": "high"}', '{"score": 7}', '{"score": NaN}']
)
def test_an_unreadable_verdict_is_a_judge_error_retried_next_run(tmp_path: Path, verdict: str):
    out = tmp_path / "run"
    replies = {"verdict": verdict}

    def reply(body: dict) -> str:
        if "Predicted answer:" in body["messages"][0]["content"]:
            return replies["verdict"]
        return gold_reply(body)

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        first = probe(url, out, "--judge-model", "judge-model", "--no-cache")
        no_traceback(first)
        assert first.exit_code == 3, first.output
        assert all(r["judge_score"] is None and r["judge_error"] for r in rows_of(out))
        assert report_of(out)["incomplete"]["unscored"] == 6
        replies["verdict"] = '{"score": 1}'
        second = probe(url, out, "--judge-model", "judge-model", "--no-cache")
        assert second.exit_code == 0, second.output
        assert all(r["judge_score"] == 1.0 and r["judge_error"] is None for r in rows_of(out))


def test_bad_replies_fail_their_items_and_only_those_are_asked_again(tmp_path: Path):
    out = tmp_path / "run"
    # a malformed 200 is asked twice (both bad here), an over-long body once; a trickle times out twice,
    # and as a transient fault its third attempt gets a good reply
    faults = ["html"] * 2 + ["truncated"] * 2 + ["content_null"] * 2 + ["usage_negative"] * 2 + ["endless"]
    faults += ["trickle"] * 2
    fake = FakeLLM(reply=gold_reply, faults=faults)
    with serve_llm(fake) as url:
        first = probe(url, out, "--concurrency", "1", "--timeout", "1")
        no_traceback(first)
        assert first.exit_code == 3, first.output
        rows = rows_of(out)
        failed = {r["qa_index"] for r in rows if r["error"]}
        assert len(rows) == 6 and failed == {0, 1, 2, 3, 4}
        assert all(r["f1"] is None and r["prediction"] == "" for r in rows if r["error"])
        assert rows[5]["error"] is None and rows[5]["retries"] == 2 and rows[5]["f1"] == 1.0
        assert "INCOMPLETE RUN" in first.output + (first.stderr or "")
        fake.faults.clear()
        asked = len(fake.requests)
        second = probe(url, out, "--concurrency", "1")
        assert second.exit_code == 0, second.output
        assert len(fake.requests) == asked + len(failed)  # exactly those, none from a poisoned cache
        assert report_of(out)["complete"] and report_of(out)["overall"]["overall"]["f1"] == 1.0


def test_max_cost_with_an_unpriced_model_exits_2_before_any_request(tmp_path: Path):
    fake = FakeLLM(models=("mystery-model",), reply=gold_reply)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--max-cost", "1")
        args[args.index("gpt-4o-mini")] = "mystery-model"
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and fake.requests == []
        assert "no price for openai:mystery-model; add it to prices.toml or pass --price-in/--price-out" in (
            " ".join(result.output.split())
        )
        priced = runner.invoke(app, [*args, "--price-in", "1", "--price-out", "2"])
        assert priced.exit_code == 0, priced.output
        assert report_of(tmp_path / "run")["overall"]["cost_usd"] > 0


def test_max_cost_reached_is_incomplete_exit_3(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run", "--concurrency", "1", "--max-cost", "0.0000001")
    assert result.exit_code == 3, result.output
    report = report_of(tmp_path / "run")
    assert report["complete"] is False and report["incomplete"]["stopped_for_max_cost"]
    assert report["incomplete"]["not_run"] == 5


def test_vendor_prefixed_models_find_their_price():
    from realtalk_cli.llm.providers import Prices

    prices = Prices.load()
    assert prices.known("openai/gpt-4o-mini")
    assert prices.cost("openai/gpt-4o-mini", 10**6, 0) == prices.cost("gpt-4o-mini", 10**6, 0) > 0


def test_dry_run_shows_the_judge_apart(tmp_path: Path):
    fake = FakeLLM()
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run", "--dry-run", "--json", "--judge-model", "judge-model")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["requests"] == 6 and plan["judge"]["requests"] == 6 and plan["judge"]["prompt_tokens"] > 0
    assert fake.requests == []


@pytest.mark.parametrize(
    "flag", [["--limit", "0"], ["--top-k", "0"], ["--concurrency", "0"], ["--concurrency", "-3"], ["--timeout", "0"]]
)
def test_counts_below_1_are_usage_errors(tmp_path: Path, flag: list[str]):
    result = probe("http://127.0.0.1:9/v1", tmp_path / "run", *flag)
    assert result.exit_code == 2 and not (tmp_path / "run").exists()
    no_traceback(result)


@pytest.mark.parametrize(
    "toml",
    [
        'chats = "data/sample/Chat_S_Ana_Ben.json"\nmodel = "offline:bm25"\nout = "R"\n',
        'chats = ["data/sample/Chat_S_Ana_Ben.json"]\nmodel = "offline:bm25"\nout = "R"\ntop_k = "5"\n',
        'chats = ["data/sample/Chat_S_Ana_Ben.json"]\nmodel = "offline:bm25"\nout = "R"\nconcurrency = 0\n',
        'chats = ["data/sample/Chat_S_Ana_Ben.json"]\nmodel = "offline:bm25"\nout = "R"\nlimit = true\n',
    ],
)
def test_config_values_are_type_checked(tmp_path: Path, toml: str):
    conf = tmp_path / "run.toml"
    conf.write_text(toml)
    result = runner.invoke(app, ["probe", "--config", str(conf)])
    assert (
        result.exit_code == 2 and str(conf) in " ".join(result.output.split()).replace(" ", "") or result.exit_code == 2
    )
    no_traceback(result)
    assert not Path("R").exists()


def test_out_that_is_a_file_or_read_only_is_one_line_exit_2(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        app, ["probe", str(model_run_args("probe", "", blocker)[1]), "--model", "offline:bm25", "--out", str(blocker)]
    )
    assert result.exit_code == 2 and "a file is in the way" in result.output
    no_traceback(result)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        result = runner.invoke(
            app,
            [
                "probe",
                str(model_run_args("probe", "", blocker)[1]),
                "--model",
                "offline:bm25",
                "--out",
                str(locked / "run"),
            ],
        )
        assert result.exit_code == 2 and "cannot write there" in result.output


def test_run_files_honour_the_umask(tmp_path: Path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        result = runner.invoke(
            app, ["probe", str(model_run_args("probe", "", out)[1]), "--model", "offline:bm25", "--out", str(out)]
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0
    for name in ("report.json", "report.md", "predictions.jsonl", "run.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_a_second_process_on_a_run_folder_exits_2_and_a_killed_one_leaves_no_stuck_lock(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, latency_s=0.5)
    out = tmp_path / "run"
    env = {**os.environ, "TEST_LLM_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    with serve_llm(fake) as url:
        cmd = [sys.executable, "-m", "realtalk_cli", *model_run_args("probe", url, out, "--concurrency", "1")]
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not fake.requests:
            time.sleep(0.02)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"run folder in use by PID {first.pid}" in " ".join(second.stderr.split())
        assert "Traceback" not in second.stderr
        first.kill()
        first.wait(timeout=10)
        third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stderr


@pytest.mark.parametrize("fault", ["json_list", "choices_empty", "content_number", "usage_strings", "huge"])
def test_each_bad_reply_kind_is_an_item_error_through_the_cli(tmp_path: Path, fault: str):
    assert fault in BAD_REPLIES or fault in SLOW_REPLIES
    fake = FakeLLM(reply=gold_reply, faults=[fault] * 2)
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run", "--concurrency", "1", "--limit", "1")
        no_traceback(result)
        assert result.exit_code == 3
        assert rows_of(tmp_path / "run")[0]["error"].startswith("bad reply")
        fake.faults.clear()
        assert probe(url, tmp_path / "run", "--concurrency", "1", "--limit", "1").exit_code == 0


# --- simulate and analyze ei: the same guarantees ---------------------------------------------------


def sim(url: str, out: Path, *extra: str):
    return runner.invoke(app, model_run_args("simulate", url, out, "--no-bertscore", "--limit", "3", *extra))


def test_simulate_run_folder_identity(tmp_path: Path):
    out = tmp_path / "sim"
    fake = FakeLLM(reply=lambda body: "Sounds good!")
    with serve_llm(fake) as url:
        assert sim(url, out).exit_code == 0
        asked = len(fake.requests)
        assert sim(url, out, "--limit", "5").exit_code == 0  # a growing limit resumes
        assert len(fake.requests) == asked + 2
        other = sim(url, out, "--targets", "turns")
        assert other.exit_code == 2 and "targets" in other.output and "--force" in other.output
        no_traceback(other)
        other_model = runner.invoke(
            app,
            [
                "simulate",
                str(model_run_args("simulate", url, out)[1]),
                "--model",
                "offline:bm25",
                "--out",
                str(out),
                "--no-bertscore",
                "--limit",
                "3",
            ],
        )
        assert other_model.exit_code == 2 and "model" in other_model.output
        forced = sim(url, out, "--targets", "turns", "--force")
        assert forced.exit_code == 0, forced.output
        assert len(rows_of(out)) == 3


def test_simulate_unreadable_ei_labels_are_retried_not_stored(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    labels = {"reply": "I'd say it is positive, mostly."}

    def reply(body: dict) -> str:
        if "Label the message marked >>>" in body["messages"][-1]["content"]:
            return labels["reply"]
        return "Sounds good!"

    fake = FakeLLM(reply=reply)
    out = tmp_path / "sim"
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        args = ("--ei-backend", "llm", "--ei-model", "gpt-4o-mini", "--no-cache")
        first = sim(url, out, *args)
        no_traceback(first)
        assert first.exit_code == 3, first.output
        assert all("labels" not in r for r in rows_of(out))
        assert report_of(out)["incomplete"]["unscored"] == 3
        labels["reply"] = '{"sentiment": "positive", "emotion": "joy", "reflective": false, "grounding": true}'
        second = sim(url, out, *args)
        assert second.exit_code == 0, second.output
        assert all(r["labels"]["prediction"]["sentiment"] == "positive" for r in rows_of(out))


def ei(out: Path, *extra):
    return runner.invoke(app, ["analyze", "ei", str(model_run_args("probe", "", out)[1]), "--out", str(out), *extra])


def test_analyze_ei_folder_identity_and_unreadable_labels(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    out = tmp_path / "ei"
    assert ei(out).exit_code == 0
    before = (out / "metrics.json").read_bytes()
    labels = {"reply": "no idea"}
    fake = FakeLLM(reply=lambda body: labels["reply"])
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        llm = (
            ("--backend", "llm", "--model", "gpt-4o-mini", "--no-cache")
            if False
            else ("--backend", "llm", "--model", "gpt-4o-mini")
        )
        other = ei(out, *llm)
        assert other.exit_code == 2 and "backend" in other.output and fake.requests == []
        assert (out / "metrics.json").read_bytes() == before
        fresh = tmp_path / "ei-llm"
        first = ei(fresh, *llm, "--per", "session")
        no_traceback(first)
        assert first.exit_code == 3
        assert not (fresh / "annotations.jsonl").read_text().strip()  # nothing stored for unreadable replies
        assert json.loads((fresh / "metrics.json").read_text())["incomplete"]["failed"] == 26
        labels["reply"] = json.dumps([{"i": i, "sentiment": "neutral", "emotion": "joy"} for i in range(26)])
        second = ei(fresh, *llm, "--per", "session")
        assert second.exit_code == 0, second.output
        assert len((fresh / "annotations.jsonl").read_text().splitlines()) == 26
        forced = ei(out, *llm, "--per", "session", "--force")
        assert forced.exit_code == 0


def test_bad_replies_in_analyze_ei_and_simulate_are_item_errors(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fake = FakeLLM(reply=lambda body: "Sounds good!", faults=["html", "html", "content_null", "content_null"])
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        result = sim(url, tmp_path / "sim", "--concurrency", "1")
        no_traceback(result)
        assert result.exit_code == 3 and report_of(tmp_path / "sim")["incomplete"]["failed"] == 2
        fake.faults.extend(["json_list", "json_list"])
        labelled = ei(
            tmp_path / "ei", "--backend", "llm", "--model", "gpt-4o-mini", "--per", "session", "--concurrency", "1"
        )
        no_traceback(labelled)
        assert labelled.exit_code == 3


# --- files that are not what they claim: one line, exit 2 ------------------------------------------


@pytest.mark.parametrize("row", ['{"chat": "Chat_S_Ana_Ben", "qa_index": "0"}', "[1, 2]", '{"chat": 5}'])
def test_a_malformed_predictions_row_is_one_line(tmp_path: Path, row: str):
    out = tmp_path / "run"
    args = ["probe", str(model_run_args("probe", "", out)[1]), "--model", "offline:bm25", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    with open(out / "predictions.jsonl", "a") as f:
        f.write(row + "\n")
    for result in (runner.invoke(app, args), runner.invoke(app, ["probe", "rescore", str(out)])):
        assert result.exit_code == 2 and "predictions.jsonl: row 7" in " ".join(result.output.split())
        no_traceback(result)


def test_validate_rejects_non_string_img_file_and_repeated_dia_ids(tmp_path: Path):
    from .conftest import SAMPLE_JSON

    bad = json.loads(SAMPLE_JSON.read_text())
    bad["session_1"][0]["img_file"] = [1, None]
    (tmp_path / "img.json").write_text(json.dumps(bad))
    dup = json.loads(SAMPLE_JSON.read_text())
    dup["session_1"][1]["dia_id"] = dup["session_1"][0]["dia_id"]
    (tmp_path / "dup.json").write_text(json.dumps(dup))
    img = runner.invoke(app, ["validate", str(tmp_path / "img.json")])
    assert img.exit_code == 1 and "img_file: expected a list of strings" in img.output
    stats = runner.invoke(app, ["analyze", "stats", str(tmp_path / "img.json")])
    assert stats.exit_code == 2 and "img_file" in stats.output
    no_traceback(stats)
    repeated = runner.invoke(app, ["validate", str(tmp_path / "dup.json")])
    assert repeated.exit_code == 1 and "error D1:1: dia_id appears 2 times" in " ".join(repeated.output.split())


@pytest.mark.parametrize(
    "content",
    [
        None,
        '{"chats": {"a": {"speakers": 5}}}',
        "[1]",
        '{"chats": {"a": {"speakers": {"Ana": {"empathy": "x"}}}}}',
        '{"chats": {"a": {"speakers": {"Ana": {"empathy": 1e308}}}}}',  # overflowed to inf and a 300-digit cell
    ],
)
def test_analyze_consistency_on_a_chat_file_or_malformed_metrics_is_one_line(tmp_path: Path, content):
    from .conftest import SAMPLE_JSON

    path = SAMPLE_JSON if content is None else tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["analyze", "consistency", str(path)])
    assert (
        result.exit_code == 2
        and str(path) in " ".join(result.output.split()).replace(" ", "")
        or (result.exit_code == 2 and "metrics" in result.output)
    )
    no_traceback(result)


def test_analyze_compare_and_ei_refuse_to_overwrite_without_force(tmp_path: Path):
    from .conftest import SAMPLE

    a, b = tmp_path / "A", tmp_path / "B"
    for d in (a, b):
        d.mkdir()
        (d / "Chat_S_Ana_Ben.json").write_bytes((SAMPLE / "Chat_S_Ana_Ben.json").read_bytes())
    out = tmp_path / "cmp"
    assert runner.invoke(app, ["analyze", "compare", str(a), str(b), "--out", str(out)]).exit_code == 0
    before = (out / "report.md").read_bytes()
    again = runner.invoke(app, ["analyze", "compare", str(a), str(b), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output and (out / "report.md").read_bytes() == before
    assert runner.invoke(app, ["analyze", "compare", str(a), str(b), "--out", str(out), "--force"]).exit_code == 0


def test_a_corrupt_cache_warns_and_the_run_goes_on_without_it(tmp_path: Path, monkeypatch):
    cache = tmp_path / "broken-cache"
    cache.mkdir()
    (cache / "responses.sqlite").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(cache))
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "warning: response cache" in result.output and "running without the cache" in result.output
    assert len(fake.requests) == 6 and report_of(tmp_path / "run")["complete"]


def test_a_full_disk_is_one_line_exit_2(tmp_path: Path, monkeypatch):
    import errno

    import realtalk_cli.fileio as fileio

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fileio, "write_atomic", full)
    monkeypatch.setattr("realtalk_cli.tasks.runs.results.write_atomic", full)
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["probe", str(model_run_args("probe", "", out)[1]), "--model", "offline:bm25", "--out", str(out)]
    )
    assert result.exit_code == 2 and "No space left on device" in result.output
    no_traceback(result)


def test_a_negative_price_in_prices_toml_is_refused(tmp_path: Path, monkeypatch):
    from realtalk_cli.llm.providers import config_dir

    conf = tmp_path / "conf"
    (conf / "prompts").mkdir(parents=True)
    for p in (config_dir() / "prompts").iterdir():
        (conf / "prompts" / p.name).write_bytes(p.read_bytes())
    (conf / "providers.toml").write_bytes((config_dir() / "providers.toml").read_bytes())
    (conf / "prices.toml").write_text('[models."gpt-4o-mini"]\ninput = -5.0\noutput = 0.6\n')
    monkeypatch.setenv("REALTALK_CONFIG_DIR", str(conf))
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run")
    assert result.exit_code == 2 and "input = -5.0 is not a price" in " ".join(result.output.split())
    assert fake.requests == []
