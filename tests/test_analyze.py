from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.analysis.compare import consistency
from realtalk_cli.analysis.ei import METRIC_NAMES
from realtalk_cli.analysis.ei_lexicon import is_grounding, is_reflective, lexicon_emotion, lexicon_sentiment
from realtalk_cli.analysis.ei_llm import llm_jobs
from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat

from .conftest import SAMPLE_JSON, SHARED, needs_shared
from .llm_server import API_KEY, FakeLLM, serve_llm

runner = CliRunner()


def run(*args, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.mark.parametrize("command", ["stats", "ei", "consistency", "compare"])
def test_analyze_commands_have_help_with_an_example(command: str):
    result = run("analyze", command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_stats_on_the_sample_hand_counted():
    result = run("analyze", "stats", SAMPLE_JSON, "--json")
    assert result.exit_code == 0, result.output
    chat, total = json.loads(result.output)
    assert (chat["sessions"], chat["messages"], chat["pictures"], chat["events"], chat["qa"]) == (3, 26, 2, 8, 6)
    # turns, counted by hand from data/make_sample.py: 9 + 7 + 6
    assert chat["turns"] == 22
    qa = [k for k in chat if k.startswith("qa ")]
    assert qa == ["qa 1 multi-hop", "qa 2 temporal", "qa 3 commonsense"]  # in category order, with names
    assert [chat[k] for k in qa] == [2, 2, 2]
    assert chat["messages_per_session_min"] == 7 and chat["messages_per_session_max"] == 11
    # 03.03 18:11:40 -> 07.03 20:15:03 and 07.03 20:26:40 -> 16.03 11:30:00
    assert chat["gap_hours_max"] == pytest.approx(207.06, abs=0.01)
    assert chat["days_spanned"] == pytest.approx(12.74, abs=0.01)  # 03.03 18:02:11 -> 16.03 11:48:44
    assert total["messages"] == 26


def test_stats_csv_has_a_header_and_a_total_row():
    result = run("analyze", "stats", SAMPLE_JSON, "--csv")
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("chat,dataset,sessions,messages,turns")
    assert lines[-1].startswith("total,realtalk,3,26,22")


def test_lexicon_rules():
    assert lexicon_sentiment("I love this, it is wonderful!") == "positive"
    assert lexicon_sentiment("This is terrible and sad.") == "negative"
    assert lexicon_sentiment("The bus leaves at 5.") == "neutral"
    assert lexicon_emotion("I am so happy and joyful") == "joy"
    assert lexicon_emotion("xyz") == "neutral"
    assert is_reflective("I feel like I finally understand it")
    assert not is_reflective("The weather is nice today")
    assert is_grounding("Which cooking class did you take?", "I took a cooking class")
    assert not is_grounding("Nice.", "I took a cooking class")
    assert not is_grounding("How are you?", None)


def test_ei_lexicon_on_the_sample_is_resumable(tmp_path: Path):
    first = run("analyze", "ei", SAMPLE_JSON, "--out", tmp_path, "--json")
    assert first.exit_code == 0, first.output
    metrics = json.loads(first.output)
    ana = metrics["chats"]["Chat_S_Ana_Ben"]["speakers"]["Ana"]
    assert ana["messages"] == 13 and 0 <= ana["sentiment_diversity"] <= 1.585
    assert ana["empathy"] is None and ana["intimacy"] is None
    assert metrics["unavailable"] == ["empathy", "intimacy"]
    lines = (tmp_path / "annotations.jsonl").read_text().splitlines()
    assert len(lines) == 26
    # a torn last line and a rerun: no duplicates, same metrics
    (tmp_path / "annotations.jsonl").write_text("\n".join(lines[:20]) + "\n" + lines[20][:15])
    second = run("analyze", "ei", SAMPLE_JSON, "--out", tmp_path, "--json")
    assert second.exit_code == 0
    assert len((tmp_path / "annotations.jsonl").read_text().splitlines()) == 26
    assert json.loads(second.output) == metrics


def _llm_reply(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    labels = {
        "sentiment": "positive",
        "emotion": "joy",
        "reflective": False,
        "grounding": True,
        "empathy": {"emotional_reaction": 1, "interpretation": 1, "exploration": 0},
        "intimacy": 3,
    }
    if "Label every message" in prompt:
        numbers = [int(line.split("]")[0][1:]) for line in prompt.splitlines() if line.startswith("[")]
        return "```json\n" + json.dumps([{"i": n, **labels} for n in numbers]) + "\n```"
    return json.dumps(labels) + ","


@pytest.mark.parametrize("per,requests", [("message", 26), ("session", 3)])
def test_ei_llm_backend_per_message_and_per_session(tmp_path: Path, monkeypatch, per: str, requests: int):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeLLM(reply=_llm_reply)
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        result = run(
            "analyze",
            "ei",
            SAMPLE_JSON,
            "--out",
            tmp_path / "ei",
            "--backend",
            "llm",
            "--model",
            "gpt-4o-mini",
            "--per",
            per,
            "--json",
        )
    assert result.exit_code == 0, result.output
    assert len(fake.requests) == requests
    metrics = json.loads(result.output)
    ben = metrics["chats"]["Chat_S_Ana_Ben"]["speakers"]["Ben"]
    assert ben["empathy"] == 2.0 and ben["intimacy"] == 0.5 and ben["intimacy_slope"] == 0.0
    assert ben["sentiment_diversity"] == 0.0 and ben["grounding_frequency"] == 1.0
    assert metrics["backend"] == f"llm:openai:gpt-4o-mini per {per}"
    assert metrics["usage"]["requests"] == requests


def test_llm_per_message_prompts_mark_the_message_and_carry_its_session():
    chat = load_chat(SAMPLE_JSON)
    jobs = llm_jobs(chat, {12}, "message")
    ((members, prompt),) = jobs
    assert members[0][0] == 12 and ">>> [12] Ana:" in prompt
    assert prompt.count("\n[") == 7  # the other 7 messages of session 2


def test_hf_backend_offline_fails_with_one_line(tmp_path: Path):
    # A subprocess, so that HF_HUB_OFFLINE is read when huggingface_hub is imported, as for a user.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "realtalk_cli",
        "analyze",
        "ei",
        str(SAMPLE_JSON),
        "--out",
        str(tmp_path),
        "--backend",
        "hf",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: the hf backend ")
    assert "transformers" in result.stderr or "cardiffnlp/twitter-roberta-base-sentiment-latest" in result.stderr
    assert "Traceback" not in result.stderr


def test_consistency_hand_computed():
    metrics = {
        "backend": "test",
        "chats": {
            "c1": {
                "speakers": {"Fahim Khan": {m: None for m in ("reflective_frequency",)} | {"emotion_diversity": 1.0}}
            },
            "c2": {"speakers": {"fahim": {"emotion_diversity": 1.5}, "Other": {"emotion_diversity": 0.1}}},
        },
    }
    for chat in metrics["chats"].values():
        for values in chat["speakers"].values():
            for m in METRIC_NAMES:
                values.setdefault(m, None)
    result = consistency(metrics)
    assert list(result["people"]) == ["unknown:fahim"]
    assert result["people"]["unknown:fahim"]["abs_diff"]["emotion_diversity"] == 0.5
    assert result["mean_abs_diff"]["emotion_diversity"] == 0.5
    assert result["mean_abs_diff"]["empathy"] is None
    # between persons: Other (0.1) against Fahim's two chats (1.0, 1.5): mean of 0.9 and 1.4
    assert result["between_person_abs_diff"]["emotion_diversity"] == pytest.approx(1.15)
    assert result["within_over_between"]["emotion_diversity"] == pytest.approx(0.5 / 1.15)


def test_consistency_keeps_datasets_apart_and_locomo_people_per_chat():
    def entry(dataset, speakers):
        return {"dataset": dataset, "speakers": {s: dict.fromkeys(METRIC_NAMES, v) for s, v in speakers.items()}}

    metrics = {
        "chats": {
            "Chat_3_John_Maria": entry("locomo", {"John": 0.1, "Maria": 0.2}),
            "Chat_5_Tim_John": entry("locomo", {"Tim": 0.3, "John": 0.9}),
            "Chat_1_Emi_Elise": entry("realtalk", {"Emi": 0.4, "Elise": 0.5}),
            "Chat_4_Emi_Paola": entry("realtalk", {"Emi": 0.6, "Paola": 0.7}),
            "Chat_9_John_X": entry("realtalk", {"John": 0.0, "X": 0.0}),
        }
    }
    result = consistency(metrics)
    assert list(result["people"]) == ["realtalk:emi"]  # LoCoMo's Johns are two people; REALTALK's John a third
    assert result["people"]["realtalk:emi"]["names"] == {"Chat_1_Emi_Elise": "Emi", "Chat_4_Emi_Paola": "Emi"}
    # the baseline pairs only REALTALK appearances of different people: 6 appearances, 15 pairs, 1 of them Emi-Emi
    assert result["between_person_pairs"] == 14


@needs_shared
def test_consistency_on_shared_realtalk(tmp_path: Path):
    assert run("analyze", "ei", SHARED / "realtalk", "--out", tmp_path).exit_code == 0
    result = run("analyze", "consistency", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    people = json.loads(result.output)["people"]
    assert set(people) == {"realtalk:akib", "realtalk:elise", "realtalk:emi", "realtalk:nicolas"}
    assert people["realtalk:emi"]["chats"] == ["Chat_1_Emi_Elise", "Chat_4_Emi_Paola"]
    assert "between persons" in run("analyze", "consistency", tmp_path).output


@needs_shared
def test_compare_realtalk_with_locomo_writes_plots_and_report(tmp_path: Path):
    result = run("analyze", "compare", SHARED / "realtalk", SHARED / "locomo", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["datasets"] == ["realtalk", "locomo"] and summary["names"] == ["REALTALK", "LoCoMo"]
    assert summary["stats"]["realtalk"]["messages"] == 6698 and summary["stats"]["locomo"]["qa 5 adversarial"] == 446
    report = (tmp_path / "report.md").read_text()
    assert (
        "labels by the lexicon backend: 9 emotion labels, entropy at most 3.17 bits (the paper's 11 labels: 3.46)"
        in (report)
    )
    for name in ("metrics.png", "session_lengths.png", "gaps.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        at = png.index(b"pHYs") + 4  # pixels per metre: 200 dpi = 7874
        assert int.from_bytes(png[at : at + 4], "big") == 7874
        assert f"]({name})" in report
    assert report.startswith("# REALTALK vs LoCoMo") and report.count("*Figure ") == 3
    assert "Labels from the `lexicon` backend" in report and "log axis" in report
    svg = run(
        "analyze", "compare", SHARED / "realtalk", SHARED / "locomo", "--out", tmp_path / "svg", "--format", "svg"
    )
    assert svg.exit_code == 0 and (tmp_path / "svg" / "gaps.svg").read_text().lstrip().startswith("<?xml")
    assert "](gaps.svg)" in (tmp_path / "svg" / "report.md").read_text()


def test_consistency_without_a_run_is_one_line(tmp_path: Path):
    result = run("analyze", "consistency", tmp_path)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'metrics.json'}: no such file")


def test_ei_hf_backend_labels_with_local_models(tmp_path: Path, tiny_hf_models: dict[str, str]):
    args = ["analyze", "ei", SAMPLE_JSON, "--out", tmp_path, "--backend", "hf", "--json"]
    for kind, path in tiny_hf_models.items():
        args += ["--hf-model", f"{kind}={path}"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["backend"] == "hf" and metrics["hf_models"] == tiny_hf_models
    rows = [json.loads(x) for x in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 26
    assert {r["sentiment"] for r in rows} <= {"negative", "neutral", "positive"}
    assert {r["emotion"] for r in rows} <= {"anger", "joy", "optimism", "sadness"}
    assert all(0.0 <= r["intimacy"] <= 1.0 for r in rows)
    ana = metrics["chats"]["Chat_S_Ana_Ben"]["speakers"]["Ana"]
    assert ana["intimacy"] is not None and ana["intimacy_slope"] is not None  # three sessions


def test_hf_model_option_is_checked():
    result = run("analyze", "ei", SAMPLE_JSON, "--out", "x", "--backend", "hf", "--hf-model", "mood=/m")
    assert result.exit_code == 2
    assert "--hf-model 'mood=/m': expected KIND=MODEL with KIND one of sentiment, emotion, intimacy" in result.output


def test_compare_checks_both_directories_before_any_work(tmp_path: Path):
    result = run("analyze", "compare", SAMPLE_JSON.parent, tmp_path / "missing", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'missing'}: not a directory of chats\n"
    assert not (tmp_path / "out").exists()


@needs_shared
def test_stats_over_two_datasets_has_a_subtotal_per_dataset_beside_the_pooled_total():
    locomo = SHARED / "locomo" / "Chat_1_Caroline_Melanie.json"
    rows = json.loads(run("analyze", "stats", SAMPLE_JSON, locomo, "--json").output)
    assert [r["chat"] for r in rows[2:]] == ["total REALTALK", "total LoCoMo", "total (pooled)"]
    assert rows[2]["messages"] == rows[0]["messages"] and rows[3]["messages"] == rows[1]["messages"]
    assert rows[4]["messages"] == rows[0]["messages"] + rows[1]["messages"]
    table = run("analyze", "stats", SAMPLE_JSON, locomo, env={"COLUMNS": "80"}).output
    assert max(len(line) for line in table.splitlines()) <= 80 and "LoCoMo" in table


def test_ei_llm_backend_takes_probes_endpoint_key_dry_run_and_cost_options(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeLLM(reply=_llm_reply)
    with serve_llm(fake) as url:
        args = ["analyze", "ei", SAMPLE_JSON, "--backend", "llm", "--model", "gpt-4o-mini"]
        args += ["--base-url", url, "--api-key-env", "TEST_LLM_KEY"]
        plan = run(*args, "--out", tmp_path / "plan", "--dry-run", "--json")
        assert plan.exit_code == 0, plan.output
        assert json.loads(plan.output)["requests"] == 26 and fake.requests == []
        assert not (tmp_path / "plan").exists()
        # gpt-4o-mini is priced, so a tiny limit stops after the first replies; a rerun goes on from there
        capped = run(*args, "--out", tmp_path / "ei", "--max-cost", "0.000001", "--json")
        assert capped.exit_code == 3, capped.output  # stopped at --max-cost: incomplete
        assert json.loads(capped.stdout)["usage"]["stopped_for_max_cost"] is True
        assert 0 < len(fake.requests) < 26
        full = run(*args, "--out", tmp_path / "ei", "--json")
    assert json.loads(full.output)["usage"]["stopped_for_max_cost"] is False
    assert len((tmp_path / "ei" / "annotations.jsonl").read_text().splitlines()) == 26
    lexicon = run("analyze", "ei", SAMPLE_JSON, "--out", tmp_path / "lex", "--dry-run")
    assert lexicon.exit_code == 2 and "use it with --backend llm" in lexicon.output
