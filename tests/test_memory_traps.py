"""What a memory-system author runs into (issue 22): the whole-prompt budget, ids as people write them, recall read
from the prompt, what did not fit, tools.complete's parameters, helpers beside the plug-in, the offline tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.llm.tokens import count_message_tokens, count_tokens

from .conftest import SAMPLE_JSON, model_run_args
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()

MEMORIES = """
from realtalk_cli.tasks.memory import Passage

class Base:
    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        return self.ids


class LowerCaseIds(Base):
    def recall(self, question, budget):
        return ["d1:6", " D 1 : 9 ", "d3:1", "D77:7", "nonsense"]


class HugeId(Base):
    def recall(self, question, budget):
        return ["D" * 100_000, "D1:1"]


class OkaySummaries(Base):
    '''The right ids, with passages that hold none of their text.'''

    def recall(self, question, budget):
        return [Passage("Okay.", ["D1:6", "D1:9", "D3:1"])]


class FaithfulPassages(Base):
    def ingest(self, chat, tools):
        self.messages = {m.dia_id: m for m in chat.messages()}

    def recall(self, question, budget):
        return [Passage(self.messages[i].clean_text, [i]) for i in ("D1:6", "D1:9", "D3:1")]


class AsksTheLLM(Base):
    def ingest(self, chat, tools):
        super().ingest(chat, tools)
        self.note = tools.complete([[{"role": "user", "content": "note"}]], max_tokens=77, temperature=0.5)[0]

    def recall(self, question, budget):
        return [Passage(self.note or "none")] + self.ids[:3]


class AsksWithBadTokens(Base):
    def ingest(self, chat, tools):
        tools.complete([[{"role": "user", "content": "note"}]], max_tokens="many")


class LoneSurrogatePassage(Base):
    def recall(self, question, budget):
        return [Passage("half an emoji \\ud83d", ["D1:6"])]


class AsksWithLoneSurrogate(Base):
    def ingest(self, chat, tools):
        tools.complete([[{"role": "user", "content": "note \\udc80"}]])


class AsksWithLoneSurrogateRole(Base):
    def ingest(self, chat, tools):
        tools.complete([[{"role": "user\\udc80", "content": "note"}]])


class AsksWithNaN(Base):
    def ingest(self, chat, tools):
        tools.complete([[{"role": "user", "content": "note", "name": float("nan")}]])


class AsksWithoutRole(Base):
    def ingest(self, chat, tools):
        tools.complete([[{"content": "note"}]])
"""


def probe(tmp_path: Path, spec: str, *extra: str, out: str = "run"):
    path = tmp_path / "mems.py"
    path.write_text(MEMORIES)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / out), "--json"]
    return runner.invoke(app, [*args, "--memory", f"{path}:{spec}", *extra])


def rows(tmp_path: Path, out: str = "run") -> list[dict]:
    return [json.loads(x) for x in (tmp_path / out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("limit", [250, 400])
def test_context_tokens_bounds_the_whole_prompt_the_endpoint_receives(tmp_path: Path, llm_env, limit):
    fake = FakeLLM()
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--context", "bm25", "--context-tokens", str(limit))
        result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    sizes = [count_message_tokens(body["messages"], "gpt-4o-mini")[0] for body in fake.requests]
    assert sizes and max(sizes) <= limit
    assert max(sizes) > limit - 60  # filled, not merely kept short
    report = json.loads(result.stdout)
    assert "the model's tokenizer" in report["memory"]["counted_with"]
    assert "whole prompt" in (tmp_path / "run" / "report.md").read_text()


def test_an_old_retrieval_run_folder_is_refused_with_the_reason(tmp_path: Path, llm_env):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--context", "bm25"]
    assert runner.invoke(app, args).exit_code == 0
    run_json = tmp_path / "run" / "run.json"
    recorded = json.loads(run_json.read_text())
    del recorded["identity"]["context_tokens_bound"]  # as a run made before the budget bounded the whole prompt
    run_json.write_text(json.dumps(recorded))
    again = runner.invoke(app, args)
    assert again.exit_code == 2, again.output
    assert "Traceback" not in again.output
    line = again.output.replace("\n", "")
    assert "bounded the retrieved context alone" in line and "whole prompt" in line and "--force" in line
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_a_full_context_run_folder_of_before_still_resumes(tmp_path: Path, llm_env):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run")]
    assert runner.invoke(app, args).exit_code == 0
    assert "context_tokens_bound" not in json.loads((tmp_path / "run" / "run.json").read_text())["identity"]
    assert runner.invoke(app, args).exit_code == 0


def test_ids_are_matched_without_case_or_spaces_and_unknown_ones_are_warned_about(tmp_path: Path, llm_env):
    result = probe(tmp_path, "LowerCaseIds")
    assert result.exit_code == 0, result.output
    first = rows(tmp_path)[0]  # evidence D1:6, D1:9, D3:1
    assert first["retrieved"] == ["D1:6", "D1:9", "D3:1"] and first["recall"] == 1.0
    memory = json.loads(result.stdout)["memory"]
    assert memory["unknown_ids"] == 2 * len(rows(tmp_path))
    assert memory["unknown_id_examples"] == ["D77:7", "nonsense"]
    assert result.stderr.count("name no message") == 1 and "'D77:7'" in result.stderr
    assert "ids that name no message (left out), e.g. `D77:7`" in (tmp_path / "run" / "report.md").read_text()


def test_recall_is_read_from_the_prompt_not_from_the_ids_a_passage_claims(tmp_path: Path, llm_env):
    result = probe(tmp_path, "OkaySummaries")
    assert result.exit_code == 0, result.output
    first = rows(tmp_path)[0]
    assert first["recall_claimed"] == 1.0 and first["recall"] == 0.0
    recall = json.loads(result.stdout)["overall"]["recall"]["all_categories"]
    assert recall["claimed"] > recall["found"] == 0.0
    md = (tmp_path / "run" / "report.md").read_text()
    assert "0.000 in the prompt's text" in md and "differs: the memory claims evidence" in md


def test_passages_holding_the_messages_text_earn_their_recall(tmp_path: Path, llm_env):
    result = probe(tmp_path, "FaithfulPassages")
    assert result.exit_code == 0, result.output
    first = rows(tmp_path)[0]
    assert first["recall"] == first["recall_claimed"] == 1.0
    assert "differs" not in (tmp_path / "run" / "report.md").read_text()


def test_locomo_recall_is_labelled_for_all_categories_and_for_1_to_4(tmp_path: Path, llm_env):
    from realtalk_cli.tasks.probe.report import build_report, recall_lines

    def row(category: int, recall: float) -> dict:
        return {"chat": "c", "dataset": "locomo", "category": category, "category_name": "x", "recall": recall,
                "recall_claimed": recall, "f1": 0.0, "prompt_tokens": 1, "completion_tokens": 1,
                "cost_usd": 0.0}  # fmt: skip

    report = build_report([row(1, 0.5), row(4, 1.0), row(5, 1.0)], {})
    recall = report["overall"]["recall"]
    assert recall["categories_1_4"]["found"] == 0.75 and recall["categories_1_4"]["count"] == 2
    assert (
        recall["all_categories"]["found"] == pytest.approx(2.5 / 3, abs=1e-4) and recall["all_categories"]["count"] == 3
    )
    lines = recall_lines(recall)
    assert lines[0].startswith("- evidence recall, categories 1-4 (2 questions): 0.750")
    assert lines[1].startswith("- evidence recall, all categories (3 questions): 0.833")


def test_tools_complete_passes_max_tokens_and_temperature(tmp_path: Path, llm_env):
    path = tmp_path / "mems.py"
    path.write_text(MEMORIES)
    fake = FakeLLM(reply=lambda body: "a note")
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--memory", f"{path}:AsksTheLLM")
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [asked] = [b for b in fake.requests if b["messages"][0]["content"] == "note"]
    assert asked["max_tokens"] == 77 and asked["temperature"] == 0.5


def test_tools_complete_with_a_bad_parameter_is_one_line_exit_2(tmp_path: Path, llm_env):
    fake = FakeLLM()
    path = tmp_path / "mems.py"
    path.write_text(MEMORIES)
    with serve_llm(fake) as url:
        result = runner.invoke(
            app, model_run_args("probe", url, tmp_path / "run", "--memory", f"{path}:AsksWithBadTokens")
        )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "max_tokens='many'" in result.output


@pytest.mark.parametrize(
    "spec, said",
    [
        ("LoneSurrogatePassage", "returned a Passage whose text is not valid Unicode"),
        ("AsksWithLoneSurrogate", "tools.complete() was given text that is not valid Unicode"),
        ("AsksWithLoneSurrogateRole", "tools.complete() was given text that is not valid Unicode"),
        ("AsksWithNaN", "its fields and values are text"),
        ("AsksWithoutRole", "a message has a role and a content"),
    ],
)
def test_text_no_request_can_carry_is_one_line_exit_2(tmp_path: Path, llm_env, spec, said):
    """A lone surrogate has no UTF-8 form: sent, it crashed the run in the JSON encoder with a traceback."""
    fake = FakeLLM()
    path = tmp_path / "mems.py"
    path.write_text(MEMORIES)
    with serve_llm(fake) as url:
        result = runner.invoke(app, model_run_args("probe", url, tmp_path / "run", "--memory", f"{path}:{spec}"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and said in result.output


PLUGIN = """
import json  # a json.py beside this file must not replace the standard library's
from helpers import pick


class Helped:
    def ingest(self, chat, tools):
        self.ids = pick(chat)
        json.dumps(self.ids)

    def recall(self, question, budget):
        return self.ids
"""


def test_a_plugins_own_folder_is_importable_without_shadowing_the_standard_library(tmp_path: Path, llm_env):
    folder = tmp_path / "my_memory"
    folder.mkdir()
    (folder / "my_memory.py").write_text(PLUGIN)
    (folder / "helpers.py").write_text("def pick(chat):\n    return [m.dia_id for m in chat.messages()][:3]\n")
    (folder / "json.py").write_text("raise RuntimeError('the plug-in folder shadowed the standard library')\n")
    (folder / "realtalk_cli").mkdir()
    (folder / "realtalk_cli" / "__init__.py").write_text("raise RuntimeError('the plug-in folder shadowed realtalk')\n")
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "run"), "--json"]
    result = runner.invoke(app, [*args, "--memory", f"{folder / 'my_memory.py'}:Helped"])
    assert result.exit_code == 0, result.output
    assert rows(tmp_path)[0]["retrieved"] == ["D1:1", "D1:2", "D1:3"]
    assert "json.py beside my_memory.py is not what `import json` finds there" in result.stderr


def test_budgets_of_models_without_a_known_tokenizer_are_counted_with_a_real_one():
    text = "a " * 100  # 100 tokens for a BPE tokenizer; 50 by 4 characters a token
    assert count_tokens(text, "offline-model") == (count_tokens(text, "gpt-4o")[0], False)
    assert count_tokens(text, "offline-model")[0] >= 100


def test_dense_encoding_says_what_it_encodes_one_line_when_not_on_a_terminal(tmp_path: Path, llm_env):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--context", "dense"]
    shown = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    [line] = [x for x in shown.stderr.splitlines() if x.startswith("encoding ")]
    assert line.startswith("encoding ") and "windows and messages of Chat_S_Ana_Ben with minilm" in line
    fresh = {"REALTALK_CACHE_DIR": str(tmp_path / "fresh-cache")}
    quiet = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--json"], env=fresh)
    assert quiet.exit_code == 0 and "encoding" not in quiet.stderr  # --json: nothing but the report
    assert (tmp_path / "fresh-cache" / "embeddings.sqlite").is_file()
    dry = runner.invoke(app, [*args, "--out", str(tmp_path / "c"), "--dry-run", "--embedder", "minilm"])
    assert dry.exit_code == 0 and "encoding" not in dry.stderr  # every window is in the cache by now


def test_an_absurd_id_is_quoted_short_in_the_warning_and_the_report(tmp_path: Path, llm_env):
    result = probe(tmp_path, "HugeId")
    assert result.exit_code == 0, result.output
    assert len(result.stderr) < 500 and "DDD..." in result.stderr
    assert json.loads(result.stdout)["memory"]["unknown_id_examples"] == ["D" * 37 + "..."]
