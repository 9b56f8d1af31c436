from __future__ import annotations

import pytest

from realtalk_cli.data.evidence import parse_evidence, resolve_evidence
from realtalk_cli.data.formats import load_chat
from realtalk_cli.scoring.evidence import evidence_recall

from .conftest import LOCOMO_JSON, REALTALK_JSON, needs_shared


@pytest.mark.parametrize(
    ("raw", "ids", "unparsed"),
    [
        ("D3:1", ["D3:1"], []),
        ("D8:6; D9:17", ["D8:6", "D9:17"], []),
        ("D2:136; D2:137; D25:12", ["D2:136", "D2:137", "D25:12"], []),
        ("D20:17.", ["D20:17"], []),
        ("D13:4. D14:4", ["D13:4", "D14:4"], []),
        ("D22:1 D22:2 D9:10 D9:11", ["D22:1", "D22:2", "D9:10", "D9:11"], []),
        ("D 2:18", ["D2:18"], []),
        ("D17;39", ["D17:39"], []),
        ("D:11:26", ["D11:26"], []),
        ("23:29", ["D23:29"], []),
        ("D12:3-D12:5", ["D12:3", "D12:4", "D12:5"], []),
        ("D12:3-5", ["D12:3", "D12:4", "D12:5"], []),
        ("D1:2-D3:4", [], ["D1:2-D3:4"]),  # a range over sessions names no message list
        ("D", [], ["D"]),
        ("", [], []),
    ],
)
def test_every_evidence_form(raw: str, ids: list[str], unparsed: list[str]):
    parsed = parse_evidence([raw])
    assert (parsed.ids, parsed.unparsed) == (ids, unparsed)


def test_ids_repeat_once():
    assert parse_evidence(["D1:1", "D1:1; D1:2"]).ids == ["D1:1", "D1:2"]


@needs_shared
def test_every_id_in_the_shared_chats_parses_except_the_bare_d():
    """Every evidence entry in the 17 shared chats yields canonical ids; only LoCoMo's lone 'D' does not."""
    unparsed, dangling, resolved = [], 0, 0
    for path in REALTALK_JSON + LOCOMO_JSON:
        chat = load_chat(path)
        index = chat.message_index()
        for q in chat.qa:
            parsed = parse_evidence(q.evidence)
            unparsed += parsed.unparsed
            assert all(i in index or i.startswith("D") for i in parsed.ids)
            r = resolve_evidence(chat, q.evidence, index)
            resolved += len(r.resolved)
            dangling += len(r.dangling)
    assert unparsed == ["D"]
    assert (resolved, dangling) == (4009, 133)  # measured; dangling ones are mostly REALTALK sub-session ids


@needs_shared
def test_odd_forms_resolve_in_their_chats():
    chat8 = load_chat(next(p for p in REALTALK_JSON if p.name.startswith("Chat_8_")))
    assert resolve_evidence(chat8, ["D 2:18", "D20:17."]).resolved == ["D2:18", "D20:17"]
    assert resolve_evidence(chat8, ["23:29"]).dangling == ["D23:29"]  # the chat has no session 23


def test_recall_is_over_resolvable_ids():
    assert evidence_recall(["D1:1", "D1:2"], ["D1:2", "D5:5"]) == 0.5
    assert evidence_recall([], ["D1:1"]) is None
