"""`probe --compat paper`: the paper's prompts byte for byte (PAPER_PROTOCOL.md §1), its requests and judge."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.tasks.probe.protocols import paper as pp

from .conftest import LOCOMO_JSON, REALTALK_JSON, SHARED, model_run_args, needs_shared
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
PROTOCOL = SHARED / "PAPER_PROTOCOL.md"


def protocol_section(title: str) -> str:
    text = PROTOCOL.read_text(encoding="utf-8")
    start = text.index(title)
    return text[start : text.index("\n### ", start + 1)]


def json_blocks(section: str) -> list[str]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", section, re.S)]


# --- an independent rebuild of evaluate_memory.py / qa_tool.py, written from the protocol's prose -----


def rebuild_prompt(data: dict, question: str, first: str, second: str) -> str:
    conv = data["conversation"] if "conversation" in data else data
    keys = [k for k in conv.keys() if "session" in k and "date_time" not in k]
    numbers = sorted(int(k.split("_")[-1]) for k in keys)
    context = ""
    for i in numbers:
        if "session_" + str(i) not in conv:
            continue
        block = "DATE: " + conv[f"session_{i}_date_time"] + "\n" + "CONVERSATION:\n"
        for m in conv[f"session_{i}"]:
            text = m["clean_text"] if "clean_text" in m else m["text"]
            block += m["speaker"] + ' said, "' + text + '"'
            if "blip_caption" in m:
                block += "\n" + m["speaker"] + ' shared, an image of "' + m["blip_caption"] + '".'
            block += "\n"
        context = block + "\n" + context
    opening = (
        f"Below is a conversation between two people: {first} and {second}. The conversation takes place over "
        "multiple days and the date of each conversation is written at the beginning of the conversation."
    )
    qa = (
        "Based on the above context, write an answer in the form of a short phrase for the following question.\n"
        'If the question is about a date, try to infer the approximate date (e.g., "In the 1800s", "Before Jan '
        '2021", etc.).\n\nQuestion: ' + question + "\nAnswer:\n"
    )
    return opening + "\n\n" + context + "\n\n" + qa


SMALL = {
    "name": {"speaker_1": "Ann", "speaker_2": "Bo"},
    "session_1": [
        {"speaker": "Bo", "clean_text": "Hi {there}", "text": "raw hi", "dia_id": "D1:1"},
        {"speaker": "Ann", "clean_text": "two\nlines", "text": "raw", "dia_id": "D1:2", "blip_caption": "a dog"},
    ],
    "events_session_1": {"agent_a": [], "agent_b": []},
    "session_1_date_time": "01.01.2024, 10:00:00",
    "session_2": [{"speaker": "Ann", "clean_text": "bye", "dia_id": "D2:1"}],
    "events_session_2": {"agent_a": [], "agent_b": []},
    "session_2_date_time": "02.01.2024, 10:00:00",
    "qa": [
        {"question": "Who? {}", "answer": "Ann", "evidence": ["D1:2"], "category": 1},
        {"question": "Skipped", "answer": "x", "evidence": [], "category": 4},
        {"question": "When?", "answer": "2 January 2024", "evidence": ["D2:1"], "category": 2},
    ],
}


def test_prompt_rebuilt_independently_on_a_small_chat():
    built = pp.prompt(SMALL, "Who? {}", speakers=("Bo", "Ann"))
    assert built == rebuild_prompt(SMALL, "Who? {}", "Bo", "Ann")
    assert built.count("DATE: 01.01.2024") == 2  # events_session_N doubles every session
    assert built.index("DATE: 02.01.2024") < built.index("DATE: 01.01.2024")  # newest first
    assert 'Ann shared, an image of "a dog".' in built and 'said, "two\nlines"' in built
    assert pp.opening_speakers(SMALL) == ("Bo", "Ann")  # first appearance in session 1


def test_locomo_layout_is_not_duplicated():
    locomo = {"conversation": {k: v for k, v in SMALL.items() if not k.startswith(("events", "name", "qa"))}}
    assert pp.prompt(pp.conversation(locomo), "Q").count("DATE:") == 2


@needs_shared
@pytest.mark.parametrize("path", REALTALK_JSON[:2] + LOCOMO_JSON[:2], ids=lambda p: p.stem)
def test_every_prompt_of_shared_chats_matches_the_independent_rebuild(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    prompts = pp.file_prompts(path)
    conv = pp.conversation(data)
    first, second = pp.opening_speakers(conv)
    assert [i for i, _, _ in prompts] == [i for i, q in enumerate(data["qa"]) if q["category"] not in (4, 5)]
    for _, q, text in prompts[:3] + prompts[-2:]:
        assert text == rebuild_prompt(data, q["question"], first, second)


@needs_shared
def test_first_prompt_of_chat_1_is_the_worked_example():
    section = protocol_section("### 1.9 Worked example")
    head, tail = json_blocks(section)
    chat_1 = next(p for p in REALTALK_JSON if p.name == "Chat_1_Emi_Elise.json")
    index, item, text = pp.file_prompts(chat_1)[0]
    assert (index, item["question"]) == (0, "What are Kate's hobbies?")
    assert len(text) == 212_107 and len(text.encode()) == 212_821
    assert text.count("DATE:") == 36 and text.count("\n") == 1365
    assert text.startswith(head) and text.endswith(tail)
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == "fdbaefd1f2eb98379460faf6a683e919e3b8a1130088d2066ece1ecd8b627966" and digest in section
    swapped = pp.prompt(pp.conversation(json.loads(chat_1.read_text())), item["question"], speakers=("elise", "Emi"))
    assert (
        hashlib.sha256(swapped.encode()).hexdigest()
        == "7ecb52a200bc80a902d92218eb94c8ab2a6df94c55151257fb53d41f43a82b1f"
    )
    once = pp.file_prompts(chat_1, duplicate=False)[0][2]
    assert len(once) == 106_281
    locomo_1 = next(p for p in LOCOMO_JSON if p.name == "Chat_1_Caroline_Melanie.json")
    assert len(pp.file_prompts(locomo_1)[0][2]) == 76_707


@needs_shared
def test_item_counts_and_judge_prompt_are_the_papers():
    assert sum(len(pp.file_prompts(p)) for p in LOCOMO_JSON) == 699  # categories 1-3 only
    (judge,) = json_blocks(protocol_section("### 1.7 GPT score"))
    assert pp.JUDGE_PROMPT == judge
    filled = pp.judge_prompt("Q {answer}?", "A", "P")
    assert filled.startswith("Given the question") and "Question: Q {answer}?\nGround truth: A\n" in filled


@pytest.mark.parametrize(
    ("reply", "score"),
    [('{"score": 0.5}', 0.5), ('{"score": 1}', 1.0), ('{"score": "1"}', None), ('{"score": 7}', None), ("1", None)],
)
def test_paper_judge_reply_is_read_as_json_and_checked(reply: str, score):
    assert pp.parse_judge(reply) == score


def _chat(tmp_path: Path) -> Path:
    path = tmp_path / "Chat_T_Ann_Bo.json"
    path.write_text(json.dumps(SMALL))
    return path


@pytest.mark.usefixtures("llm_env")
def test_probe_compat_paper_sends_the_papers_requests_and_judges_with_the_answering_model(tmp_path: Path):
    judge_replies = iter(["not json", '{"score": 1}', '{"score": 0}'])

    def reply(body: dict) -> str:
        if body["messages"][0]["content"].startswith("Given the question"):
            return next(judge_replies)
        return " Ann " if "Who?" in body["messages"][0]["content"] else "2 January 2024"

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--compat", "paper", "--concurrency", "1")
        args[1] = str(_chat(tmp_path))
        result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    answers = [r for r in fake.requests if not r["messages"][0]["content"].startswith("Given the question")]
    judged = [r for r in fake.requests if r["messages"][0]["content"].startswith("Given the question")]
    assert len(answers) == 2  # category 4 skipped
    assert all(set(r) == {"model", "messages"} for r in answers)  # no temperature, max_tokens, ...
    assert answers[0]["messages"] == [{"role": "user", "content": pp.file_prompts(_chat(tmp_path))[0][2]}]
    assert len(judged) == 3  # the invalid JSON reply was asked again
    assert all(r["model"] == "gpt-4o-mini" and r["response_format"] == {"type": "json_object"} for r in judged)
    assert all(set(r) == {"model", "messages", "response_format"} for r in judged)
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["prediction"] for r in rows) == [" Ann ", "2 January 2024"]  # unstripped, as the script keeps it
    report = json.loads(result.output)
    protocol = report["manifest"]["protocol"]
    assert protocol["compat"] == "paper" and "answering model, as the paper's script" in protocol["judge"]
    assert set(report["manifest"]["prompts"]) == {"paper:opening", "paper:qa", "paper:judge"}
    assert sorted(r["judge_score"] for r in rows) == [0.0, 1.0]


@pytest.mark.usefixtures("llm_env")
def test_official_is_an_alias_and_judge_model_overrides(tmp_path: Path):
    fake = FakeLLM(reply=lambda body: '{"score": 1}')
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--compat", "official", "--judge-model", "judge-model")
        args[1] = str(_chat(tmp_path))
        result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)["manifest"]
    assert m["parameters"]["compat"] == "paper" and m["judge_model"] == "openai:judge-model"
    assert "--judge-model" in m["protocol"]["judge"]
    assert {r["model"] for r in fake.requests if "response_format" in r} == {"judge-model"}


def test_bad_compat_and_context_are_usage_errors(tmp_path: Path):
    base = ["probe", str(_chat(tmp_path)), "--model", "offline:bm25", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*base, "--compat", "papr"])
    names = "choose paper, paper-once, locomo, locomo-batched, mem0, longmemeval, official"
    assert result.exit_code == 2 and names in result.output
    result = runner.invoke(app, [*base, "--compat", "paper", "--context", "retrieval"])
    assert result.exit_code == 2 and "Traceback" not in result.output
