"""`realtalk report --reference FILE.toml`: published results shown marked beside the runs, never ranked; the
shipped example holds placeholders only; a malformed file is one line naming the file and the place, exit 2."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .conftest import ROOT, SAMPLE_JSON

runner = CliRunner()
EXAMPLE = ROOT / "configs" / "reference-example.toml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "bm25"
    result = runner.invoke(app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_example_holds_placeholders_only_and_every_result_cites_a_source():
    data = tomllib.loads(EXAMPLE.read_text())
    values = [v for r in data["result"] for table in r["scores"].values() for v in table.values()]
    assert values and set(values) == {0.0}
    assert all("PLACEHOLDER" in r["source"] and "placeholder" in r["system"] for r in data["result"])


def test_published_results_are_shown_marked_beside_the_runs_and_never_ranked(run_dir: Path, tmp_path: Path):
    ref = tmp_path / "published.toml"
    ref.write_text(
        '[[result]]\nsystem = "Sys"\ndataset = "realtalk"\nprotocol = "paper"\njudge = "paper/gpt-4o-mini"\n'
        'source = "Someone 2025, Table 9"\n[result.scores.f1]\nmulti-hop = 0.9\n"2 temporal" = 0.8\n'
        "single-hop = 0.7\noverall = 0.85\n"
    )
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", str(run_dir), "-o", str(out), "--reference", str(ref), "--json"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert [r["id"] for r in board["runs"]] == ["A"] and board["groups"][0]["runs"] == ["A"]
    (published,) = board["references"]
    assert published["columns"]["f1"] == {"1 multi-hop": 0.9, "2 temporal": 0.8, "overall": 0.85}
    assert published["other"]["f1"] == {"single-hop": 0.7}  # the runs have no single-hop category
    md = (out / "leaderboard.md").read_text()
    assert "## Published results (not measured here)" in md and "- R1: Someone 2025, Table 9" in md
    row = "| R1 (published) Sys: realtalk, paper, judge paper/gpt-4o-mini | 0.900 | 0.800 | - | 0.850 |"
    assert f"{row} single-hop 0.700 |" in md
    assert '"source":"Someone 2025, Table 9"' in (out / "report.html").read_text()
    shown = runner.invoke(app, ["report", str(run_dir), "-o", str(tmp_path / "rep2"), "--reference", str(EXAMPLE)])
    assert shown.exit_code == 0 and "not measured here" in shown.output and "PLACEHOLDER" in shown.output


BAD = {
    "no source": ('[[result]]\nsystem="S"\ndataset="d"\nprotocol="p"\njudge="none"\n[result.scores.f1]\noverall=0.5\n',
                  "result[0]: 'source' missing or empty (a citation is required)"),
    "a number for a category": (
        '[[result]]\nsystem="S"\ndataset="d"\nprotocol="p"\njudge="none"\nsource="x"\n[result.scores.f1]\n1=0.5\n',
        "result[0].scores.f1.1: write the category's name"),
    "a percentage": (
        '[[result]]\nsystem="S"\ndataset="d"\nprotocol="p"\njudge="none"\nsource="x"\n[result.scores.judge]\noverall=62.81\n',
        "62.81 is not a fraction from 0 to 1 (write 0.6281 for 62.81%)"),
    "an unknown score": (
        '[[result]]\nsystem="S"\ndataset="d"\nprotocol="p"\njudge="none"\nsource="x"\n[result.scores.bleu]\noverall=0.1\n',
        "result[0].scores.bleu: unknown score"),
    "a typo": ('[[result]]\nsystem="S"\ndataset="d"\nprotocol="p"\njudge="none"\nsoruce="x"\n', "unknown key 'soruce'"),
    "no scores": ('[[result]]\nsystem="S"\ndataset="d"\nprotocol="p"\njudge="none"\nsource="x"\n', "no [result.scores"),
    "not toml": ("[[result]\n", "malformed TOML"),
    "nothing": ("", "no [[result]] table"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD))
def test_a_malformed_reference_file_is_one_line_and_exit_2_with_nothing_written(run_dir, tmp_path, name):
    text, message = BAD[name]
    ref = tmp_path / "ref.toml"
    ref.write_text(text)
    result = runner.invoke(app, ["report", str(run_dir), "-o", str(tmp_path / "rep"), "--reference", str(ref)])
    assert result.exit_code == 2 and message in result.output and str(ref) in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()


def test_the_html_page_shows_published_results_and_corrected_golds_without_errors(run_dir: Path, tmp_path: Path):
    from .test_report_browser import _browser

    executable = _browser()
    from playwright.sync_api import sync_playwright

    errata = Path(__file__).parent / "data" / "errata_synthetic.json"
    args = ["report", str(run_dir), "-o", str(tmp_path / "rep"), "--reference", str(EXAMPLE), "--errata", str(errata)]
    assert runner.invoke(app, [*args, "--chats", str(SAMPLE_JSON)]).exit_code == 0
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto((tmp_path / "rep" / "report.html").as_uri())
        page.select_option("#board-metric", "f1_errata")
        assert page.locator("#leaderboards tbody tr").count() == 1
        assert "not measured here" in page.locator("#references").text_content()
        assert page.locator("#references table.published tbody tr").count() == 3  # R1 judge and f1_mem0, R2
        page.fill("#f-text", "vet")
        card = page.locator("article").first.text_content()
        assert "corrected gold (errata realtalk_Chat_S_Ana_Ben_qa2): 08 March, 2024" in card
        browser.close()
    assert errors == []
