"""`realtalk report`: leaderboard files, intervals, paired comparisons, bad input; the statistics themselves."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.report.stats import bootstrap_ci, paired_difference

from .conftest import LOCOMO_JSON, SAMPLE_JSON, needs_shared

runner = CliRunner()
OUTPUTS = ["leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.json", "report.html"]


def offline_run(out: Path, *extra: str) -> Path:
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REALTALK_CACHE_DIR", str(base / "cache"))
        return offline_run(base / "full"), offline_run(
            base / "retrieval", "--context", "retrieval", "--context-tokens", "500"
        )


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def test_report_over_two_offline_runs_writes_every_file_and_fits_80_columns(two_runs, tmp_path):
    result = runner.invoke(app, ["report", *map(str, two_runs), "-o", str(tmp_path / "rep")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(OUTPUTS)
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "F1: mean and 95% interval" in result.output and "B - A" in result.output
    board = json.loads((tmp_path / "rep" / "report.json").read_text())
    for run, entry in zip(two_runs, board["runs"], strict=True):
        f1 = [r["f1"] for r in rows(run)]
        overall = entry["scores"]["f1"]["overall"]
        assert overall["mean"] == pytest.approx(sum(f1) / len(f1))
        assert overall["n"] == 6 and overall["low"] <= overall["mean"] <= overall["high"]
        assert entry["path"] == str(run)
    assert board["runs"][1]["context"] == "retrieval 500 tokens"
    assert board["questions"] == {"union": 6, "common": 6, "same_set": True}
    assert board["comparisons"][0]["common"] == 6
    table = list(csv.DictReader((tmp_path / "rep" / "leaderboard.csv").open()))
    assert [r["id"] for r in table] == ["A", "B"] and float(table[0]["f1 overall mean"]) == pytest.approx(
        board["runs"][0]["scores"]["f1"]["overall"]["mean"]
    )
    tex = (tmp_path / "rep" / "leaderboard.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "offline:bm25 (retrieval 500 tokens, memory hybrid)" in tex
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert "| A | offline:bm25 | full |" in md and "Paired comparisons" in md


def test_report_is_reproducible_with_its_seed_and_json_matches_the_file(two_runs, tmp_path):
    args = ["report", *map(str, two_runs), "--resamples", "200", "--seed", "7", "--json"]
    first = runner.invoke(app, [*args, "-o", str(tmp_path / "a")])
    second = runner.invoke(app, [*args, "-o", str(tmp_path / "b")])
    assert first.exit_code == 0 and json.loads(first.output) == json.loads(second.output)
    assert json.loads(first.output) == json.loads((tmp_path / "a" / "report.json").read_text())
    assert json.loads(first.output)["settings"]["resamples"] == 200


def test_runs_over_different_questions_are_compared_on_their_intersection(two_runs, tmp_path):
    short = offline_run(tmp_path / "short", "--limit", "4")
    result = runner.invoke(app, ["report", str(two_runs[0]), str(short), "-o", str(tmp_path / "rep"), "--json"])
    board = json.loads(result.output)
    assert board["questions"] == {"union": 6, "common": 4, "same_set": False}
    assert board["comparisons"][0]["common"] == 4
    assert "4 of 6 were answered by every run" in (tmp_path / "rep" / "leaderboard.md").read_text()
    common = runner.invoke(
        app, ["report", str(two_runs[0]), str(short), "-o", str(tmp_path / "c"), "--common-only", "--json"]
    )
    assert json.loads(common.output)["runs"][0]["answered"] == 4


def test_judge_and_date_normalised_scores_are_read_when_present(two_runs, tmp_path):
    run = tmp_path / "judged"
    run.mkdir()
    lines = rows(two_runs[0])
    for i, r in enumerate(lines):
        r["judge_score"] = float(i % 2)
        r["f1_date_normalised"] = 0.5
    lines[0]["error"], lines[0]["f1"] = "timeout", None  # a failed question
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "report.json").write_text(json.dumps({"manifest": {"model": "m", "judge_model": "j"}, "complete": False}))
    board = json.loads(runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "r"), "--json"]).output)
    entry = board["runs"][0]
    assert list(board["metrics"]) == ["f1", "f1_date_normalised", "judge_score"]
    assert entry["scores"]["judge_score"]["overall"] == pytest.approx(
        {
            "mean": 0.6,
            "low": entry["scores"]["judge_score"]["overall"]["low"],
            "high": entry["scores"]["judge_score"]["overall"]["high"],
            "n": 5,
        }
    )
    assert entry["failed"] == 1 and entry["complete"] is False and entry["judge"] == "j"


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such run directory"),
        (lambda d: d.mkdir(), "not a run directory (no predictions.jsonl)"),
        (lambda d: (d.mkdir(), (d / "predictions.jsonl").write_text('{"chat": 1}\nnot json\n')), "line 2: not valid"),
        (lambda d: (d.mkdir(), (d / "predictions.jsonl").write_text('{"chat": "x"}\n')), "row 1: missing"),
        (
            lambda d: (d.mkdir(), (d / "predictions.jsonl").write_text(""), (d / "report.json").write_text("{")),
            "malformed JSON",
        ),
    ],
)
def test_bad_run_directories_are_one_line_and_exit_2(tmp_path, setup, message):
    run = tmp_path / "run"
    setup(run)
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("qa_index", "zz", "'qa_index' must be an integer"),
        ("chat", [1], "'chat' must be a string"),
        ("f1", "0.5", "'f1' must be a number"),
        ("f1", 1e308, "'f1' 1e+308 is outside 0..1"),
        ("judge_score", 7, "'judge_score' 7 is outside 0..1"),
        ("prompt_tokens", 10**30, "'prompt_tokens' must be a non-negative number"),
        ("cost_usd", "x", "'cost_usd' must be a non-negative number"),
    ],
)
@pytest.mark.parametrize("command", ["report", "show"])
def test_rows_with_wrong_types_or_impossible_numbers_are_one_line_and_exit_2(
    two_runs, tmp_path, field, value, message, command
):
    run = tmp_path / "run"
    run.mkdir()
    bad = rows(two_runs[0])
    bad[1][field] = value
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    args = ["report", str(run), "-o", str(tmp_path / "out")] if command == "report" else ["probe", "show", str(run)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"row 2: {message}" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--seed", "-1"), ("--resamples", "-5"), ("--resamples", "1000000000")])
def test_absurd_seeds_and_resample_counts_are_usage_errors(two_runs, tmp_path, flag, value):
    result = runner.invoke(app, ["report", str(two_runs[0]), "-o", str(tmp_path / "o"), flag, value])
    assert result.exit_code == 2 and flag in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_existing_outputs_need_force_and_run_directories_are_never_written(two_runs, tmp_path):
    run = tmp_path / "torn"
    run.mkdir()
    raw = (two_runs[0] / "predictions.jsonl").read_bytes() + b'{"chat": "Chat_S'  # killed mid-line
    (run / "predictions.jsonl").write_bytes(raw)
    assert runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")]).exit_code == 0
    assert (run / "predictions.jsonl").read_bytes() == raw
    again = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert again.exit_code == 2 and "already exists (use --force" in again.output
    assert runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out"), "--force"]).exit_code == 0
    into_run = runner.invoke(app, ["report", str(two_runs[0]), "-o", str(two_runs[0]), "--force"])
    assert into_run.exit_code == 2 and "would be replaced" in into_run.output


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = [0.0, 1.0] * 50
    a, b = bootstrap_ci(values, 500, seed=3), bootstrap_ci(values, 500, seed=3)
    assert a == b and a["low"] < 0.5 < a["high"] and a["n"] == 100
    assert bootstrap_ci([0.7] * 10, 100) == {
        "mean": pytest.approx(0.7),
        "low": pytest.approx(0.7),
        "high": pytest.approx(0.7),
        "n": 10,
    }
    assert bootstrap_ci([None, None], 100)["mean"] is None


def test_paired_permutation_p_value_matches_exact_enumeration():
    a = [0.9, 0.8, 0.4, 0.7, 0.6, 0.3, 0.9]
    b = [0.5, 0.6, 0.5, 0.2, 0.6, 0.1, 0.4]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    observed = abs(sum(diffs))
    flips = list(itertools.product([1, -1], repeat=len(diffs)))
    exact = sum(abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12 for signs in flips)
    result = paired_difference(a, b, resamples=20000, seed=1)
    assert result["p"] == pytest.approx(exact / len(flips), abs=0.01)
    assert result["mean"] == pytest.approx(sum(diffs) / len(diffs))
    assert paired_difference(a, a, 100)["p"] == 1.0


def test_probe_html_writes_the_explorer_into_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    run = offline_run(tmp_path / "run", "--html")
    page = (run / "report.html").read_text()
    assert "Ana" in page and "When did Ana take Miso to the vet?" in page and "<script src" not in page


def test_probe_show_prints_selected_questions_with_their_evidence(two_runs):
    from realtalk_cli.data.formats import load_chat

    chat = load_chat(SAMPLE_JSON)
    run = str(two_runs[1])
    result = runner.invoke(app, ["probe", "show", run, "--category", "temporal"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "2 questions" in result.output and chat.qa[2].question in result.output
    vet = chat.resolve(chat.qa[2].evidence[0])
    assert " ".join(vet.clean_text.split()) in " ".join(result.output.split()) and vet.date_time in result.output
    assert "[retrieved]" in result.output or "[not retrieved]" in result.output
    items = json.loads(runner.invoke(app, ["probe", "show", run, "--question", "0", "--json"]).output)
    assert [i["qa_index"] for i in items] == [0] and items[0]["evidence"][0]["speaker"] in chat.speakers
    wrong = json.loads(runner.invoke(app, ["probe", "show", run, "--wrong", "--json"]).output)
    assert {i["qa_index"] for i in wrong} == {r["qa_index"] for r in rows(two_runs[1]) if r["f1"] < 0.5}
    bad = runner.invoke(app, ["probe", "show", run, "--category", "nonsense"])
    assert bad.exit_code == 2 and "no such category" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["probe", "show", run, "--chat", "Chat_X"])
    assert bad.exit_code == 2 and "Chat_S_Ana_Ben" in bad.output


def test_report_over_simulate_runs_compares_them_target_by_target(tmp_path, llm_env):
    from .conftest import model_run_args
    from .llm_server import FakeLLM, serve_llm

    runs = []
    for name, reply in (("echo", "see you at the vet tomorrow"), ("short", "ok")):
        with serve_llm(FakeLLM(reply=lambda body, reply=reply: reply)) as url:
            args = model_run_args("simulate", url, tmp_path / name, "--no-bertscore", "--limit", "8")
            result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / name)
    result = runner.invoke(app, ["report", *map(str, runs), "-o", str(tmp_path / "rep")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    board = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert board["kind"] == "simulate" and "rouge_l" in board["metrics"] and "bertscore" not in board["metrics"]
    assert board["questions"]["common"] == 8 and board["comparisons"][0]["common"] == 8
    rouge = [r["rouge_l"] for r in rows(runs[0])]
    assert board["runs"][0]["scores"]["rouge_l"]["overall"]["mean"] == pytest.approx(sum(rouge) / len(rouge))
    assert (tmp_path / "rep" / "report.html").exists()
    mixed = runner.invoke(
        app, ["report", str(runs[0]), str(offline_run(tmp_path / "probe")), "-o", str(tmp_path / "x")]
    )
    assert mixed.exit_code == 2 and "report them separately" in mixed.output


@needs_shared
def test_locomo_evidence_is_dated_by_its_session(tmp_path, monkeypatch):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    chat = LOCOMO_JSON[0]
    result = runner.invoke(
        app, ["probe", str(chat), "--model", "offline:bm25", "-o", str(tmp_path / "run"), "--limit", "3"]
    )
    assert result.exit_code == 0, result.output
    items = json.loads(runner.invoke(app, ["probe", "show", str(tmp_path / "run"), "--json"]).output)
    dates = [e["date"] for i in items for e in i["evidence"] if e["found"]]
    assert dates and all(d.startswith("session ") and " on " in d for d in dates)  # "session 1, 1:56 pm on 8 May, 2023"


def test_a_simulate_row_with_a_speaker_that_is_not_a_string_is_exit_2(tmp_path):
    run = tmp_path / "sim"
    run.mkdir()
    row = {"chat": "c", "position": 1, "reference": "hi", "prediction": "yo", "rouge_l": 0.5, "speaker": ["A"]}
    (run / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "row 1: 'speaker' must be a string" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("number", ["99", "-1"])
def test_probe_show_with_a_question_the_run_does_not_have_is_exit_2(two_runs, number):
    result = runner.invoke(app, ["probe", "show", str(two_runs[0]), "--question", number])
    assert result.exit_code == 2 and f"--question {number}: no such question" in result.output


def test_a_run_with_only_categories_1_3_beside_one_with_more_gets_its_overall_1_3(two_runs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    changed = rows(two_runs[0])
    for r in changed:
        r["question"] += " (other set)"  # no question in common with the first run
    changed[0]["category"], changed[0]["category_name"] = 4, "single-hop"
    (other / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    result = runner.invoke(app, ["report", str(two_runs[0]), str(other), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "out" / "report.json").read_text())
    first = board["runs"][0]["scores"]["f1"]["overall (1-3)"]
    assert first["n"] == len(rows(two_runs[0])) and first["mean"] is not None
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    nothing_in_common = [line for line in md.splitlines() if line.startswith("| B - A | 0 |")]
    assert nothing_in_common and not any("n.s." in line for line in nothing_in_common)


def test_rich_markup_in_run_text_and_paths_is_printed_literally(two_runs, tmp_path):
    run = tmp_path / "markup"
    run.mkdir()
    changed = rows(two_runs[0])
    changed[0]["prediction"] = "[/] [bold]BIG[/bold] :smile:"
    changed[0]["question"] = "[/q] Q?"
    changed[1]["category_name"] = "[/x]"
    changed[2]["chat"] = "[/y]"
    for r in changed:
        r["model"] = "[/z]"
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    report = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert report.exit_code == 0, report.output
    assert "[/z]" in report.output and "[/x]" in report.output
    show = runner.invoke(app, ["probe", "show", str(run)])
    assert show.exit_code == 0, show.output
    assert "[/] [bold]BIG[/bold] :smile:" in show.output and "[/q] Q?" in show.output and "[/y]" in show.output
    missing = runner.invoke(app, ["report", str(tmp_path / "[/w]"), "-o", str(tmp_path / "out2")])
    assert missing.exit_code == 2 and "[/w]: no such run directory" in missing.output


@pytest.mark.parametrize("wall", ['"abc"', "1e308", "-5", "[1]"])
def test_a_run_report_with_a_wall_time_that_is_no_duration_shows_it_as_missing(two_runs, tmp_path, wall):
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text((two_runs[0] / "predictions.jsonl").read_text())
    (run / "report.json").write_text(f'{{"run": {{"wall_time_s": {wall}}}}}')
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "report.json").read_text())["runs"][0]["wall_time_s"] is None
