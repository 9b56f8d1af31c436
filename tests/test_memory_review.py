"""Hostile inputs to `--memory` plug-ins and one-line errors (review of issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON

runner = CliRunner()

MEMORIES = """
from realtalk_cli.tasks.memory import Passage

class Base:
    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        return self.ids[:3]

class InitRaises(Base):
    def __init__(self):
        raise ValueError("no database configured")

class IdsNone(Base):
    def recall(self, question, budget):
        return [Passage("x", None)]

class IdsString(Base):
    def recall(self, question, budget):
        return [Passage("x", "D1:1")]

class TextNotString(Base):
    def recall(self, question, budget):
        return [Passage(12345, ["D1:1"])]

class ClaimsUnknownIds(Base):
    def recall(self, question, budget):
        return [Passage("a fact", ["D99:1", " D98:2 "])]

class ClaimsPaddedIds(Base):
    def recall(self, question, budget):
        return [Passage("a fact", [" D1:6 ", "D1:9"])]

class PropertyVersion(Base):
    @property
    def version(self):
        return "3"

class ZeroVersion(Base):
    version = 0
"""


def probe(tmp_path: Path, spec: str, out: str = "run"):
    path = tmp_path / "mems.py"
    path.write_text(MEMORIES)
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / out), "--json"]
    return runner.invoke(app, [*args, "--memory", f"{path}:{spec}"])


def rows(tmp_path: Path, out: str = "run") -> list[dict]:
    return [json.loads(x) for x in (tmp_path / out / "predictions.jsonl").read_text().splitlines()]


def test_a_memory_raising_in_init_is_one_line_exit_2(tmp_path: Path, llm_env):
    result = probe(tmp_path, "InitRaises")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "InitRaises" in result.output and "no database configured" in result.output


@pytest.mark.parametrize("spec", ["IdsNone", "IdsString", "TextNotString"])
def test_a_passage_of_wrong_types_is_one_line_exit_2(tmp_path: Path, llm_env, spec):
    result = probe(tmp_path, spec)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"mems.py:{spec}" in result.output and "Passage" in result.output


def test_passage_claims_of_ids_that_name_no_message_are_unknown_not_recall_0(tmp_path: Path, llm_env):
    result = probe(tmp_path, "ClaimsUnknownIds")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["memory"]["unknown_ids"] == 2 * len(rows(tmp_path))
    assert all(r["recall"] is None and r["retrieved"] == [] for r in rows(tmp_path))


def test_passage_claims_are_matched_like_message_ids(tmp_path: Path, llm_env):
    result = probe(tmp_path, "ClaimsPaddedIds")
    assert result.exit_code == 0, result.output
    first = rows(tmp_path)[0]  # evidence D1:6, D1:9, D3:1
    assert first["retrieved"] == ["D1:6", "D1:9"]
    assert first["recall"] == pytest.approx(2 / 3)


def test_a_version_property_is_refused_rather_than_a_new_identity_each_run(tmp_path: Path, llm_env):
    result = probe(tmp_path, "PropertyVersion")
    assert result.exit_code == 2, result.output
    assert "version" in result.output and "Traceback" not in result.output


def test_version_0_is_a_version(tmp_path: Path, llm_env):
    result = probe(tmp_path, "ZeroVersion")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["memory"]["version"] == "0"


@pytest.mark.parametrize("name", ["we[/ird]", "[bold]x", "nope.py:X:"])
def test_error_lines_print_file_names_literally(tmp_path: Path, name):
    missing = tmp_path / name / "chat.json"
    result = runner.invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(missing) in result.output.replace("\n", "")
