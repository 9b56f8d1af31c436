"""Review of issue 9 across the features that landed on it: attacks that found bugs, kept as tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON

runner = CliRunner()


def _bm25_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    ("field", "value"),
    [("f1", "high"), ("judge_score", [1]), ("qa_index", "3"), ("chat", ["a"]), ("question", {"q": 1})],
)
def test_report_and_probe_show_name_a_row_with_a_wrong_typed_field(tmp_path: Path, field: str, value):
    out = _bm25_run(tmp_path)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    rows[2][field] = value
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for args in (["report", str(out), "--out", str(tmp_path / "rep")], ["probe", "show", str(out)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "row 3" in result.output and field in result.output


def test_a_memory_that_fails_before_any_answer_leaves_no_folder(tmp_path: Path):
    out = tmp_path / "run"
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)]
    failed = runner.invoke(app, [*args, "--memory", "session-summaries"])  # a REALTALK chat has no summaries
    assert failed.exit_code == 2 and "session_summary" in failed.output
    assert not out.exists()
    assert runner.invoke(app, args).exit_code == 0  # the folder is not claimed by the run that never ran
