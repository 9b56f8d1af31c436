from __future__ import annotations

from pathlib import Path

import pytest

from realtalk_cli.data.formats import chat_paths, dumps_realtalk, load_chat
from realtalk_cli.data.model import Chat, Message, Session
from realtalk_cli.errors import RealtalkError

from .conftest import LOCOMO_JSON, REALTALK_JSON, SAMPLE_JSON, ids, needs_shared


@needs_shared
@pytest.mark.parametrize("path", REALTALK_JSON, ids=ids(REALTALK_JSON))
def test_realtalk_json_round_trips_byte_for_byte(path: Path):
    chat = load_chat(path)
    assert chat.dataset == "realtalk"
    assert dumps_realtalk(chat) == path.read_text(encoding="utf-8")


@needs_shared
@pytest.mark.parametrize("path", LOCOMO_JSON, ids=ids(LOCOMO_JSON))
def test_locomo_files_load_with_sessions_qa_and_adversarial_golds(path: Path):
    chat = load_chat(path)
    assert chat.dataset == "locomo"
    assert len(chat.sessions) >= 19 and chat.qa
    assert all(s.time is not None for s in chat.sessions)
    assert {q.category for q in chat.qa} <= {1, 2, 3, 4, 5}
    adversarial = [q for q in chat.qa if q.category == 5]
    assert adversarial and all(q.gold for q in adversarial)
    assert all(q.category_name == "adversarial" for q in adversarial)
    assert any(s.summary for s in chat.sessions) and any(s.events["agent_a"] for s in chat.sessions)


@needs_shared
def test_locomo_integer_answers_become_strings():
    answers = [q.answer for p in LOCOMO_JSON for q in load_chat(p).qa]
    assert "2022" in answers
    assert all(a is None or isinstance(a, str) for a in answers)


def test_sample_helpers_iterate_resolve_and_merge_turns():
    chat = load_chat(SAMPLE_JSON)
    messages = list(chat.messages())
    assert [m.dia_id for m in messages[:3]] == ["D1:1", "D1:2", "D1:3"]
    assert chat.resolve(" D2:5 ").clean_text.startswith("Yes, this one")
    assert chat.resolve("D9:9") is None
    turns = chat.turns()
    assert turns[1].speaker == "Ben" and [m.dia_id for m in turns[1].messages] == ["D1:2", "D1:3"]
    assert sum(len(t.messages) for t in turns) == len(messages)
    assert chat.sessions[1].time.isoformat() == "2024-03-07T20:15:03"


def test_turns_do_not_cross_sessions():
    s1 = Session(1, "", [Message("D1:1", "A", "x")])
    s2 = Session(2, "", [Message("D2:1", "A", "y")])
    chat = Chat("c", "realtalk", "A", "B", [s1, s2])
    assert len(chat.turns()) == 2


def test_malformed_json_names_line_and_column(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": {"speaker_1": "A",\n  oops\n}')
    with pytest.raises(RealtalkError, match=r"bad.json: line 3, column 3: malformed JSON"):
        load_chat(bad)


def test_wrong_shape_names_the_key(tmp_path: Path):
    bad = tmp_path / "shape.json"
    bad.write_text('{"name": {"speaker_1": "A", "speaker_2": "B"}, "session_1": [{"speaker": "A", "dia_id": "D1:1"}]}')
    with pytest.raises(RealtalkError, match=r"shape.json: session_1\[0\]: missing key 'clean_text'"):
        load_chat(bad)


def test_json_that_is_no_chat_is_refused(tmp_path: Path):
    bad = tmp_path / "list.json"
    bad.write_text("[1, 2]")
    with pytest.raises(RealtalkError, match="not a REALTALK or LoCoMo chat"):
        load_chat(bad)


def test_missing_file_and_directory_are_refused(tmp_path: Path):
    with pytest.raises(RealtalkError, match="no such file"):
        load_chat(tmp_path / "nope.json")
    with pytest.raises(RealtalkError, match="is a directory"):
        load_chat(tmp_path)


def test_chat_paths_sorts_chats_naturally(tmp_path: Path):
    for n in (10, 2, 1):
        (tmp_path / f"Chat_{n}_X.json").write_text("{}")
    assert [p.name for p in chat_paths([tmp_path])] == ["Chat_1_X.json", "Chat_2_X.json", "Chat_10_X.json"]
