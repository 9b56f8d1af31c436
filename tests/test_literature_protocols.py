"""LoCoMo's and mem0's protocols and mem0's judge, byte for byte (shared/LITERATURE_PROTOCOLS.md §1, §3, §7):
the verbatim strings by their sha256, the worked examples of the shared chats, and runs against the loopback
server sending exactly those requests, with each harness's own F1 beside realtalk's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat
from realtalk_cli.scoring.literature import locomo_f1, mem0_f1
from realtalk_cli.tasks.probe.judges import mem0 as mem0_judge
from realtalk_cli.tasks.probe.protocols import locomo, mem0, paper

from .conftest import SHARED, model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    ("text", "chars", "digest"),
    [
        (mem0_judge.ACCURACY_PROMPT, 1657, "62395dd312a631dfd9355026a0b69cc936018274c3198b6365b5c2a5c9bca9e0"),
        (mem0.SYSTEM, 285, "0c6b92630ba4c22fd29e718d095abb2d6ffba10c04d00962e94bca4a65b23249"),
        (mem0.PROMPT, 69, "744495b77f2955d437017fd33a0b7156ef41426b7ae8277e5efb92382f234b78"),
        (locomo.CONV_START_PROMPT, 187, "68e12aada9c2b0308cf3c92cc50565391d9a408f953413565a573bb15ff0a4d8"),
        (locomo.QA_PROMPT, 191, "a30fe18a6c9b58c5d22b6188860e5a99cdfef33fcc8a36141b571d954b9b0266"),
        (locomo.QA_PROMPT_CAT_5, 88, "57005b715f4c2a7c848ab0d7829037afd08d5bb68ba626e4f5a83e8493104986"),
    ],
)
def test_the_verbatim_strings_are_the_harnesses(text: str, chars: int, digest: str):
    assert len(text) == chars and sha(text) == digest


EXAMPLES = [  # shared/LITERATURE_PROTOCOLS.md §1.2, §3.1, §7.1: file, qa[0], (chars, bytes, sha256)
    ("locomo/Chat_2_Jon_Gina.json", "mem0", None, (56402, 56412, "16ca2b16f65b0237d407db7a1d84411579fc70d1a60876f2e79a20357e58c7ce")),  # noqa: E501
    ("locomo/Chat_2_Jon_Gina.json", "locomo", ("Gina", "Jon"), (55290, 55300, "896f8ae5753c5d775ba5b4397791750dce73c385d8d8702c51bae96619be8d9f")),  # noqa: E501
    ("locomo/Chat_2_Jon_Gina.json", "locomo", ("Jon", "Gina"), (55290, 55300, "1ed8984f0482d487e47fb7e7645fe7ef153e16574ba1fad59f97e158275077ad")),  # noqa: E501
    ("realtalk/Chat_1_Emi_Elise.json", "mem0", None, (110012, 110369, "b40a9a8a17e60588bbb5edcd23c0e07851f733fc4a5876659c817dd7a13e6252")),  # noqa: E501
    ("realtalk/Chat_1_Emi_Elise.json", "locomo", ("Emi", "elise"), (106210, 106567, "43b7d94356cf24fd2657154af03f4a71a3f8a805e7a9087b3a0e2dc4d7a55e24")),  # noqa: E501
    ("realtalk/Chat_1_Emi_Elise.json", "locomo", ("elise", "Emi"), (106210, 106567, "d39d6c105078dd64c561e71774c98b8120fc3abc2212254cc49ec1dd488144f5")),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("name", "harness", "speakers", "expected"), EXAMPLES)
def test_the_worked_examples_of_the_shared_chats(name, harness, speakers, expected):
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    data = paper.load_file(path)
    conv, qa = paper.conversation(data), data["qa"][0]
    if harness == "mem0":
        text = mem0.render(str(qa["question"]), mem0.chat_history(conv))
    else:
        text = locomo.prompt(conv, qa, speakers)
    assert (len(text), len(text.encode("utf-8")), sha(text)) == expected


def tiny_locomo(tmp_path: Path) -> Path:
    chat = {
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I painted a lake."},
                {"speaker": "Bo", "dia_id": "D1:2", "text": "Nice {lake}!", "blip_caption": "a lake at dusk"},
            ],
            "session_2_date_time": "9:00 am on 9 May, 2023",
            "session_2": [{"speaker": "Bo", "dia_id": "D2:1", "text": "I moved to Oslo."}],
        },
        "qa": [
            {"question": "What did Ann paint?", "answer": "a lake", "evidence": ["D1:1"], "category": 4},
            {"question": "When did Bo move?", "answer": "9 May 2023", "evidence": ["D2:1"], "category": 2},
            {"question": "What did Bo paint?", "evidence": ["D1:1"], "category": 5, "adversarial_answer": "a lake"},
        ],
    }
    path = tmp_path / "Chat_L_Ann_Bo.json"
    path.write_text(json.dumps(chat))
    return path


def run(tmp_path: Path, url: str, chat: Path, *extra: str):
    args = model_run_args("probe", url, tmp_path / "run", *extra)
    args[1] = str(chat)
    return runner.invoke(app, args)


def test_locomo_sends_its_prompts_with_its_parameters_and_keeps_its_rounded_f1(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    fake = FakeLLM(
        reply=lambda body: "(a)" if "Select the correct answer" in body["messages"][0]["content"] else "a lake!"
    )
    with serve_llm(fake) as url:
        result = run(tmp_path, url, chat, "--compat", "locomo")
    assert result.exit_code == 0, result.output
    data = json.loads(chat.read_text())
    conv = data["conversation"]
    bodies = sorted(fake.requests, key=lambda b: b["messages"][0]["content"])
    assert all(len(b["messages"]) == 1 and b["messages"][0]["role"] == "user" for b in bodies)
    assert all((b["temperature"], b["max_tokens"]) == (0.0, 32) for b in bodies)
    sent = {b["messages"][0]["content"] for b in bodies}
    assert locomo.prompt(conv, data["qa"][0], ("Ann", "Bo")) in sent
    assert locomo.prompt(conv, data["qa"][1], ("Ann", "Bo")).endswith(
        "Question: When did Bo move? Use DATE of CONVERSATION to answer with an approximate date. Short answer:\n"
    )
    assert ' said, "Nice {lake}!"\n and shared a lake at dusk.\n' in next(iter(sent))
    rows = {
        r["qa_index"]: r for r in map(json.loads, (tmp_path / "run" / "predictions.jsonl").read_text().splitlines())
    }
    assert rows[0]["f1_locomo"] == 1.0 and rows[1]["f1_locomo"] == round(rows[1]["f1"], 3)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["manifest"]["protocol"]["compat"] == "locomo" and "judge" in report["manifest"]["protocol"]
    assert "f1_locomo" in report["overall"]["overall"]
    assert "F1 (LoCoMo" in (tmp_path / "run" / "report.md").read_text()


def test_mem0_sends_its_system_and_prompt_skips_category_5_and_its_judge_reads_labels(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)

    def reply(body: dict) -> str:
        if body["model"] == "judge-model":
            return 'The answer matches. ```json\n{"label": "CORRECT"}\n```'
        return " a lake \n"

    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        result = run(tmp_path, url, chat, "--compat", "mem0", "--judge-model", "judge-model")
    assert result.exit_code == 0, result.output
    answers = [b for b in fake.requests if b["model"] == "gpt-4o-mini"]
    verdicts = [b for b in fake.requests if b["model"] == "judge-model"]
    assert len(answers) == 2 and len(verdicts) == 2  # category 5 is not asked
    history = (
        "1:56 pm on 8 May, 2023 | Ann: I painted a lake.\n1:56 pm on 8 May, 2023 | Bo: Nice {lake}!\n"
        "9:00 am on 9 May, 2023 | Bo: I moved to Oslo.\n"
    )
    first = next(b for b in answers if "What did Ann paint?" in b["messages"][1]["content"])
    assert first["messages"][0] == {"role": "system", "content": mem0.SYSTEM}
    assert first["messages"][1]["content"] == (
        f"\n# Question: \nWhat did Ann paint?\n\n# Context: \n{history}\n\n# Short answer:"
    )
    assert first["temperature"] == 0.0 and "max_tokens" not in first
    verdict = next(b for b in verdicts if "What did Ann paint?" in b["messages"][0]["content"])
    assert verdict["response_format"] == {"type": "json_object"} and verdict["temperature"] == 0.0
    assert verdict["messages"][0]["content"] == mem0_judge.judge_prompt("What did Ann paint?", "a lake", "a lake")
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["judge_score"] == 1.0 and r["f1_mem0"] is not None for r in rows)


def test_the_harnesses_f1_are_theirs():
    assert mem0_f1("the lake, the lake!", "The lake") == 1.0  # sets, articles kept
    assert mem0_f1("lakes", "lake") == 0.0  # no stemming
    assert mem0_f1("", "x") == 0.0
    assert locomo_f1("a painted lake", "painted the lakes", 4, "locomo") == 1.0  # stemmed, articles dropped
    assert locomo_f1("one two three", "one", 4, "locomo") == 0.5
    assert locomo_f1("x y z", "x a b c d e f", 4, "locomo") == round(2 * (1 / 3) * (1 / 6) / (1 / 3 + 1 / 6), 3)
    assert mem0_judge.parse_label('{"label": "CORRECT"}') == 1.0
    assert mem0_judge.parse_label('{"label": "CORRECT."}') == 0.0
    assert mem0_judge.parse_label("CORRECT") is None  # not JSON: mem0 would abort; no score here


def test_category_filters_probe_run_by_number_or_name_before_the_limit(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    fake = FakeLLM(reply=lambda body: "9 May 2023")
    with serve_llm(fake) as url:
        result = run(tmp_path, url, chat, "--compat", "locomo", "--category", "temporal", "--limit", "1")
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
        assert [r["qa_index"] for r in rows] == [1] and len(fake.requests) == 1
        wider = run(tmp_path, url, chat, "--compat", "locomo", "--category", "4")  # the same folder, more questions
        assert wider.exit_code == 0, wider.output
        missing = run(tmp_path, url, chat, "--category", "commonsense")
    assert missing.exit_code == 2 and "--category commonsense: no question of that category" in missing.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "Categories by LoCoMo's own numbering" in (tmp_path / "run" / "report.md").read_text()
    assert report["manifest"]["parameters"]["category"] == "4"


def test_report_category_keeps_one_category_of_every_run(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    with serve_llm(FakeLLM(reply=lambda body: "a lake")) as url:
        assert run(tmp_path, url, chat, "--compat", "locomo").exit_code == 0
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "-o", str(out), "--category", "2 temporal", "--json"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["categories"] == ["2 temporal", "overall"] and board["runs"][0]["answered"] == 1
    bad = runner.invoke(app, ["report", str(tmp_path / "run"), "-o", str(out), "--category", "9", "--force"])
    assert (
        bad.exit_code == 2
        and "no question of that category in these runs (2 temporal, 4 single-hop, 5 adversarial)" in bad.output
    )


def test_locomo_batched_asks_a_chats_questions_in_one_request_and_reads_the_json_reply(tmp_path: Path, llm_env):
    chat = tiny_locomo(tmp_path)
    data = json.loads(chat.read_text())
    replies = iter(["not json at all", '```json\n{"0": "a lake", "1": "9 May 2023", "2": "(b)"}\n```'])
    fake = FakeLLM(reply=lambda body: next(replies))
    with serve_llm(fake) as url:
        first = run(tmp_path, url, chat, "--compat", "locomo-batched", "--no-cache")
        assert first.exit_code == 3, first.output  # an unreadable reply fails its three questions
        again = run(tmp_path, url, chat, "--compat", "locomo-batched", "--no-cache")
        assert again.exit_code == 0, again.output
    assert len(fake.requests) == 2
    body = fake.requests[1]
    options = locomo.adversarial_options(next(q for q in load_chat(chat).qa if q.category == 5))
    expected = (
        locomo.fill(locomo.CONV_START_PROMPT, "Ann", "Bo")
        + locomo.context(data["conversation"])
        + "\n"
        + locomo.QA_PROMPT_BATCH
        + "0: What did Ann paint?\n"
        + "1: When did Bo move? Use DATE of CONVERSATION to answer with an approximate date.\n"
        + f"2: What did Bo paint? Select the correct answer: (a) {options['a']} (b) {options['b']}. "
    )
    assert body["messages"] == [{"role": "user", "content": expected}]
    assert (body["temperature"], body["max_tokens"]) == (0.0, 1000)
    rows = {
        r["qa_index"]: r for r in map(json.loads, (tmp_path / "run" / "predictions.jsonl").read_text().splitlines())
    }
    assert rows[0]["prediction"] == "a lake" and rows[1]["prediction"] == "9 May 2023"
    assert rows[2]["prediction"] == options["b"]
    assert rows[0]["prompt_tokens"] > 0 and rows[1]["prompt_tokens"] == rows[2]["prompt_tokens"] == 0


def test_one_run_keeps_several_judges_each_under_its_protocol_and_model(tmp_path: Path, llm_env):
    from .test_probe import gold_reply

    def reply(body: dict) -> str:
        prompt = body["messages"][0]["content"]
        if "Generated answer:" in prompt:  # mem0's J: strict, says WRONG
            return '{"label": "WRONG"}'
        return gold_reply(body)

    fake = FakeLLM(reply=reply)
    out = tmp_path / "run"
    with serve_llm(fake) as url:
        first = runner.invoke(app, model_run_args("probe", url, out, "--judge-model", "judge-model"))
        assert first.exit_code == 0, first.output
        extra = ["--judge-protocol", "mem0", "--judge-model", "judge-model", "--base-url", url]
        second = runner.invoke(app, ["probe", "rescore", str(out), *extra, "--api-key-env", "TEST_LLM_KEY"])
        assert second.exit_code == 0, second.output
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    keys = {"realtalk/openai:judge-model", "mem0/openai:judge-model"}
    assert all(set(r["judges"]) == keys for r in rows)
    assert all(r["judges"]["mem0/openai:judge-model"]["score"] == 0.0 for r in rows)
    # the first judge's verdict stays where scripts read it
    assert all(r["judge_score"] == 1.0 and r["judge_key"] == "realtalk/openai:judge-model" for r in rows)
    report = json.loads((out / "report.json").read_text())
    judges = report["overall"]["overall"]["judges"]
    assert judges["realtalk/openai:judge-model"]["mean"] == 1.0 and judges["mem0/openai:judge-model"]["mean"] == 0.0
    assert report["manifest"]["judge_protocol"] == "mem0" and report["overall"]["overall"]["judge"] == 0.0
    bad = runner.invoke(app, ["probe", "rescore", str(out), "--judge-protocol", "mem1", "--judge-model", "j"])
    assert bad.exit_code == 2 and "judge protocol 'mem1': choose" in bad.output


def test_report_gives_a_column_and_a_ranking_per_judge(tmp_path: Path, llm_env):
    from .test_probe import gold_reply

    def reply(body: dict) -> str:
        prompt = body["messages"][0]["content"]
        if "Generated answer:" in prompt:
            return '{"label": "WRONG"}'
        return gold_reply(body)

    runs = [tmp_path / "a", tmp_path / "b"]
    with serve_llm(FakeLLM(reply=reply)) as url:
        for out in runs:
            assert runner.invoke(app, model_run_args("probe", url, out, "--judge-model", "judge-model")).exit_code == 0
        extra = ["--judge-protocol", "mem0", "--judge-model", "judge-model", "--base-url", url]
        extra += ["--api-key-env", "TEST_LLM_KEY"]
        assert runner.invoke(app, ["probe", "rescore", str(runs[0]), *extra]).exit_code == 0
        # graded by realtalk's judge again: the run names it (and is ranked beside b by it), mem0's column stays
        extra[1] = "realtalk"
        assert runner.invoke(app, ["probe", "rescore", str(runs[0]), *extra]).exit_code == 0
    result = runner.invoke(app, ["report", *map(str, runs), "-o", str(tmp_path / "rep"), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "rep" / "report.json").read_text())
    realtalk, mem0 = "judge:realtalk/openai:judge-model", "judge:mem0/openai:judge-model"
    assert board["metrics"][realtalk] == "judge realtalk/openai:judge-model" and mem0 in board["metrics"]
    a, b = board["runs"]
    assert a["scores"][realtalk]["overall"]["mean"] == 1.0 and a["scores"][mem0]["overall"]["mean"] == 0.0
    assert b["scores"][mem0]["overall"]["n"] == 0  # b was never graded by mem0's judge: no score, not a zero
    assert board["groups"][0]["rankings"][realtalk] == ["A", "B"]
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert "judge mem0/openai:judge-model" in md and "ranked by overall judge mem0/openai:judge-model: " in md


def test_report_counts_the_cost_of_every_judge_once(tmp_path: Path):
    from realtalk_cli.report.runs import load_run

    run = tmp_path / "run"
    run.mkdir()
    row = {"chat": "c", "qa_index": 0, "question": "q", "category": 1, "f1": 1.0, "cost_usd": 0.5}
    first = {"score": 1.0, "error": None, "cost_usd": 0.25}
    judged = {**row, "judge_score": 1.0, "judge_cost_usd": 0.25, "judge_key": "realtalk/j"}
    judged["judges"] = {"realtalk/j": first, "mem0/j": {"score": 0.0, "error": None, "cost_usd": 0.125}}
    judged["erratum"] = {"judge_cost_usd": 0.0625}
    (run / "predictions.jsonl").write_text(json.dumps(judged) + "\n")
    assert load_run(run).usage()["cost_usd"] == 0.5 + 0.25 + 0.125 + 0.0625
