"""Pluggable memory (`--memory SPEC`) and the token-budget packing every retriever and memory goes through."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat
from realtalk_cli.tasks.memory import Passage
from realtalk_cli.tasks.memory.packing import Packer

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()

ID_MEMORY = '''
class FirstWords:
    """Returns the messages that share a word with the question, in chat order."""

    version = "2"

    def __init__(self, min_length="4"):
        self.min_length = int(min_length)

    def ingest(self, chat, tools):
        self.messages = list(chat.messages())
        assert tools.count_tokens("hello") > 0
        (tools.store / "ingested.txt").write_text(chat.name)

    def recall(self, question, budget):
        words = {w.strip("?,.").lower() for w in question.split() if len(w) >= self.min_length}
        return [m.dia_id for m in self.messages if words & {w.strip("?,.!").lower() for w in m.clean_text.split()}]
'''

PASSAGE_MEMORY = """
from realtalk_cli.tasks.memory import Passage

class Notes:
    def ingest(self, chat, tools):
        self.chat = chat

    def recall(self, question, budget):
        return [Passage("Ana and Ben talk about running.", date="March 2024"), "D1:1", "D99:1"]
"""


def offline_probe(tmp_path: Path, *extra: str):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--json"]
    return runner.invoke(app, [*args, *extra])


def test_memory_loaded_from_a_file_path_chooses_the_context(tmp_path: Path, llm_env):
    path = tmp_path / "my_memory.py"
    path.write_text(ID_MEMORY)
    result = offline_probe(tmp_path, "--memory", f"{path}:FirstWords", "--memory-option", "min_length=3")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["memory"]["spec"] == f"{path}:FirstWords"
    assert report["memory"]["options"] == {"min_length": "3"}
    assert report["memory"]["version"] == "2"
    assert report["manifest"]["parameters"]["memory_options"] == {"min_length": "3"}
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    prompt_words = json.loads(result.output)["overall"]["overall"]
    assert prompt_words["recall"] is not None
    first = rows[0]  # "What hobbies did Ana take up in March 2024?"
    assert first["retrieved"] and all(i.startswith("D") for i in first["retrieved"])
    stores = list((tmp_path / "run" / "memory").glob("*/Chat_S_Ana_Ben/ingested.txt"))
    assert len(stores) == 1 and stores[0].read_text() == "Chat_S_Ana_Ben"


def test_passages_without_ids_make_recall_unavailable_and_unknown_ids_are_counted(tmp_path: Path, llm_env):
    path = tmp_path / "notes.py"
    path.write_text(PASSAGE_MEMORY)
    result = offline_probe(tmp_path, "--memory", f"{path}:Notes")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["memory"]["unknown_ids"] == 6  # D99:1 once per question
    assert "'D99:1'" in result.stderr and "name no message" in result.stderr  # warned about, once
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["retrieved"] == ["D1:1"] for r in rows)


def test_bad_memory_specs_are_one_line_exit_2(tmp_path: Path, llm_env):
    broken = tmp_path / "broken.py"
    broken.write_text(
        "class Broken:\n    def ingest(self, chat, tools):\n        raise ValueError('boom')\n"
        "    def recall(self, question, budget):\n        return []\n"
    )
    no_recall = tmp_path / "half.py"
    no_recall.write_text("class Half:\n    def ingest(self, chat, tools):\n        pass\n")
    cases = {
        f"{tmp_path}/missing.py:X": "no such file",
        f"{broken}:Nope": "has no class or function 'Nope'",
        f"{broken}:Broken": "ingest failed on Chat_S_Ana_Ben: ValueError: boom",
        f"{no_recall}:Half": "lacks an ingest(chat, tools) or recall(question, budget) method",
        "no_such_module_xyz:Thing": "cannot import no_such_module_xyz",
        "justaname": "expected module:Name",
    }
    for spec, message in cases.items():
        result = offline_probe(tmp_path, "--memory", spec)
        assert result.exit_code == 2, (spec, result.output)
        assert message in result.output, (spec, result.output)
        assert "Traceback" not in result.output
    result = offline_probe(tmp_path, "--memory", "bm25", "--memory-option", "nonsense")
    assert result.exit_code == 2 and "expected key=value" in result.output


def test_packer_keeps_the_budget_shows_time_order_with_dates_and_merges_overlaps():
    chat = load_chat(SAMPLE_JSON)
    packer = Packer(chat, lambda text: len(text.split()))
    recalled = packer.pack(["D3:2", "D1:3", "D1:2", "D3:2", "D1:4"], budget=10_000)
    assert recalled.ids == ["D1:2", "D1:3", "D1:4", "D3:2"]  # time order, once each
    assert recalled.context.count("DATE:") == 2  # D1:2-4 is one span under one date
    sessions = {s.number: s.date_time for s in chat.sessions}
    assert recalled.context.startswith(f"DATE: {sessions[1]}\nCONVERSATION:\n")
    small = packer.pack(["D3:2", "D1:3", "D1:2", "D1:4"], budget=25)
    assert small.tokens <= 25 and small.over_budget > 0
    with_passage = packer.pack([Passage("a fact", ids=["D2:1"], date="May")], budget=100)
    assert with_passage.ids == ["D2:1"] and with_passage.claims and "- (May) a fact" in with_passage.context


def test_llm_summary_memory_counts_its_requests_apart_and_caches_them(tmp_path: Path, llm_env):
    fake = FakeLLM(reply=lambda body: "Ana took up pottery in March 2024.")
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--memory", "llm-summaries", "--json")
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        report = json.loads(first.output)
        sessions = len(load_chat(SAMPLE_JSON).sessions)
        assert report["memory"]["ingest_llm"]["requests"] == sessions
        assert report["run"]["requests"] == 6  # answering alone
        rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
        assert all(r["recall"] is None for r in rows)  # summaries claim no message ids
        assert "pottery" in fake.requests[-1]["messages"][0]["content"]
        (tmp_path / "run" / "predictions.jsonl").unlink()
        again = runner.invoke(app, args)
        assert again.exit_code == 0, again.output
        assert json.loads(again.output)["memory"]["ingest_llm"]["requests"] == 0  # summaries read from the run folder


def test_the_readme_example_memory_runs_from_a_file_path(tmp_path: Path, llm_env):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```python\n# my_memory.py", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_memory.py"
    path.write_text("# my_memory.py" + block)
    result = offline_probe(tmp_path, "--memory", f"{path}:KeywordMemory", "--memory-option", "min_length=5")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["memory"]["version"] == "1" and report["memory"]["options"] == {"min_length": "5"}
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert any(r["recall"] for r in rows)
    # the note alone claims no id, but the memory gives ids elsewhere: recall 0 there, not left out of the mean
    assert all(r["recall"] == 0.0 for r in rows if not r["retrieved"])
    assert all(0 < r["context_tokens"] <= 2700 for r in rows)


def test_report_md_shows_items_over_budget_only_when_some_did_not_fit(tmp_path: Path, llm_env):
    small = offline_probe(tmp_path, "--context", "bm25", "--context-tokens", "160")  # the whole prompt
    assert small.exit_code == 0, small.output
    memory = json.loads(small.output)["memory"]
    skipped, tokens = memory["items_over_budget"], memory["items_over_budget_tokens"]
    assert skipped > 0 and tokens > skipped and memory["questions_over_budget"] == 6
    worst = memory["most_over_budget"][0]
    assert worst["question"].startswith("Chat_S_Ana_Ben #") and worst["tokens"] > 0 and worst["budget"] < 160
    md = (tmp_path / "run" / "report.md").read_text()
    assert f"- {skipped} recalled items (message ids or passages, {tokens} tokens) did not fit the budget" in md
    assert "on 6 questions" in md
    assert f"{worst['question']}: {worst['items']} items ({worst['tokens']} tokens) left out" in md
    path = tmp_path / "notes.py"
    path.write_text(PASSAGE_MEMORY)
    fits = offline_probe(tmp_path, "--memory", f"{path}:Notes", "--force")
    assert fits.exit_code == 0, fits.output
    assert json.loads(fits.stdout)["memory"]["items_over_budget"] == 0
    assert "did not fit" not in (tmp_path / "run" / "report.md").read_text()


def test_dry_run_estimates_what_an_llm_memory_sends_while_ingesting(tmp_path: Path, llm_env):
    """The dry run counts the same requests a live run then sends, with the same token counter."""
    from realtalk_cli.llm.tokens import count_message_tokens

    out = tmp_path / "run"
    fake = FakeLLM(reply=lambda body: "Ana took up pottery in March 2024.")
    with serve_llm(fake) as url:
        dry = runner.invoke(app, model_run_args("probe", url, out, "--memory", "llm-summaries", "--dry-run", "--json"))
        assert dry.exit_code == 0, dry.output
        assert not fake.requests and not out.exists()
        plan = json.loads(dry.stdout)["memory"]
        live = runner.invoke(app, model_run_args("probe", url, out, "--memory", "llm-summaries", "--json"))
        assert live.exit_code == 0, live.output
    sessions = [s for s in load_chat(SAMPLE_JSON).sessions if s.messages]
    summaries = [r for r in fake.requests if r["messages"][0]["content"].startswith("Summarise")]
    assert plan["requests"] == len(summaries) == len(sessions)
    assert plan["prompt_tokens"] == sum(count_message_tokens(r["messages"], "gpt-4o-mini")[0] for r in summaries)
    assert plan["answer_context_tokens_max"] == 2700 * 6
    text = runner.invoke(app, model_run_args("probe", url, tmp_path / "new", "--memory", "llm-summaries", "--dry-run"))
    assert text.exit_code == 0, text.output
    assert f"memory ingest (its own requests): {len(sessions)} requests" in text.stdout
    assert "up to 16200 more prompt tokens" in text.stdout
