"""`realtalk report` against hostile input: names that break Markdown, LaTeX, CSV (formula injection) or the
terminal, `--common-only` with nothing in common, a report.json whose `complete` is no boolean, duplicate runs,
and outputs that would replace a run's own files."""

from __future__ import annotations

import csv
import json
import re
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import SAMPLE_JSON

runner = CliRunner()
EVIL = "a|b `c` <script>x</script> *em* [l](u) & % $ # _ { } ~ ^ \\ line\nbreak\r\tend"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REALTALK_CACHE_DIR", str(base / "cache"))
        result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "-o", str(base / "run")])
    assert result.exit_code == 0, result.output
    return base / "run"


def variant(base: Path, out: Path, model: str | None = None, category_name: str | None = None, **report) -> Path:
    """A copy of the base run with another model name, category name and report.json fields."""
    out.mkdir()
    rows = [json.loads(line) for line in (base / "predictions.jsonl").read_text().splitlines()]
    for r in rows:
        r["model"] = model or r["model"]
        if category_name and r["category"] == 2:
            r["category_name"] = category_name
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((base / "report.json").read_text())
    if model:
        summary["manifest"]["model"] = summary["manifest"]["parameters"]["model"] = model
    summary.update(report)
    (out / "report.json").write_text(json.dumps(summary))
    return out


def evil_run(base: Path, out: Path, name: str = EVIL) -> Path:
    run = variant(base, out, name, category_name=name, memory={"spec": name, "options": {"k": name}})
    summary = json.loads((run / "report.json").read_text())
    summary["manifest"]["judge_model"] = name
    summary["manifest"]["parameters"]["context"] = name
    (run / "report.json").write_text(json.dumps(summary))
    return run


def report(*args: str | Path):
    return runner.invoke(app, ["report", *map(str, args)])


def test_markdown_cells_keep_their_columns_and_show_names_as_written(base_run, tmp_path):
    from markdown_it import MarkdownIt

    run = evil_run(base_run, tmp_path / "evil")
    result = report(base_run, run, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    html = MarkdownIt("commonmark").enable("table").render(md)
    tables = re.findall(r"<table>(.*?)</table>", html, re.S)
    assert len(tables) == 4  # runs, F1, date-normalised F1, paired comparisons
    shown = EVIL.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    for table in tables:
        header = len(re.findall(r"<th[ >]", table))
        rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
        assert rows and all(len(re.findall(r"<td[ >]", row)) == header for row in rows)
    cells = [unescape(c) for c in re.findall(r"<td>(.*?)</td>", tables[0], re.S)]
    assert cells.count(shown) == 2  # model and judge, each as written (context and memory have more)
    assert "<script>" not in html and "<em>" not in html and "<a href" not in html


def test_latex_cells_escape_every_special_character(base_run, tmp_path):
    run = evil_run(base_run, tmp_path / "evil")
    assert report(base_run, run, "-o", tmp_path / "out").exit_code == 0
    tex = (tmp_path / "out" / "leaderboard.tex").read_text()
    body = [line for line in tex.splitlines() if line.startswith("a")]
    assert len(body) == 2  # one row per score table, each on one line
    row = body[0]
    assert row.count(" & ") == row.count("&") - row.count(r"\&")  # only the column separators are bare
    plain = re.sub(r"\\text[a-z]+\{\}|\\[&%$#_{}]", "", row.split(" & ")[0])
    assert not set(plain) & set("&%$#_{}~^\\<>|\r\t")
    assert r"\textless{}script\textgreater{}" in row and r"\textbar{}" in row


def test_html_report_never_shows_a_name_as_markup(base_run, tmp_path):
    run = evil_run(base_run, tmp_path / "evil", "<!--<script>alert(1)</script>")
    assert report(base_run, run, "-o", tmp_path / "out").exit_code == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert" not in page and "<!--" not in page.split('id="report-data"')[1]


def test_csv_text_cells_that_start_like_a_formula_are_quoted_and_numbers_stay_numbers(base_run, tmp_path):
    runs = [
        variant(base_run, tmp_path / name, model, category_name=model)
        for name, model in (("eq", '=HYPERLINK("http://x","y")'), ("plus", "+1"), ("minus", "-2+3"), ("at", "@SUM(A1)"))
    ]
    tab = variant(base_run, tmp_path / "tab", "\tx")
    result = report(*runs, tab, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    with (tmp_path / "out" / "leaderboard.csv").open(newline="") as f:
        table = list(csv.reader(f))
    header, rows = table[0], table[1:]
    models = [r[header.index("model")] for r in rows]
    assert models == ['\'=HYPERLINK("http://x","y")', "'+1", "'-2+3", "'@SUM(A1)", "'\tx"]
    assert not [cell for line in table for cell in line if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "f1 2 -2+3 mean" in header  # a header that starts with a letter is left alone
    assert float(rows[0][header.index("f1 overall mean")]) >= 0 and rows[0][header.index("answered")] == "6"


def test_common_only_with_no_common_question_is_a_usage_error(base_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    rows = [json.loads(line) for line in (base_run / "predictions.jsonl").read_text().splitlines()]
    for r in rows:
        r["question"] += " (another set)"
    (other / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = report(base_run, other, "-o", tmp_path / "out", "--common-only")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--common-only" in result.output and str(base_run) in result.output and str(other) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ['"no"', '"false"', "0", "1", "null", "[]"])
def test_a_complete_field_that_is_no_boolean_is_an_unreadable_report(base_run, tmp_path, value):
    run = variant(base_run, tmp_path / "run")
    text = (run / "report.json").read_text()
    (run / "report.json").write_text(text.replace('"complete": true', f'"complete": {value}'))
    result = report(run, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{run / 'report.json'}: 'complete' must be true or false" in result.output
    assert not (tmp_path / "out").exists()
    show = runner.invoke(app, ["probe", "show", str(run)])
    assert show.exit_code == 2 and "'complete' must be true or false" in show.output


def test_complete_false_or_missing_field_is_read_as_before(base_run, tmp_path):
    stopped = variant(base_run, tmp_path / "stopped", complete=False)
    old = variant(base_run, tmp_path / "old")
    summary = json.loads((old / "report.json").read_text())
    del summary["complete"]  # a run from before the field existed: judged by its predictions
    (old / "report.json").write_text(json.dumps(summary))
    result = report(stopped, old, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert [r["complete"] for r in json.loads(result.output)["runs"]] == [False, True]
