"""leaderboard.tex fits an 11 pt one-column page: compiled with pdflatex when a TeX is installed, no box too
wide; its first line names the packages it needs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

runner = CliRunner()
NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def locomo_run(path: Path, model: str, judge: str | None) -> Path:
    """A saved LoCoMo run of every category (two questions each), with a long model name."""
    path.mkdir()
    rows = []
    for i in range(10):
        category = i // 2 + 1
        rows.append(
            {
                "chat": "Chat_1_Caroline_Melanie", "dataset": "locomo", "qa_index": i, "question": f"q{i}?",
                "answer": "a", "category": category, "category_name": NAMES[category], "prediction": "a",
                "f1": (i % 3) / 2, "f1_date_normalised": (i % 3) / 2, "model": model, "error": None,
                "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.0,
                **({"judge_score": float(i % 2), "judge_model": judge} if judge else {}),
            }
        )  # fmt: skip
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"model": model, "judge_model": judge, "parameters": {"context": "retrieval", "context_tokens": 2700}}
    (path / "report.json").write_text(json.dumps({"manifest": manifest, "complete": True}))
    return path


def test_the_leaderboard_names_its_packages_and_fits_the_line_width(tmp_path: Path):
    model = "openrouter:meta-llama/llama-3.1-405b-instruct-with-a-very-long-name"
    runs = [locomo_run(tmp_path / n, model, "openai:gpt-4o-2024-08-06") for n in ("a", "b")]
    assert runner.invoke(app, ["report", *map(str, runs), "-o", str(tmp_path / "out")]).exit_code == 0
    tex = (tmp_path / "out" / "leaderboard.tex").read_text()
    assert tex.splitlines()[0] == r"% \usepackage{booktabs,tabularx}"
    if not shutil.which("pdflatex"):
        pytest.skip("no pdflatex: the table is checked only as text here")
    document = tmp_path / "doc.tex"
    document.write_text(
        "\\documentclass[11pt]{article}\n\\usepackage{booktabs,tabularx}\n\\begin{document}\n"
        + tex
        + "\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log, [line for line in log.splitlines() if "Overfull" in line]
