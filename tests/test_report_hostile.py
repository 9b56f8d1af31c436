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
    assert len(tables) == 5  # runs; F1 and date-normalised F1 of each group (the evil run names a judge: its own)
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


def test_only_complete_true_in_report_json_makes_a_run_complete(base_run, tmp_path):
    done = variant(base_run, tmp_path / "done")
    stopped = variant(base_run, tmp_path / "stopped", complete=False, incomplete={"reason": "stopped at --max-cost"})
    old = variant(base_run, tmp_path / "old")
    summary = json.loads((old / "report.json").read_text())
    del summary["complete"]
    (old / "report.json").write_text(json.dumps(summary))
    killed = variant(base_run, tmp_path / "killed")  # killed before its end: report.json is written last
    (killed / "report.json").unlink()
    result = report(done, stopped, old, killed, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert [r["complete"] for r in runs] == [True, False, False, False]
    assert runs[0]["incomplete"] is None and runs[1]["incomplete"] == "stopped at --max-cost"
    assert "does not say" in runs[2]["incomplete"] and "no report.json" in runs[3]["incomplete"]
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| 6 (incomplete) |" in md and "Incomplete runs: B: stopped at --max-cost; C: " in md
    assert "no report.json" in (tmp_path / "out" / "report.html").read_text()


def test_terminal_control_sequences_in_run_text_are_shown_not_obeyed(base_run, tmp_path):
    run = variant(base_run, tmp_path / "esc", "m\x1b]0;pwned\x07\x1b[2J\x9b31m")
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    rows[0]["prediction"] = "\x1b[31mRED\x1b[0m"  # a reply from an endpoint is text, not terminal commands
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")], env={"COLUMNS": "200"})
    show = runner.invoke(app, ["probe", "show", str(run), "--question", "0"], env={"COLUMNS": "200"})
    for output in (result.output, show.output):
        assert "\x1b" not in output and "\x9b" not in output and "\x07" not in output
    assert result.exit_code == 0 and "m␛]0;pwned␇␛[2J\ufffd31m" in result.output
    assert show.exit_code == 0 and "␛[31mRED␛[0m" in show.output
    missing = runner.invoke(app, ["report", str(tmp_path / "x\x1b[2J"), "-o", str(tmp_path / "o2")])
    assert missing.exit_code == 2 and "\x1b" not in missing.output and "x␛[2J: no such run directory" in missing.output


def test_an_output_directory_that_is_another_run_is_refused_even_with_force(base_run, tmp_path):
    other = variant(base_run, tmp_path / "other")
    before = (other / "report.json").read_bytes()
    result = report(base_run, "-o", other, "--force")
    assert result.exit_code == 2 and f"{other} is a run directory" in result.output
    assert (other / "report.json").read_bytes() == before and not (other / "leaderboard.md").exists()
    inside = report(base_run, "-o", other / "reports")  # a folder of its own inside a run is the user's choice
    assert inside.exit_code == 0 and (other / "reports" / "leaderboard.md").exists()


def test_an_output_name_taken_by_a_directory_is_refused_before_anything_is_written(base_run, tmp_path):
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)
    result = report(base_run, "-o", out, "--force")
    assert result.exit_code == 2 and f"{out / 'report.html'}: exists and is not a file" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_the_same_run_given_twice_is_a_usage_error(base_run, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(base_run)
    for again in (base_run, Path(f"{base_run}/"), base_run / ".." / base_run.name, link):
        result = report(base_run, again, "-o", tmp_path / "out")
        assert result.exit_code == 2 and "given twice" in result.output and str(base_run) in result.output
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["predictions.jsonl", "report.json"])
def test_a_run_file_that_is_no_regular_file_is_exit_2_not_a_hang(base_run, tmp_path, name):
    run = variant(base_run, tmp_path / "run")
    (run / name).unlink()
    (run / name).symlink_to("/dev/null")  # a FIFO or /dev/zero would block or fill memory the same way
    result = report(run, "-o", tmp_path / "out")
    assert result.exit_code == 2 and f"{run / name}: not a regular file" in result.output
    assert not (tmp_path / "out").exists()


def test_latex_rows_tell_runs_apart_by_memory_and_judge(base_run, tmp_path):
    plain = variant(base_run, tmp_path / "plain")
    judged = variant(base_run, tmp_path / "judged")
    summary = json.loads((judged / "report.json").read_text())
    summary["manifest"]["judge_model"] = "gpt-4o"
    summary["memory"] = {"spec": "hybrid", "options": {"k": 20}}
    (judged / "report.json").write_text(json.dumps(summary))
    assert report(plain, judged, "-o", tmp_path / "out").exit_code == 0
    rows = [line.split(" & ")[0] for line in (tmp_path / "out" / "leaderboard.tex").read_text().splitlines()]
    assert "offline:bm25 (full)" in rows and "offline:bm25 (full, memory hybrid k=20, judge gpt-4o)" in rows


def test_a_run_killed_before_its_first_line_is_reported_beside_runs_of_either_kind(tmp_path):
    sim = tmp_path / "sim"
    sim.mkdir()
    row = {"chat": "c", "position": 1, "reference": "hi", "prediction": "yo", "rouge_l": 0.5, "speaker": "A"}
    (sim / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "predictions.jsonl").write_text("")
    result = report(sim, empty, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["kind"] == "simulate" and [r["answered"] for r in board["runs"]] == [1, 0]
    assert board["runs"][1]["complete"] is False


def test_json_output_keeps_control_characters_exactly(base_run, tmp_path):
    name = "m\x7f\x9b31m\x1b[2J"
    run = variant(base_run, tmp_path / "run", name)
    result = report(run, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0 and "\x9b" not in result.output and "\x1b" not in result.output
    assert json.loads(result.output)["runs"][0]["model"] == name


def test_a_chat_given_with_chats_that_is_not_the_runs_file_is_flagged(base_run, tmp_path):
    same, changed = tmp_path / "same", tmp_path / "changed"
    for folder, extra in ((same, ""), (changed, "\n")):
        folder.mkdir()
        (folder / SAMPLE_JSON.name).write_text(SAMPLE_JSON.read_text() + extra)
    for folder, flagged in ((same, False), (changed, True)):
        out = tmp_path / f"out-{folder.name}"
        assert report(base_run, "-o", out, "--chats", folder / SAMPLE_JSON.name).exit_code == 0
        page = (out / "report.html").read_text()
        assert ("not the file run A was made with" in page) is flagged
