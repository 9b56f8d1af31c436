"""Hostile inputs to `--memory` plug-ins and one-line errors (review of issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("name", ["we[/ird]", "[bold]x", "nope.py:X:"])
def test_error_lines_print_file_names_literally(tmp_path: Path, name):
    missing = tmp_path / name / "chat.json"
    result = runner.invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(missing) in result.output.replace("\n", "")
