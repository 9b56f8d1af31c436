"""report.html in a real headless browser (Debian's chromium driven by Playwright): it loads without console
errors, its filters change what is shown, sorting works, and a known question's evidence text appears.

`make test` installs chromium when it runs as root; elsewhere this test is skipped with the reason, except in
CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat

from .conftest import SAMPLE_JSON

runner = CliRunner()


def _browser() -> str:
    """The chromium executable, or skip (fail under CI) saying what is missing."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    path = os.environ.get("REALTALK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if reason is None and path is None:
        reason = "no chromium on PATH (as root: apt-get install chromium; `make test` does this)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> tuple[Path, list[list[dict]]]:
    base = tmp_path_factory.mktemp("browser")
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REALTALK_CACHE_DIR", str(base / "cache"))
        for name, extra in (("full", []), ("retrieval", ["--context", "retrieval", "--top-k", "3"])):
            result = runner.invoke(
                app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(base / name), *extra]
            )
            assert result.exit_code == 0, result.output
            runs.append(base / name)
    # A third run whose first question names an evidence id the chat does not have.
    dangling = base / "dangling"
    dangling.mkdir()
    rows = [json.loads(line) for line in (runs[0] / "predictions.jsonl").read_text().splitlines()]
    rows[0]["evidence"] = ["D99:1"]
    rows[0].pop("evidence_ids", None)  # as a run from before the evidence parser wrote them
    rows[0].pop("evidence_dangling", None)
    rows[0]["question"] = "A question with a dangling evidence id?"
    rows[0]["prediction"] = "</script><b>not bold</b> @@DATA@@"  # text from a run is shown, never run or parsed
    rows[0]["judges"] = {"realtalk/j": {"score": 1.0, "error": None}, "<i>mem0</i>/j": {"score": 0.0, "error": None}}
    (dangling / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((runs[0] / "report.json").read_text())
    summary["manifest"]["model"] = "<!--<script>"  # once kept the data's <script> element open: an empty page
    (dangling / "report.json").write_text(json.dumps(summary))
    result = runner.invoke(app, ["report", *map(str, runs), str(dangling), "-o", str(base / "rep")])
    assert result.exit_code == 0, result.output
    predictions = [[json.loads(line) for line in (r / "predictions.jsonl").read_text().splitlines()] for r in runs]
    return base / "rep" / "report.html", predictions


@pytest.fixture(scope="module")
def browser_page(page_file):
    executable = _browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # No network: any request that is not the file itself fails (and would show as a console error).
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto(page_file[0].as_uri())
        yield page, errors
        browser.close()


def shown(page) -> int:
    return page.locator("#questions article").count()


def test_page_loads_offline_without_console_errors(browser_page):
    page, errors = browser_page
    assert errors == []
    assert page.locator("#leaderboards tbody tr").count() == 3
    assert "<!--<script>" in page.locator("#leaderboards").text_content()
    assert page.locator("#count").text_content().startswith("7 of 7 questions match")
    assert page.locator("svg.chart rect").count() > 0


def test_filters_change_what_is_shown(browser_page, page_file):
    page, errors = browser_page
    full, retrieval = page_file[1]
    page.select_option("#f-category", "2 temporal")
    assert shown(page) == 2
    page.select_option("#f-category", "")
    page.select_option("#f-chat", "Chat_S_Ana_Ben")
    assert shown(page) == 7
    page.fill("#f-below", "0.3")
    page.select_option("#f-run", "B")
    assert shown(page) == sum(r["f1"] < 0.3 for r in retrieval)
    page.fill("#f-below", "")
    page.select_option("#f-run", "")
    page.select_option("#f-wrong", "A")
    page.select_option("#f-right", "B")
    expected = sum(a["f1"] < 0.5 <= b["f1"] for a, b in zip(full, retrieval, strict=True))
    assert shown(page) == expected
    page.select_option("#f-right", "")
    assert shown(page) == sum(a["f1"] < 0.5 for a in full) > 0
    page.select_option("#f-by", "judge")  # these runs have no judge scores: nothing is right or wrong by it
    assert shown(page) == 0
    page.select_option("#f-by", "f1")
    page.select_option("#f-wrong", "")
    page.select_option("#f-right", "")
    page.fill("#f-text", "vet")
    assert shown(page) == 1
    page.fill("#f-text", "")
    assert shown(page) == 7 and errors == []


def test_known_question_shows_its_evidence_in_full_and_flags_dangling_ids(browser_page):
    page, _ = browser_page
    chat = load_chat(SAMPLE_JSON)
    qa = chat.qa[2]  # "When did Ana take Miso to the vet?"
    message = chat.resolve(qa.evidence[0])
    card = page.locator("article", has_text=qa.question)
    evidence = card.locator(f'ol.evidence > li[data-dia-id="{qa.evidence[0]}"]').first
    assert message.clean_text in evidence.text_content()
    assert message.speaker in evidence.text_content() and message.date_time in evidence.text_content()
    assert evidence.locator(".hit, .miss").count() == 1  # retrieval's hit or miss for run B
    dangling = page.locator("article", has_text="A question with a dangling evidence id?")
    assert "dangling id" in dangling.locator('li[data-dia-id="D99:1"]').text_content()
    assert "</script><b>not bold</b> @@DATA@@" in dangling.locator("td.pred").first.text_content()
    assert dangling.locator("b", has_text="not bold").count() == 0
    judges = dangling.locator("tr[data-run=C] td.num").nth(2).text_content()  # a score per judge, named
    assert "1.00 realtalk/j" in judges and "0.00 <i>mem0</i>/j" in judges


def test_leaderboard_sorts_by_a_clicked_column(browser_page):
    page, _ = browser_page
    page.click('#leaderboard th[data-column="run"]')
    assert page.locator("#leaderboard tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)") == ["A", "B"]
    page.click('#leaderboard th[data-column="run"]')
    assert page.locator("#leaderboard tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)") == ["B", "A"]


def test_runs_over_other_items_stand_in_a_table_of_their_own_that_says_why(browser_page):
    """The dangling run changed a question: another item set, so its own group and table."""
    page, _ = browser_page
    assert page.locator("#leaderboard-G2 tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)") == ["C"]
    assert "ranked apart from G1" in page.locator("#leaderboard-G2 caption").text_content()
    assert "Group G1" in page.locator("#leaderboard caption").text_content()
