"""Offline baselines: the short-answer heuristic (`offline:bm25`), the old line answerer, not-mentioned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.tasks.probe.baselines import bm25_line, extract_answer, parse_prompt
from realtalk_cli.tasks.probe.protocols import paper as paper_protocol

from .conftest import SHARED, needs_shared

CONTEXT = (
    "Below is a conversation between two people: Ann and Bo.\n\n"
    "DATE: 03.03.2024, 10:00:00\nCONVERSATION:\n"
    'Ann said, "I adopted a puppy named Biscuit yesterday!"\n'
    'Bo said, "Lovely. I went skiing and hiking\nin the Alps last week."\n\n'
    "DATE: 16.03.2024, 09:00:00\nCONVERSATION:\n"
    'Ann said, "My sister moved to Lisbon for work."\n'
    'Bo said, "I started cooking Italian food, pasta mostly."\n'
)


def ask(question: str, context: str = CONTEXT, suffix: str = " Short answer:") -> str:
    return extract_answer([{"role": "user", "content": f"{context}\nQuestion: {question}{suffix}"}])


def test_prompt_parsing_keeps_dates_and_multiline_messages():
    chat, question, hinted = parse_prompt(CONTEXT + "\nQuestion: Where did Bo go? Short answer:")
    assert [m.date for m in chat.messages] == ["03.03.2024, 10:00:00"] * 2 + ["16.03.2024, 09:00:00"] * 2
    assert chat.messages[1].text == "Lovely. I went skiing and hiking\nin the Alps last week."
    assert question == "Where did Bo go?" and not hinted


def test_short_answer_is_the_best_message_minus_the_question_words():
    answer = ask("Where did Ann's sister move for work?")
    assert answer == "Lisbon"
    assert len(ask("What is the name of Ann's puppy?").split()) <= 6


def test_when_questions_get_the_session_date_written_out():
    assert ask("When did Ann's sister move to Lisbon?") == "16 March 2024"
    hint = " Use the DATE of each CONVERSATION to answer, written with the month in words (e.g. 29 December 2023)."
    assert ask("What did Ann adopt a puppy?", suffix=hint + " Short answer:") == "3 March 2024"


def test_list_and_yes_no_questions():
    assert "," in ask("What are Bo's hobbies like skiing and cooking?")
    assert ask("Does Ann have a puppy?") == "Yes"


def test_retrieval_lines_carry_their_own_dates():
    lines = '1:56 pm on 8 May, 2023: Ann said, "We moved to Lisbon."\n'
    assert ask("When did Ann move to Lisbon?", context=lines) == "8 May 2023"


def test_paper_prompt_layout_is_read_too():
    data = {
        "session_1": [
            {"speaker": "Ann", "clean_text": "We moved to Lisbon.", "dia_id": "D1:1"},
            {"speaker": "Bo", "clean_text": "Nice!", "dia_id": "D1:2"},
        ],
        "events_session_1": {},
        "session_1_date_time": "05.01.2024, 12:00:00",
    }
    prompt = paper_protocol.prompt(data, "When did Ann move to Lisbon?")
    assert extract_answer([{"role": "user", "content": prompt}]) == "5 January 2024"


def test_old_line_answerer_kept_and_nothing_to_match_is_empty():
    assert bm25_line([{"role": "user", "content": CONTEXT + "\nQuestion: Where did Ann's sister move?"}])
    assert extract_answer([{"role": "user", "content": "no chat here"}]) == ""


@needs_shared
def test_heuristic_floor_on_the_shared_realtalk_chats(tmp_path: Path):
    """Measured 0.18 overall (the old line answerer: 0.01); a regression below 0.15 fails."""
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["probe", str(SHARED / "realtalk"), "--model", "offline:bm25", "--out", str(out), "--no-cache", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["overall"]
    assert report["overall_1_3"]["count"] == 500 and report["overall_1_3"]["f1"] >= 0.15
    assert report["categories"]["2 temporal"]["f1_date_normalised"] > report["categories"]["2 temporal"]["f1"]


@pytest.mark.usefixtures("llm_env")
def test_not_mentioned_answers_every_locomo_trap(tmp_path: Path):
    chat = {
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "I painted a lake."}],
        },
        "qa": [{"question": "What did Bo paint?", "evidence": ["D1:1"], "category": 5, "adversarial_answer": "a lake"}],
    }
    path = tmp_path / "Chat_L.json"
    path.write_text(json.dumps(chat))
    result = CliRunner().invoke(
        app, ["probe", str(path), "--model", "offline:not-mentioned", "--out", str(tmp_path / "r"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["overall"]["categories"]["5 adversarial"]["f1"] == 1.0
