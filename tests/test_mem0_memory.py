"""`probe --compat mem0 --memory SPEC`: mem0's memory answer prompt (shared/LITERATURE_PROTOCOLS.md §1.3), byte for
byte on the wire: the verbatim template by its sha256, each speaker's memories as search.py lists them, one system
message at temperature 0, the reply kept as it came; and what realtalk chose where mem0's harness is silent (how a
memory's recall is dealt to the two speakers, mem0's top 30 per speaker, the prompt within --context-tokens)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.llm.tokens import count_message_tokens
from realtalk_cli.tasks.probe.judges import mem0 as mem0_judge
from realtalk_cli.tasks.probe.protocols import mem0

from .conftest import model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()

ANSWER_PROMPT_SHA256 = "f3c786104816bba61d03b7f41c2be45009e6c8c296a04d9712ab1a59e4ae2399"  # §1.3


def test_the_memory_answer_prompt_is_mem0s_byte_for_byte():
    text = mem0.ANSWER_PROMPT
    assert (len(text), len(text.encode("utf-8"))) == (2245, 2245)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == ANSWER_PROMPT_SHA256


def test_the_memory_prompt_renders_as_jinja2_renders_it():
    jinja2 = pytest.importorskip("jinja2")
    memories = (['8 May, 2023: Ann said "{{question}}" \u2014 caf\u00e9'], [])
    values = {
        "speaker_1_user_id": "Ann",
        "speaker_2_user_id": "Bo",
        "speaker_1_memories": json.dumps(memories[0], indent=4),
        "speaker_2_memories": json.dumps(memories[1], indent=4),
        "question": "What is {{speaker_2_user_id}}?",
    }
    expected = jinja2.Template(mem0.ANSWER_PROMPT).render(**values)
    assert mem0.render_memory_prompt(("Ann_x", "Bo"), memories, values["question"]) == expected
    assert '\\u2014 caf\\u00e9"\n]\n\n    Memories for user Bo:\n\n    []\n' in expected  # json.dumps' ASCII escapes


PLUGIN = '''
from realtalk_cli.tasks.memory import Passage


class Mem:
    """Every kind of item mem0's lists can hold, in a fixed order."""

    def ingest(self, chat, tools):
        pass

    def recall(self, question, budget):
        return [
            "D2:1",  # Bo's message
            Passage("Bo keeps {{question}} notes", speaker="bo "),  # whose memory: named (case and spaces aside)
            "d1 : 1",  # Ann's message, id written loosely
            Passage("Ann painted a lake", ids=["D1:1"], date="8 May"),  # one speaker's messages: hers
            Passage("They met in Oslo"),  # no speaker, no ids, no date: both lists, text alone
            "D9:9",  # names no message
            "D2:1",  # shown already
        ]
'''


def tiny_locomo(tmp_path: Path) -> Path:
    chat = {
        "conversation": {
            "speaker_a": "Ann_A",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann_A", "dia_id": "D1:1", "text": "I painted a lake.", "blip_caption": "a lake"},
                {"speaker": "Bo", "dia_id": "D1:2", "text": "Nice \u00e9!"},
            ],
            "session_2_date_time": "9:00 am on 9 May, 2023",
            "session_2": [{"speaker": "Bo", "dia_id": "D2:1", "text": "I moved to Oslo."}],
        },
        "qa": [
            {"question": "What did Ann paint?", "answer": "a lake", "evidence": ["D1:1"], "category": 4},
            {"question": "Where did Bo move?", "answer": "Oslo", "evidence": ["D2:1"], "category": 4},
            {"question": "What did Bo paint?", "evidence": ["D1:1"], "category": 5, "adversarial_answer": "a lake"},
        ],
    }
    path = tmp_path / "Chat_L_Ann_Bo.json"
    path.write_text(json.dumps(chat))
    return path


def run(tmp_path: Path, url: str, chat: Path, *extra: str, out: str = "run"):
    args = model_run_args("probe", url, tmp_path / out, "--compat", "mem0", *extra)
    args[1] = str(chat)
    return runner.invoke(app, args)


def by_hand(question: str, ann: list[str], bo: list[str]) -> str:
    """The template filled as search.py fills it, written out with str.replace (no code of the protocol)."""
    text = mem0.ANSWER_PROMPT
    for key, value in [
        ("{{question}}", question),
        ("{{speaker_1_memories}}", json.dumps(ann, indent=4)),
        ("{{speaker_2_memories}}", json.dumps(bo, indent=4)),
        ("{{speaker_1_user_id}}", "Ann"),
        ("{{speaker_2_user_id}}", "Bo"),
    ]:
        text = text.replace(key, value)
    return text


def test_mem0_with_a_memory_sends_its_memory_prompt_as_one_system_message(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    (tmp_path / "mem.py").write_text(PLUGIN)

    def reply(body: dict) -> str:
        if body["model"] == "judge-model":
            return '{"label": "CORRECT"}'
        return " a lake \n"

    fake = FakeLLM(reply=reply)
    memory = ["--memory", f"{tmp_path / 'mem.py'}:Mem", "--judge-model", "judge-model"]
    with serve_llm(fake) as url:
        result = run(tmp_path, url, chat, *memory)
        asked = len(fake.requests)
        again = run(tmp_path, url, chat, *memory)  # the same command resumes: its identity is the run's
    assert result.exit_code == 0, result.output
    assert again.exit_code == 0, again.output
    assert len(fake.requests) == asked
    answers = [b for b in fake.requests if b["model"] == "gpt-4o-mini"]
    assert len(answers) == 2  # category 5 is not asked
    ann = ["1:56 pm on 8 May, 2023: I painted a lake.", "8 May: Ann painted a lake", "They met in Oslo"]
    bo = ["9:00 am on 9 May, 2023: I moved to Oslo.", "Bo keeps {{question}} notes", "They met in Oslo"]
    first = next(b for b in answers if "What did Ann paint?" in b["messages"][0]["content"])
    assert first["messages"] == [{"role": "system", "content": by_hand("What did Ann paint?", ann, bo)}]
    assert first["temperature"] == 0.0 and "max_tokens" not in first
    assert set(first) <= {"model", "messages", "temperature", "stream", "stream_options"}
    rows = {
        r["qa_index"]: r for r in map(json.loads, (tmp_path / "run" / "predictions.jsonl").read_text().splitlines())
    }
    assert rows[0]["prediction"] == " a lake \n" and rows[0]["f1_mem0"] == 1.0  # search.py does not strip
    verdict = next(b for b in fake.requests if b["model"] == "judge-model" and "Ann paint" in str(b["messages"]))
    assert verdict["messages"][0]["content"] == mem0_judge.judge_prompt("What did Ann paint?", "a lake", " a lake \n")
    assert rows[0]["retrieved"] == ["D1:1", "D2:1"] and rows[0]["recall"] == 1.0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    manifest = report["manifest"]
    assert manifest["prompts"]["mem0:memory_prompt"] == ANSWER_PROMPT_SHA256[:12]
    assert "mem0:system" not in manifest["prompts"]
    assert manifest["protocol"]["compat"] == "mem0" and "memzero/search.py" in manifest["protocol"]["source"]
    assert "at most 30" in manifest["protocol"]["memories"] and "context-tokens" in manifest["protocol"]["budget"]
    assert report["memory"]["unknown_ids"] == 2  # D9:9, asked twice
    identity = json.loads((tmp_path / "run" / "run.json").read_text())["identity"]
    assert identity["prompts"] == {"mem0:memory_prompt": ANSWER_PROMPT_SHA256[:12]}


def long_chat(tmp_path: Path, n: int) -> Path:
    messages = [
        {"speaker": "Ann" if i % 2 == 0 else "Bo", "dia_id": f"D1:{i + 1}", "text": f"fact number {i + 1}"}
        for i in range(n)
    ]
    chat = {
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": messages,
        },
        "qa": [{"question": "Which fact?", "answer": "fact number 1", "evidence": ["D1:1"], "category": 4}],
    }
    path = tmp_path / "Chat_Long_Ann_Bo.json"
    path.write_text(json.dumps(chat))
    return path


ALL_IDS = """
class Mem:
    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        return self.ids
"""


def sent_lists(body: dict) -> tuple[list[str], list[str]]:
    text = body["messages"][0]["content"]
    first = text.split("Memories for user Ann:\n\n    ")[1].split("\n\n    Memories for user Bo")[0]
    second = text.split("Memories for user Bo:\n\n    ")[1].split("\n\n    Question:")[0]
    return json.loads(first), json.loads(second)


def test_each_speaker_gets_mem0s_top_30_and_the_prompt_stays_within_context_tokens(tmp_path: Path, llm_env):
    chat = long_chat(tmp_path, 100)
    (tmp_path / "all.py").write_text(ALL_IDS)
    fake = FakeLLM(reply=lambda body: "fact number 1")
    memory = ["--memory", f"{tmp_path / 'all.py'}:Mem"]
    with serve_llm(fake) as url:
        wide = run(tmp_path, url, chat, *memory, "--context-tokens", "100000", out="wide")
        narrow = run(tmp_path, url, chat, *memory, "--context-tokens", "900", out="narrow")
    assert wide.exit_code == 0, wide.output
    assert narrow.exit_code == 0, narrow.output
    wide_body, narrow_body = fake.requests
    ann, bo = sent_lists(wide_body)
    assert ann == [f"1:56 pm on 8 May, 2023: fact number {i}" for i in range(1, 60, 2)]  # the memory's order
    assert bo == [f"1:56 pm on 8 May, 2023: fact number {i}" for i in range(2, 61, 2)]
    ann, bo = sent_lists(narrow_body)
    assert 0 < len(ann) + len(bo) < 60
    assert count_message_tokens(narrow_body["messages"], "gpt-4o-mini")[0] <= 900
    report = json.loads((tmp_path / "narrow" / "report.json").read_text())
    assert report["memory"]["items_over_budget"] > 0  # what did not fit is counted, not hidden
    wide_report = json.loads((tmp_path / "wide" / "report.json").read_text())
    assert wide_report["memory"]["items_over_budget"] == 0  # the 40 past mem0's top 30 are not "over budget"


def test_what_mem0s_memory_prompt_cannot_take_is_one_line_exit_2(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    result = run(tmp_path, "http://127.0.0.1:9", chat, "--context", "bm25")
    assert result.exit_code == 2 and "--compat mem0 takes a memory system as --memory SPEC" in result.output
    assert "--memory bm25" in result.output

    data = json.loads(chat.read_text())
    data["conversation"]["session_2"].append({"speaker": "Cy", "dia_id": "D2:2", "text": "Hi all"})
    group = tmp_path / "Chat_G_Ann_Bo.json"
    group.write_text(json.dumps(data))
    result = run(tmp_path, "http://127.0.0.1:9", group, "--memory", "bm25", out="group")
    assert result.exit_code == 2 and "message D2:2 is by 'Cy'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "group").exists()

    (tmp_path / "who.py").write_text(
        "from realtalk_cli.tasks.memory import Passage\n"
        "class Mem:\n"
        "    def ingest(self, chat, tools): pass\n"
        "    def recall(self, question, budget): return [Passage('x', speaker='Zed')]\n"
        "class Odd(Mem):\n"
        "    def recall(self, question, budget): return [Passage('x', speaker=3)]\n"
    )
    fake = FakeLLM()
    with serve_llm(fake) as url:
        result = run(tmp_path, url, chat, "--memory", f"{tmp_path / 'who.py'}:Mem", out="who")
        odd = run(tmp_path, url, chat, "--memory", f"{tmp_path / 'who.py'}:Odd", out="odd")
    assert result.exit_code == 2 and "speaker 'Zed' is neither of Chat_L_Ann_Bo's speakers (Ann_A, Bo)" in result.output
    assert odd.exit_code == 2 and "Passage whose speaker is int" in odd.output
    assert not fake.requests


def test_realtalks_own_layout_still_takes_passages_that_name_a_speaker(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    (tmp_path / "mem.py").write_text(PLUGIN)
    fake = FakeLLM(reply=lambda body: "a lake")
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "own", "--memory", f"{tmp_path / 'mem.py'}:Mem")
        args[1] = str(chat)
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "\n- Bo keeps {" in fake.requests[0]["messages"][-1]["content"]  # listed as any passage, no speaker shown


def test_the_whole_prompt_decides_when_the_running_token_estimate_is_short(tmp_path: Path):
    from realtalk_cli.data.formats import load_chat

    chat = load_chat(long_chat(tmp_path, 100))
    lists = mem0.SpeakerLists(chat, lambda text: 1, "all.py:Mem")  # every memory looks like one token

    def prompt(memories) -> str:
        return mem0.render_memory_prompt(("Ann", "Bo"), memories, "Which fact?")

    bound = len(prompt(([], []))) + 400  # in characters here: 400 for the memories
    recalled = lists.pack([m.dia_id for m in chat.messages()], 10_000, prompt, lambda text: len(text) - bound)
    assert 0 < len(recalled.lists[0]) + len(recalled.lists[1]) < 60
    assert len(prompt(recalled.lists)) <= bound
    assert recalled.over_budget == 60 - len(recalled.lists[0]) - len(recalled.lists[1])
    assert recalled.ids == [m.dia_id for m in chat.messages()][: len(recalled.ids)]  # the first ones, in order


SLOW = """
import time


class Mem:
    def ingest(self, chat, tools):
        pass

    def recall(self, question, budget):
        if "Bo" in question:
            time.sleep(3)
        return ["D1:1"]
"""


def test_a_recall_past_the_deadline_is_an_error_row_not_a_question_asked_without_memories(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    (tmp_path / "slow.py").write_text(SLOW)
    fake = FakeLLM(reply=lambda body: "a lake")
    with serve_llm(fake) as url:
        result = run(tmp_path, url, chat, "--memory", f"{tmp_path / 'slow.py'}:Mem", "--memory-timeout", "0.5")
    assert result.exit_code == 3, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["error"]]
    assert [r["question"] for r in failed] == ["Where did Bo move?"] and "--memory-timeout 0.5 s" in failed[0]["error"]
    assert len(fake.requests) == 1 and "Where did Bo move?" not in fake.requests[0]["messages"][0]["content"]
