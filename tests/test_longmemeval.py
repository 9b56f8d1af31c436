"""LongMemEval files: the streaming reader and its mapping to the chat model, validate, stats, LongMemEval's
long-context protocol and judge byte for byte (shared/LITERATURE_PROTOCOLS.md §2), its metrics, and whole runs
of a synthetic file (data/sample/longmemeval_*_sample.json, written by data/make_longmemeval_sample.py) against
the loopback server."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data import longmemeval as lme
from realtalk_cli.data.formats import iter_chats, load_chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.tokens import count_message_tokens
from realtalk_cli.scoring.f1 import answer_f1, token_f1
from realtalk_cli.scoring.longmemeval import longmemeval_metrics
from realtalk_cli.tasks.probe.judges import longmemeval as judge_module
from realtalk_cli.tasks.probe.judges.longmemeval import LongMemEvalJudge, anscheck_prompt, verdict
from realtalk_cli.tasks.probe.options import ProbeOptions
from realtalk_cli.tasks.probe.prompts import fit_sessions, render_sessions
from realtalk_cli.tasks.probe.protocols import longmemeval as protocol_module
from realtalk_cli.tasks.probe.protocols.longmemeval import LongMemEvalProtocol
from realtalk_cli.tasks.probe.protocols.realtalk import RealtalkProtocol

from .conftest import SAMPLE, SAMPLE_JSON, SHARED
from .llm_server import API_KEY, FakeLLM, serve_llm

runner = CliRunner()
S_FILE = SAMPLE / "longmemeval_s_sample.json"
ORACLE_FILE = SAMPLE / "longmemeval_oracle_sample.json"
LITERATURE = SHARED / "LITERATURE_PROTOCOLS.md"

# Our own copy of the SHA-256 values of shared/LITERATURE_PROTOCOLS.md §2.2-2.3, so the strings stay pinned
# where ../shared is absent.
SHA256 = {
    "answer (cot true)": "9e2b3110622929ab896696dd8937231c7436740ec3b9586f653f97346e19ab2c",
    "judge: ssu/ssa/multi-session": "fba020ba3d57982efdc9a937c1c01f897b789a608c7f88e60244121f6505e5bc",
    "judge: temporal-reasoning": "8d33a5fdd83afeeb4592454a965eab43d1fcb2dedc042d1d3892f4254be6c273",
    "judge: knowledge-update": "183a9b3a6197ec620940f610cdc1207201ec98c1113dd633ea685cfc322fafac",
    "judge: preference": "741ee3bcbea7ff5e8ed359acef61d2f8ded3de021bbcff6ee13de455f2e2aa9b",
    "judge: abstention": "5c0b365a1e1d06db36377c735432b56e122ca3c428f89faf61d43a0d5a7e050b",
    "worked example prompt": "35c5423e3c617b764658eedc9cf2ad666e8d2760207e7a044c4d634c5d1f44e9",
}
OURS = {
    "answer (cot true)": protocol_module.ANSWER_PROMPT,
    "judge: ssu/ssa/multi-session": judge_module.GENERAL,
    "judge: temporal-reasoning": judge_module.TEMPORAL,
    "judge: knowledge-update": judge_module.KNOWLEDGE_UPDATE,
    "judge: preference": judge_module.PREFERENCE,
    "judge: abstention": judge_module.ABSTENTION,
}
# The worked example of §2.2 (an instance of 2 sessions given out of date order, an em dash, a turn without
# has_answer), as the shared file writes it.
EXAMPLE = (
    '{"question_id": "ex01_abs", "question_type": "single-session-user", "question": "Where did I park?", "answer": '
    '"You did not mention this.", "question_date": "2023/05/30 (Tue) 20:00", "haystack_session_ids": '
    '["answer_ex01_2", "answer_ex01_1"], "haystack_dates": ["2023/05/30 (Tue) 09:15", "2023/05/29 (Mon) 18:40"], '
    '"haystack_sessions": [[{"role": "user", "content": "I took the bus \\u2014 no car today.", "has_answer": true}], '
    '[{"role": "user", "content": "Hi!", "has_answer": false}, {"role": "assistant", "content": "Hello."}]], '
    '"answer_session_ids": ["answer_ex01_1", "answer_ex01_2"]}'
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shared_strings() -> dict[str, str]:
    """SHA-256 -> exact string, for every verbatim block of the shared file's LongMemEval section (the line after a
    block states its hash; the worked example states it in the sentence before)."""
    text = LITERATURE.read_text(encoding="utf-8")
    section = text[text.index("## 2. LongMemEval") : text.index("## 3. ")]
    blocks = list(re.finditer(r"```(text|json)\n(.*?)\n```\n", section, re.S))
    found = {}
    for i, block in enumerate(blocks):
        kind, body = block.group(1), block.group(2)
        following = section[block.end() : blocks[i + 1].start() if i + 1 < len(blocks) else len(section)]
        after = re.match(r"(.*?)SHA-256 `([0-9a-f]{64})`", following, re.S)
        before = re.findall(r"SHA-256 `([0-9a-f]{64})`\):\n$", section[: block.start()])
        digest = after.group(2) if after else before[0]
        value = json.loads(body) if kind == "json" else body
        if kind == "text" and "no trailing newline" not in after.group(1):
            value += "\n" * int(re.search(r"(\d+) trailing", after.group(1)).group(1))
        assert sha(value) == digest  # the block was read as the shared file means it
        found[digest] = value
    return found


needs_literature = pytest.mark.skipif(not LITERATURE.is_file(), reason=f"{LITERATURE} not found (../shared absent)")


# --- byte for byte ------------------------------------------------------------------------------------------------


def test_prompt_strings_have_the_pinned_sha256():
    for name, text in OURS.items():
        assert sha(text) == SHA256[name], name
    assert sha(protocol_module.prompt(json.loads(EXAMPLE))) == SHA256["worked example prompt"]


@needs_literature
def test_prompt_strings_are_the_shared_files_verbatim_strings():
    strings = shared_strings()
    for name, text in OURS.items():
        assert strings[SHA256[name]] == text, name
    section = LITERATURE.read_text(encoding="utf-8").split("**Worked example.** Instance", 1)[1]
    example = json.loads(re.search(r"`(\{.*?\})`", section, re.S).group(1))
    assert example == json.loads(EXAMPLE)
    assert protocol_module.prompt(example) == strings[SHA256["worked example prompt"]]


def test_worked_example_prompt_sorts_by_date_drops_has_answer_and_escapes_to_ascii():
    text = protocol_module.prompt(json.loads(EXAMPLE))
    assert len(text) == 658
    assert text.index("2023/05/29 (Mon) 18:40") < text.index("2023/05/30 (Tue) 09:15")  # sorted by date string
    assert "has_answer" not in text and "\\u2014" in text and "\u2014" not in text
    assert text.endswith("Current Date: 2023/05/30 (Tue) 20:00\nQuestion: Where did I park?\nAnswer (step by step):")


def _protocol_items(path: Path, model: str = "gpt-4o-mini", **options):
    protocol = LongMemEvalProtocol()
    opts = ProbeOptions(model=model, out=Path("unused"), compat="longmemeval", **options)
    return protocol, protocol.build_items([path], opts, model, None)


def test_protocol_items_build_each_prompt_from_the_file_as_run_generation_does():
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    _, items = _protocol_items(S_FILE)
    assert [it.chat.name for it in items] == [x["question_id"] for x in raw]
    for item, instance in zip(items, raw, strict=True):
        sessions = sorted(zip(instance["haystack_dates"], instance["haystack_sessions"], strict=True))
        history = "".join(
            f"\n### Session {i}:\nSession Date: {date}\nSession Content:\n\n"
            + json.dumps([{k: v for k, v in t.items() if k != "has_answer"} for t in turns])
            + "\n"
            for i, (date, turns) in enumerate(sessions, start=1)
        )
        expected = protocol_module.ANSWER_PROMPT.format(history, instance["question_date"], instance["question"])
        assert item.messages == [{"role": "user", "content": expected}]
    spicy = items[2].messages[0]["content"]  # an emoji is written as its UTF-16 surrogate pair, as json.dumps does
    assert "\\ud83c\\udf36\\ufe0f" in spicy and "🌶" not in spicy
    # pinned: the first sample question's whole prompt
    assert sha(items[0].messages[0]["content"]) == sha(
        protocol_module.ANSWER_PROMPT.format(
            protocol_module.history_string(copy.deepcopy(raw[0])), raw[0]["question_date"], raw[0]["question"]
        )
    )


def test_items_keep_no_haystack_and_read_it_again_when_asked(tmp_path: Path):
    _, items = _protocol_items(S_FILE)
    for item in items:  # only evidence turns stay in memory
        kept = [m.dia_id for m in item.chat.messages()]
        assert kept == item.qa.evidence
    # the file changes under a run: the item refuses to build a prompt from another instance
    moved = tmp_path / "s.json"
    moved.write_bytes(S_FILE.read_bytes())
    _, items = _protocol_items(moved)
    data = json.loads(moved.read_text())
    moved.write_text(json.dumps(data[1:]), encoding="utf-8")
    with pytest.raises(RealtalkError, match="file change"):
        items[1].messages  # noqa: B018


def test_history_is_cut_to_the_scripts_budget_for_gpt_4o_names_only(tmp_path: Path):
    instance = json.loads(EXAMPLE)
    words = " ".join(f"word{i}" for i in range(70_000))  # about 140k o200k tokens
    instance["haystack_sessions"][1].append({"role": "assistant", "content": words})
    big = tmp_path / "big.json"
    big.write_text(json.dumps([instance]), encoding="utf-8")
    protocol, items = _protocol_items(big, model="openai/gpt-4o")
    history = protocol_module.history_string(copy.deepcopy(instance))
    enc = protocol_module.encoding("o200k_base")
    cut = enc.decode(enc.encode(history)[:126_200])
    assert items[0].messages[0]["content"] == protocol_module.ANSWER_PROMPT.format(
        cut, instance["question_date"], instance["question"]
    )
    assert "1 of 1 histories cut" in protocol.describe(None, "openai:gpt-4o", False)["truncation"]
    protocol, items = _protocol_items(big, model="gpt-4o-mini")  # not in run_generation.py's table: sent whole
    assert history in items[0].messages[0]["content"]
    assert "KeyError" in protocol.describe(None, "openai:gpt-4o-mini", False)["truncation"]


# --- the judge ----------------------------------------------------------------------------------------------------


def test_judge_picks_the_template_by_type_and_abstention_wins():
    row = {"question": "Q?", "answer": "5", "prediction": "It is 5.", "question_id": "a1", "chat": "a1", "qa_index": 0}
    judge = LongMemEvalJudge()
    for qtype, template in [
        ("single-session-user", judge_module.GENERAL),
        ("temporal-reasoning", judge_module.TEMPORAL),
        ("knowledge-update", judge_module.KNOWLEDGE_UPDATE),
        ("single-session-preference", judge_module.PREFERENCE),
    ]:
        content = judge.messages({**row, "question_type": qtype})[0]["content"]
        assert content == template.format("Q?", "5", "It is 5.")
    abstained = judge.messages({**row, "question_type": "temporal-reasoning", "question_id": "a1_abs"})
    assert abstained[0]["content"] == judge_module.ABSTENTION.format("Q?", "5", "It is 5.")
    assert anscheck_prompt("multi-session", "{x}", "{}", "{0}") == judge_module.GENERAL.format("{x}", "{}", "{0}")
    assert judge.params == {"temperature": 0, "max_tokens": 10}


def test_judge_verdict_is_a_yes_substring_as_evaluate_qa():
    assert [verdict(t) for t in ("Yes.", " no, yes", "eyes", "YES", "No", "no.", "")] == [1, 1, 1, 1, 0, 0, 0]


def test_judge_refuses_items_of_other_datasets():
    chat = load_chat(SAMPLE_JSON)
    with pytest.raises(RealtalkError, match="needs a LongMemEval question"):
        LongMemEvalJudge().check_item(chat.qa[0], "x")
    with pytest.raises(RealtalkError, match="needs a LongMemEval question"):
        LongMemEvalJudge().messages({"question": "q", "answer": "a", "prediction": "p", "chat": "c", "qa_index": 0})


# --- reading ------------------------------------------------------------------------------------------------------


def test_streaming_reader_gives_every_instance_and_its_byte_span(monkeypatch):
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    monkeypatch.setattr(lme, "CHUNK", 37)  # windows cut instances, strings and multi-byte characters
    seen = list(lme.iter_instances(S_FILE))
    assert [obj for _, obj in seen] == raw
    data = S_FILE.read_bytes()
    for ref, obj in seen:
        assert json.loads(data[ref.offset : ref.offset + ref.length]) == obj == ref.read()


def test_instances_map_to_chats_with_types_evidence_and_answer_sessions():
    s_chats = [chat for chat, _ in iter_chats(S_FILE)]
    oracle = {chat.name: chat for chat, _ in iter_chats(ORACLE_FILE)}
    assert [c.qa[0].category_name for c in s_chats] == [
        "single-session-user",
        "single-session-assistant",
        "single-session-preference",
        "multi-session",
        "temporal-reasoning",
        "knowledge-update",
        "multi-session",
    ]
    plants = s_chats[3]
    assert plants.name == "gpt4_5a1c0e04" and plants.speakers == ("user", "assistant")
    assert plants.qa[0].answer == "5" and plants.qa[0].question_date == "2023/08/20 (Sun) 09:00"
    evidence = [plants.resolve(i).clean_text for i in plants.qa[0].evidence]
    assert len(evidence) == 2 and all("bought" in t for t in evidence)  # has_answer turns only
    assert [plants.sessions[n - 1].messages[0].clean_text for n in plants.qa[0].answer_sessions] == evidence
    # oracle: every turn carries has_answer, the false ones are no evidence; sessions as the file lists them
    assert oracle["gpt4_5a1c0e04"].sessions[0].date_time == "2023/08/15 (Tue) 17:20"
    assert len(oracle["gpt4_5a1c0e04"].qa[0].evidence) == 2
    abstention = s_chats[6].qa[0]
    assert abstention.abstention and abstention.evidence == [] and abstention.answer_sessions == []


BAD_INSTANCES = [
    (lambda x: x.pop("question_type"), "instance 2 (question_id 5a1c0e03): field 'question_type': missing"),
    (lambda x: x.update(answer=["a"]), "field 'answer': expected a string or an integer, found a list"),
    (lambda x: x.update(answer=True), "field 'answer': expected a string or an integer, found true/false"),
    (lambda x: x.update(question_type="other"), "'other' is none of LongMemEval's types"),
    (lambda x: x["haystack_dates"].pop(), "5 sessions but 5 haystack_session_ids and 4 haystack_dates"),
    (lambda x: x["haystack_sessions"][1][0].update(role="system"), "haystack_sessions[1][0].role': 'system' is"),
    (lambda x: x["haystack_sessions"][1][0].pop("content"), "field 'haystack_sessions[1][0].content': missing"),
    (lambda x: x["haystack_sessions"].__setitem__(0, "x"), "field 'haystack_sessions[0]': expected a list of turns"),
    (lambda x: x["answer_session_ids"].append(3), "field 'answer_session_ids[1]': expected a string, found an"),
]


@pytest.mark.parametrize("change, message", BAD_INSTANCES)
def test_a_missing_or_mistyped_field_is_one_line_naming_instance_and_field(tmp_path: Path, change, message):
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    change(raw[2])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw), encoding="utf-8")
    for command in (["validate"], ["analyze", "stats"]):
        result = runner.invoke(app, [*command, str(bad)])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert f"{bad}: instance 2 (question_id 5a1c0e03)" in result.output.replace("\n", "")


@pytest.mark.parametrize("cut", [1, 2000, 12000, -40, -4, -2])
def test_a_truncated_file_is_one_line_exit_2(tmp_path: Path, cut):
    data = S_FILE.read_bytes()
    bad = tmp_path / "cut.json"
    bad.write_bytes(data[:cut] if cut > 0 else data[: len(data) + cut])
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "truncated" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" + EXAMPLE + ' {"question_id": "b"}]', f"line 1, column {len(EXAMPLE) + 3}: malformed JSON"),
        ("[" + EXAMPLE + ', {"question_id": "b", "question":}]', f"column {len(EXAMPLE) + 36}: malformed JSON"),
        ("[" + EXAMPLE + ', \n  {"question_id": "b", }]', "instance 1, line 2, column 24: malformed JSON"),
        ("[" + EXAMPLE + "] []", "data after the end of the list"),
        ('[{"conversation": {}}]', "a JSON list, but not of LongMemEval instances"),
        ('[{"question_id": 7}]', "instance 0: field 'question_id': expected a string, a int"),
    ],
)
def test_malformed_files_are_one_line_naming_the_place(tmp_path: Path, text: str, message: str):
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and message in result.output.replace("\n", ""), result.output


def test_a_list_that_is_no_longmemeval_file_is_not_taken_for_one(tmp_path: Path):
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(RealtalkError, match="not a REALTALK or LoCoMo chat"):
        load_chat(listed)
    with pytest.raises(RealtalkError, match="a LongMemEval file"):
        load_chat(S_FILE)  # commands of one chat per file (simulate, analyze ei) say what they read


def test_validate_reports_the_real_files_quirks_as_warnings():
    result = runner.invoke(app, ["validate", str(S_FILE), str(ORACLE_FILE), "--json"])
    assert result.exit_code == 0, result.output
    files = json.loads(result.output)["files"]
    assert [f["layout"] for f in files] == ["longmemeval", "longmemeval"]
    assert all(not f["errors"] for f in files)
    s_warnings = {(w["where"], w["message"]) for w in files[0]["warnings"]}
    assert ("instance 3 (gpt4_5a1c0e04).answer", "an integer (5), read as the text '5'") in s_warnings
    late = "2023/09/20 (Wed) 08:00 is before the latest session (2023/09/20 21:30)"
    assert ("instance 4 (5a1c0e05).question_date", late) in s_warnings
    oracle = [w["where"] for w in files[1]["warnings"]]
    assert "instance 3 (gpt4_5a1c0e04).haystack_dates" in oracle  # listed out of date order


def test_validate_flags_duplicate_ids_and_unparsable_dates_as_errors(tmp_path: Path):
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    raw[1]["question_id"] = raw[0]["question_id"]
    raw[2]["haystack_dates"][0] = "yesterday"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "question_id also at instance 0" in result.output and "'yesterday' does not parse" in result.output


def test_stats_give_one_row_per_longmemeval_file():
    result = runner.invoke(app, ["analyze", "stats", str(S_FILE), str(SAMPLE_JSON), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["chat"]: r for r in json.loads(result.output)}
    s = rows["longmemeval_s_sample"]
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    assert s["dataset"] == "longmemeval" and s["qa"] == 7
    assert s["sessions"] == sum(len(x["haystack_sessions"]) for x in raw) == 39
    assert s["qa 4 multi-session"] == 2 and s["qa 5 temporal-reasoning"] == 1
    assert "total LongMemEval" in rows and "total REALTALK" in rows


# --- scores -------------------------------------------------------------------------------------------------------


def test_metrics_are_per_type_task_averaged_overall_and_abstention_as_print_qa_metrics():
    def row(qtype: str, score: float, abstention: bool = False) -> dict:
        return {"category_name": qtype, "judge_score": score, "judge_model": "j", "f1": 0.5, "abstention": abstention}

    rows = [
        row("single-session-user", 1),
        row("single-session-user", 0),
        row("single-session-user", 1),
        row("multi-session", 1),
        row("multi-session", 0, abstention=True),
    ]
    m = longmemeval_metrics(rows, "j")
    assert m["types"]["single-session-user"]["judge"] == 0.6667  # round(2/3, 4)
    assert m["types"]["multi-session"]["judge"] == 0.5
    assert m["types"]["temporal-reasoning"] == {"count": 0, "judged": 0, "judge": None, "f1": None}
    assert m["task_averaged"]["judge"] == round((2 / 3 + 0.5) / 2, 4)
    assert m["task_averaged"]["over"] == ["single-session-user", "multi-session"]
    assert not m["task_averaged"]["all_types"]
    assert m["overall"]["judge"] == 0.6 and m["abstention"] == {"count": 1, "judged": 1, "judge": 0.0, "f1": 0.5}
    assert longmemeval_metrics(rows, "another judge")["overall"]["judge"] is None  # only the run's judge counts


def test_f1_on_longmemeval_is_the_plain_token_f1_whatever_the_type_number():
    # type 1 is not LoCoMo's multi-hop (answers split on commas), type 3 not its open-domain (gold cut at ';')
    assert answer_f1("Pixel, a cat", "Pixel", 1, "longmemeval") == token_f1("Pixel, a cat", "Pixel")
    assert answer_f1("x", "x; because", 3, "longmemeval") == token_f1("x", "x; because")


# --- realtalk's own protocol on LongMemEval files -----------------------------------------------------------------


def test_realtalk_protocol_renders_the_full_context_again_from_the_file_and_adds_the_question_date():
    opts = ProbeOptions(model="gpt-4o-mini", out=Path("unused"))
    items = RealtalkProtocol().build_items([S_FILE], opts, "gpt-4o-mini", None)
    chats = {chat.name: chat for chat, _ in iter_chats(S_FILE)}
    for item in items:
        chat = chats[item.chat.name]
        assert [m.dia_id for m in item.chat.messages()] == item.qa.evidence  # no haystack kept
        context, _ = fit_sessions(chat, "full", "gpt-4o-mini", opts.max_context_tokens)
        content = item.messages[0]["content"]
        assert context in content and f"(Current date: {item.qa.question_date}.) Short answer:" in content
        assert "Use the DATE" not in content  # no temporal hint: type 2 is single-session-preference here


def test_fitting_counts_per_session_and_keeps_what_dropping_one_by_one_keeps():
    chat, _ = next(iter_chats(S_FILE))

    def one_by_one(budget: int) -> int:  # the loop fit_sessions ran before
        from realtalk_cli.llm.tokens import count_tokens

        numbers = [s.number for s in chat.sessions]
        dropped = 0
        while len(numbers) > 1 and count_tokens(render_sessions(chat, "full", numbers), "gpt-4o-mini")[0] > budget:
            numbers, dropped = numbers[1:], dropped + 1
        return dropped

    for budget in (1, 40, 200, 260, 330, 400, 10_000):
        assert fit_sessions(chat, "full", "gpt-4o-mini", budget)[1] == one_by_one(budget), budget


# --- whole runs against the loopback server -----------------------------------------------------------------------


def _reply(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    if prompt.startswith("I will give you a question") or prompt.startswith("I will give you an unanswerable"):
        return "no" if "houseplants" in prompt else "Yes."
    if prompt.startswith("You are grading"):
        return '{"score": 1}'
    return "Step 1: the user said so. The answer is Pixel."


def _probe(url: str, out: Path, *extra: str, data: Path = S_FILE):
    args = ["probe", str(data), "--model", "gpt-4o-mini", "--out", str(out), "--base-url", url]
    return runner.invoke(app, [*args, "--api-key-env", "TEST_LLM_KEY", *extra])


@pytest.fixture
def loopback(monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeLLM(reply=_reply)
    with serve_llm(fake) as url:
        yield fake, url


def test_compat_longmemeval_runs_its_prompt_parameters_and_judge_and_resumes(tmp_path: Path, loopback):
    fake, url = loopback
    out = tmp_path / "run"
    result = _probe(url, out, "--compat", "longmemeval", "--judge-model", "judge-model")
    assert result.exit_code == 0, result.output
    answers = [r for r in fake.requests if r["model"] == "gpt-4o-mini"]
    verdicts = [r for r in fake.requests if r["model"] == "judge-model"]
    assert len(answers) == len(verdicts) == 7
    assert all((r["temperature"], r["max_tokens"]) == (0, 800) for r in answers)
    assert all((r["temperature"], r["max_tokens"]) == (0, 10) for r in verdicts)
    _, items = _protocol_items(S_FILE)
    assert sorted(r["messages"][0]["content"] for r in answers) == sorted(it.messages[0]["content"] for it in items)
    abstained = next(r for r in verdicts if "How many concerts" in r["messages"][0]["content"])
    assert abstained["messages"][0]["content"].startswith("I will give you an unanswerable question")
    report = json.loads((out / "report.json").read_text())
    lme_figures = report["longmemeval"]
    assert lme_figures["types"]["multi-session"]["judge"] == 0.5  # houseplants: "no"; the abstention one: "yes"
    overall, averaged = lme_figures["overall"], lme_figures["task_averaged"]
    assert (overall["count"], overall["judged"], overall["judge"]) == (7, 7, round(6 / 7, 4))
    assert averaged["judge"] == round((5 + 0.5) / 6, 4) and averaged["all_types"]
    assert lme_figures["abstention"]["count"] == 1
    protocol = report["manifest"]["protocol"]
    assert protocol["compat"] == "longmemeval" and "KeyError" in protocol["truncation"]
    assert "gpt-4o-2024-08-06" in protocol["judge"]
    md = (out / "report.md").read_text()
    assert "## LongMemEval" in md and "| **task-averaged** |  | 0.9167 |" in md and "overall (1-4)" not in md
    again = _probe(url, out, "--compat", "longmemeval", "--judge-model", "judge-model")
    assert again.exit_code == 0 and len(fake.requests) == 14  # resumed: nothing asked again
    rescored = runner.invoke(
        app,
        [
            "probe",
            "rescore",
            str(out),
            "--judge-model",
            "judge-model",
            "--base-url",
            url,
            "--api-key-env",
            "TEST_LLM_KEY",
        ],
    )
    assert rescored.exit_code == 0, rescored.output
    assert json.loads((out / "report.json").read_text())["longmemeval"]["overall"]["judge"] == round(6 / 7, 4)


def test_retrieval_and_a_memory_plugin_ingest_each_instance_on_its_own(tmp_path: Path, loopback):
    fake, url = loopback
    judged = ("--judge-model", "judge-model")
    result = _probe(url, tmp_path / "bm25", "--context", "bm25", "--context-tokens", "200", *judged)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bm25" / "report.json").read_text())
    figures = report["longmemeval"]
    assert figures["overall"]["recall"] is not None and figures["overall"]["session_recall"] is not None
    assert figures["abstention"]["recall"] is None  # retrieval metrics skip abstention questions
    rows = [json.loads(x) for x in (tmp_path / "bm25" / "predictions.jsonl").read_text().splitlines()]
    assert {r["question_type"] for r in rows} >= {"temporal-reasoning", "knowledge-update"}
    assert all(r["question_date"] for r in rows) and all("retrieved" in r for r in rows)
    asked = [r["messages"][0]["content"] for r in fake.requests if r["model"] == "gpt-4o-mini"]
    assert all("(Current date: 20" in p for p in asked)

    plugin = tmp_path / "seen.py"
    plugin.write_text(
        "class Seen:\n"
        "    def ingest(self, chat, tools):\n"
        "        (tools.store / 'chat.txt').write_text(f'{chat.name} {len(chat.sessions)} {len(chat.qa)}')\n"
        "        self.ids = [m.dia_id for m in chat.messages()]\n"
        "    def recall(self, question, budget):\n"
        "        return self.ids[:3]\n"
    )
    result = _probe(url, tmp_path / "mem", "--memory", f"{plugin}:Seen")
    assert result.exit_code == 0, result.output
    seen = sorted(p.read_text() for p in (tmp_path / "mem" / "memory").glob("*/*/chat.txt"))
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    assert seen == sorted(f"{x['question_id']} {len(x['haystack_sessions'])} 0" for x in raw)


def test_show_and_report_read_a_longmemeval_run(tmp_path: Path, loopback):
    _, url = loopback
    out = tmp_path / "run"
    assert _probe(url, out, "--context", "bm25", "--judge-model", "judge-model").exit_code == 0
    result = runner.invoke(app, ["probe", "show", str(out), "--category", "multi-session", "--json"])
    assert result.exit_code == 0, result.output
    shown = {q["chat"]: q for q in json.loads(result.output)}
    plants = shown["gpt4_5a1c0e04"]
    assert plants["gold"] == "5" and [e["found"] for e in plants["evidence"]] == [True, True]
    bought = "Today I bought three more plants: a pothos, a fern and a snake plant."
    assert bought in {e["text"] for e in plants["evidence"]}
    assert shown["5a1c0e07_abs"]["evidence"] == []
    board_dir = tmp_path / "board"
    result = runner.invoke(app, ["report", str(out), "-o", str(board_dir), "--json", "--resamples", "50"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["categories"][6:] == ["task-averaged", "overall", "abstention"]
    assert board["categories"][0] == "1 single-session-user"
    judge = board["runs"][0]["scores"]["judge_score"]
    assert judge["task-averaged"]["mean"] == pytest.approx(1.0) and judge["abstention"]["n"] == 1
    assert "Today I bought three more plants" in (board_dir / "report.html").read_text()


def test_a_file_with_fewer_types_averages_over_those_present_and_names_them(tmp_path: Path, loopback):
    _, url = loopback
    raw = json.loads(S_FILE.read_text(encoding="utf-8"))
    few = tmp_path / "few.json"
    few.write_text(json.dumps(raw[:2]), encoding="utf-8")
    out = tmp_path / "run"
    assert _probe(url, out, "--compat", "longmemeval", "--judge-model", "judge-model", data=few).exit_code == 0
    md = (out / "report.md").read_text()
    assert "task-averaged over the 2 types present" in md
    assert "Task-averaged over single-session-user, single-session-assistant: this file holds 2 of" in md
    result = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "b"), "--resamples", "0"])
    assert result.exit_code == 0, result.output
    assert (
        "task-averaged over the 2 types present: single-session-assistant, single-session-user"
        in (tmp_path / "b" / "leaderboard.md").read_text()
    )


def test_dry_run_counts_every_prompt_and_the_judges_requests(tmp_path: Path, loopback):
    _, url = loopback
    judged = ("--judge-model", "judge-model")
    result = _probe(url, tmp_path / "r", "--compat", "longmemeval", *judged, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    _, items = _protocol_items(S_FILE)
    assert plan["requests"] == 7
    assert plan["prompt_tokens"] == sum(count_message_tokens(it.messages, "gpt-4o-mini")[0] for it in items)
    assert plan["judge"]["requests"] == 7
    assert not (tmp_path / "r").exists()


def test_judge_protocol_longmemeval_grades_realtalk_protocol_rows_and_refuses_other_data(tmp_path: Path, loopback):
    fake, url = loopback
    judged = ("--judge-protocol", "longmemeval", "--judge-model", "judge-model")
    result = _probe(url, tmp_path / "r", "--context", "bm25", *judged)
    assert result.exit_code == 0, result.output
    verdicts = [r for r in fake.requests if r["model"] == "judge-model"]
    assert len(verdicts) == 7 and all(r["max_tokens"] == 10 for r in verdicts)
    assert all(r["messages"][0]["content"].startswith("I will give you a") for r in verdicts)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["longmemeval"]["judge_model"] == "longmemeval/openai:judge-model"
    assert report["longmemeval"]["overall"]["judged"] == 7
    asked = len(fake.requests)
    result = _probe(url, tmp_path / "rt", *judged, data=SAMPLE_JSON)  # REALTALK items have no question type
    assert result.exit_code == 2 and "LongMemEval's judge needs a LongMemEval question" in result.output
    assert len(fake.requests) == asked and not (tmp_path / "rt").exists()
    plain = tmp_path / "plain"
    assert _probe(url, plain, data=SAMPLE_JSON).exit_code == 0
    before = (plain / "predictions.jsonl").read_bytes()
    rescore = ["probe", "rescore", str(plain), *judged, "--base-url", url, "--api-key-env", "TEST_LLM_KEY"]
    result = runner.invoke(app, rescore)
    assert result.exit_code == 2 and "needs a LongMemEval question" in result.output
    assert (plain / "predictions.jsonl").read_bytes() == before


def test_category_chooses_question_types_in_both_protocols(tmp_path: Path, loopback):
    _, url = loopback
    for extra, wanted in [
        (("--compat", "longmemeval", "--category", "temporal-reasoning"), 1),
        (("--category", "4"), 2),
    ]:
        result = _probe(url, tmp_path / "r", *extra, "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["requests"] == wanted


def test_what_cannot_apply_is_refused_in_one_line(tmp_path: Path, loopback):
    _, url = loopback
    result = _probe(url, tmp_path / "r", "--compat", "longmemeval", data=SAMPLE_JSON)
    assert result.exit_code == 2 and "--compat longmemeval reads LongMemEval files" in result.output
    result = _probe(url, tmp_path / "r", "--compat", "longmemeval", "--context", "bm25")
    assert result.exit_code == 2 and "drop --context/--memory" in result.output
    result = _probe(url, tmp_path / "r", "--compat", "longmemeval", "--batch")
    assert result.exit_code == 2 and "Traceback" not in result.output
    # S and oracle hold the same question ids: their rows would overwrite each other (the same file twice is
    # asked once, as any chat given twice)
    result = runner.invoke(
        app,
        ["probe", str(S_FILE), str(ORACLE_FILE), "--model", "gpt-4o-mini", "--out", str(tmp_path / "r"), "--dry-run"],
    )
    assert result.exit_code == 2 and "is also in" in result.output
    result = _probe(url, tmp_path / "r", "--context", "events")
    assert result.exit_code == 2 and "no events" in result.output
    result = _probe(url, tmp_path / "r", "--compat", "paper")  # the paper's layout reads one chat per file
    assert result.exit_code == 2 and "a LongMemEval file (one haystack per question)" in result.output
    assert not (tmp_path / "r").exists()


def test_a_truncated_file_stops_a_memory_run_before_any_ingestion(tmp_path: Path, loopback):
    _, url = loopback
    cut = tmp_path / "cut.json"
    data = S_FILE.read_bytes()
    cut.write_bytes(data[: len(data) - 300])
    result = _probe(url, tmp_path / "r", "--context", "bm25", data=cut)
    assert result.exit_code == 2 and "truncated" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()
