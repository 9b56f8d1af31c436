"""`realtalk report` at scale: intervals computed together are bit-identical to the plain algorithm, runs are read
as columns with the latest line of each item, and a long question list goes to report-data/, which the page
loads from file:// in a real browser; report-data/ is replaced, removed and refused as an output should be."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.report import explorer
from realtalk_cli.report.runs import load_run, load_runs
from realtalk_cli.scoring import stats

from .conftest import SAMPLE_JSON
from .test_report_browser import _browser

runner = CliRunner()


# --- the plain algorithm, one sample at a time (as realtalk computed it before the batched version) ----------


def plain_bootstrap(values, resamples, seed, level=0.95):
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if len(data) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(data.mean())
    if len(data) == 1 or resamples <= 0:
        return {"mean": mean, "low": None, "high": None, "n": len(data)}
    rng, n = np.random.default_rng(seed), len(data)
    means, step = np.empty(resamples), max(1, stats.CHUNK // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = data[rng.integers(0, n, size=(stop - start, n), dtype=np.uint32)].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": mean, "low": float(low), "high": float(high), "n": len(data)}


def plain_paired(a, b, resamples, seed):
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    out = plain_bootstrap(list(diffs), resamples, seed)
    out["p"] = None
    if len(diffs) == 0 or resamples <= 0:
        return out
    moving = diffs[diffs != 0]
    if len(moving) == 0:
        out["p"] = 1.0
        return out
    observed, rng, n, extreme = abs(moving.sum()), np.random.default_rng(seed + 1), len(moving), 0
    step = max(1, stats.CHUNK // n)
    for start in range(0, resamples, step):
        rows = min(resamples, start + step) - start
        signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8) * 2 - 1
        extreme += int(np.count_nonzero(np.abs((signs * moving).sum(axis=1)) >= observed - 1e-9))
    out["p"] = (1 + extreme) / (1 + resamples)
    return out


def samples(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Continuous scores, a judge's 0/1, differences of those, halves, wide integers, a constant and -0.0."""
    return [
        rng.random(n),
        (rng.random(n) < 0.4).astype(float),
        np.round(rng.random(n) * 3) / 3,
        np.round(rng.random(n) * 4) / 4,
        np.round(rng.random(n) * 200) - 100,
        np.sign(rng.random(n) - 0.5) * (rng.random(n) < 0.5),
        np.full(n, 0.75),
        -np.zeros(n),
    ]


@pytest.mark.parametrize("coins", [True, False], ids=["coins from raw bits", "coins from integers"])
def test_intervals_computed_together_are_bit_identical_to_the_plain_algorithm(monkeypatch, coins):
    monkeypatch.setattr(stats, "CHUNK", 2_000)  # several draws per sample, as a 250,000-item sample has
    monkeypatch.setattr(stats, "_THREADS_FROM", 0)  # and the threads, however small the work
    if not coins:
        monkeypatch.setattr(stats, "_signs_from_bytes", lambda: False)
    rng = np.random.default_rng(7)
    groups = [samples(n, rng) for n in (1, 2, 3, 8, 129, 1_001)]
    pool = [s for g in groups for s in g] + [np.array([0.5, np.nan, 0.25])]  # NaN: a row without the score
    combos = ((0, 1), (1, 5), (1, 1), (2, 3), (3, 6), (4, 5), (0, 0), (7, 0), (1, 6), (5, 2))
    pairs = [(g[i], g[j]) for g in groups for i, j in combos]
    for resamples, seed in ((0, 0), (1, 3), (257, 0), (400, 11)):
        cis, paired = stats.intervals(pool, pairs, resamples, seed)
        want = [plain_bootstrap([None if np.isnan(v) else v for v in s], resamples, seed) for s in pool]
        assert cis == want
        assert paired == [plain_paired(a, b, resamples, seed) for a, b in pairs]
        assert stats.bootstrap_many(pool, resamples, seed) == want
        assert [stats.paired_difference(list(a), list(b), resamples, seed) for a, b in pairs[:5]] == paired[:5]


def test_coins_are_the_bytes_numpy_would_draw():
    ours, numpys = stats._Coins(np.random.default_rng(5)), np.random.default_rng(5)
    for count in (1, 2, 3, 4, 5, 7, 8, 9, 1_000, 3, 17):  # words left half used, in turn
        assert ours.take(count).tobytes() == numpys.bytes(count)
    assert stats._signs_from_bytes()


# --- runs as columns -----------------------------------------------------------------------------------------


def write_rows(run: Path, rows: list[dict], summary: dict | None = None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "report.json").write_text(json.dumps(summary or {"complete": True, "manifest": {"model": "m"}}))
    return run


def row(i: int, **fields) -> dict:
    base = {"chat": "c", "qa_index": i, "question": f"q{i}", "category": 1 + i % 2, "f1": 0.5, "error": None}
    return {**base, **fields}


def test_the_latest_line_of_each_item_counts_in_the_place_it_first_appeared(tmp_path):
    run = write_rows(
        tmp_path / "run",
        [
            row(0, f1=0.1, model="early"),
            row(1, error="timeout", prompt_tokens=5),  # failed, then retried below
            row(2, f1=0.2),
            row(1, f1=0.9, prompt_tokens=7, model="late"),
            row(2, error="boom"),  # an answer, then a failure: the item failed
            row(3, judge_score=True),
        ],
        {"complete": True, "manifest": {}},
    )
    loaded = load_run(run)
    keys = [loaded.items.keys[i] for i in loaded.answers.items]
    assert keys == [("c", 0, "q0"), ("c", 1, "q1"), ("c", 3, "q3")] and loaded.failed == 1
    assert [loaded.items.keys[i] for i in loaded.held] == [("c", n, f"q{n}") for n in range(4)]
    assert loaded.answers.scores["f1"].tolist()[:2] == [0.1, 0.9] and loaded.answers.scores["judge_score"][2] == 1.0
    assert loaded.model == "early" and loaded.usage()["prompt_tokens"] == 12  # every line's tokens
    assert [r["f1"] for r in loaded.answered_rows()] == [0.1, 0.9, 0.5]


def test_a_predictions_file_replaced_while_the_report_is_made_is_an_error(tmp_path):
    run = write_rows(tmp_path / "run", [row(0), row(1)])
    (loaded,) = load_runs([run])
    write_rows(run, [row(1), row(0)])  # the same size, other rows at the offsets read
    with pytest.raises(RealtalkError, match="changed while the report was made"):
        list(loaded.answered_rows())


# --- report-data/ -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_questions(tmp_path_factory) -> tuple[list[Path], list[list[dict]]]:
    """Two offline runs of the sample chat, each of its questions asked 40 times over (240 questions)."""
    base = tmp_path_factory.mktemp("scale")
    runs, rows = [], []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REALTALK_CACHE_DIR", str(base / "cache"))
        for k, (name, extra) in enumerate((("full", []), ("retrieval", ["--context", "retrieval", "--top-k", "3"]))):
            result = runner.invoke(
                app, ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(base / name), *extra]
            )
            assert result.exit_code == 0, result.output
            one = [json.loads(line) for line in (base / name / "predictions.jsonl").read_text().splitlines()]
            many = [
                {
                    **r,
                    "qa_index": n * 6 + r["qa_index"],
                    "question": f"{r['question']} (asked {n})",
                    "f1": ((n + k) % 5) / 4,
                }
                for n in range(40)
                for r in one
            ]
            (base / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in many))
            runs.append(base / name)
            rows.append(many)
    return runs, rows


def big_report(runs: list[Path], out: Path, monkeypatch, *extra: str, part_bytes: int = 6_000):
    monkeypatch.setattr(explorer, "PART_BYTES", part_bytes)
    return runner.invoke(app, ["report", *map(str, runs), "-o", str(out), *extra])


def test_a_long_question_list_goes_to_report_data_and_a_short_one_stays_in_the_page(
    many_questions, tmp_path, monkeypatch
):
    runs, _ = many_questions
    out = tmp_path / "out"
    result = big_report(runs, out, monkeypatch)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    files = sorted(p.name for p in (out / "report-data").iterdir())
    parts = [f for f in files if f.startswith("part-")]
    assert len(parts) > 5 and files == [*(["chat-0001.js"]), *parts]
    assert "(asked 39)" not in page and "When did Ana take Miso to the vet?" not in page  # the page stays small
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left
    text = (out / "report-data" / parts[-1]).read_text()
    assert re.fullmatch(
        r"realtalkReportPart\(\"[0-9a-f]{16}\", \"part-\d{4}\", JSON.parse\('\{.*\}'\)\);\n", text, re.S
    )
    assert "<" not in text and "(asked 39)" in text
    # The same runs with the default part size fit the page: --force replaces the report, report-data/ goes.
    monkeypatch.setattr(explorer, "PART_BYTES", 10_000_000)
    result = runner.invoke(app, ["report", *map(str, runs), "-o", str(out), "--force"])
    assert result.exit_code == 0 and not (out / "report-data").exists()
    assert "(asked 39)" in (out / "report.html").read_text()


def test_report_data_is_replaced_whole_and_never_with_files_it_did_not_write(many_questions, tmp_path, monkeypatch):
    runs, _ = many_questions
    out = tmp_path / "out"
    assert big_report(runs, out, monkeypatch, part_bytes=3_000).exit_code == 0
    many = len(list((out / "report-data").iterdir()))
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.json", "report.html"):
        (out / name).unlink()
    again = big_report(runs, out, monkeypatch, part_bytes=30_000)  # report-data/ alone is an earlier report's
    assert again.exit_code == 2 and "report-data: already exists (use --force" in again.output
    assert big_report(runs, out, monkeypatch, "--force", part_bytes=30_000).exit_code == 0
    assert 1 < len(list((out / "report-data").iterdir())) < many  # no part left from the earlier report
    (out / "report-data" / "notes.txt").write_text("mine")
    before = sorted(p.name for p in (out / "report-data").iterdir())
    refused = big_report(runs, out, monkeypatch, "--force")
    assert refused.exit_code == 2 and "notes.txt: not a file of an earlier report" in refused.output
    assert sorted(p.name for p in (out / "report-data").iterdir()) == before
    for odd in ("file", "link"):
        other = tmp_path / odd
        other.mkdir()
        if odd == "file":
            (other / "report-data").write_text("x")
        else:
            (other / "report-data").symlink_to(tmp_path)
        result = big_report(runs, other, monkeypatch, "--force")
        assert result.exit_code == 2 and f"{other / 'report-data'}: exists and is not a directory" in result.output
        assert sorted(p.name for p in other.iterdir()) == ["report-data"]


def test_probe_html_of_a_long_run_writes_its_parts_beside_the_page(many_questions, tmp_path, monkeypatch):
    from realtalk_cli.report.build import write_run_html

    run = tmp_path / "run"
    run.mkdir()
    for name in ("predictions.jsonl", "report.json"):
        (run / name).write_bytes((many_questions[0][0] / name).read_bytes())
    monkeypatch.setattr(explorer, "PART_BYTES", 6_000)
    page = write_run_html(run)
    assert page == run / "report.html" and len(list((run / "report-data").iterdir())) > 5
    monkeypatch.setattr(explorer, "PART_BYTES", 10_000_000)
    write_run_html(run)  # made again, the list now fits the page
    assert not (run / "report-data").exists() and (run / "predictions.jsonl").exists()


# --- in the browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_page(many_questions, tmp_path_factory):
    executable = _browser()
    from playwright.sync_api import sync_playwright

    out = tmp_path_factory.mktemp("page") / "out"
    with pytest.MonkeyPatch.context() as mp:
        result = big_report(many_questions[0], out, mp)
    assert result.exit_code == 0, result.output
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto((out / "report.html").as_uri())
        yield page, errors, out
        browser.close()


def settled(page) -> str:
    page.wait_for_function("/ questions match/.test(document.getElementById('count').textContent)")
    return page.locator("#count").text_content()


def test_the_page_loads_its_parts_from_file_without_console_errors(big_page, many_questions):
    page, errors, _ = big_page
    assert settled(page) == "240 of 240 questions match; showing the first 50"
    assert page.locator("#questions article").count() == 50 and errors == []
    chat = load_chat(SAMPLE_JSON)
    vet = chat.resolve(chat.qa[2].evidence[0])  # evidence text, from the chat's own file in report-data/
    card = page.locator("article", has_text="When did Ana take Miso to the vet? (asked 0)")
    assert vet.clean_text in card.locator(f'li[data-dia-id="{chat.qa[2].evidence[0]}"]').first.text_content()
    page.click("#more")
    page.wait_for_function("document.querySelectorAll('#questions article').length === 100")
    assert errors == []


def test_filters_search_every_part(big_page, many_questions):
    page, errors, _ = big_page
    full, retrieval = many_questions[1]
    page.fill("#f-text", "(asked 39)")
    assert settled(page) == "6 of 240 questions match"
    assert page.locator("#questions article").count() == 6
    page.fill("#f-text", "")
    page.select_option("#f-wrong", "A")
    page.select_option("#f-right", "B")
    expected = sum(a["f1"] < 0.5 <= b["f1"] for a, b in zip(full, retrieval, strict=True))
    assert settled(page).startswith(f"{expected} of 240 questions match") and expected > 0
    page.select_option("#f-wrong", "")
    page.select_option("#f-right", "")
    assert settled(page).startswith("240 of 240") and errors == []


def test_a_part_from_another_report_is_not_shown_as_this_ones(big_page, many_questions, tmp_path, monkeypatch):
    page, errors, _ = big_page
    runs = many_questions[0]
    mine, other = tmp_path / "mine", tmp_path / "other"
    assert big_report(runs, mine, monkeypatch).exit_code == 0
    assert big_report([runs[1], runs[0]], other, monkeypatch).exit_code == 0  # another report, its own token
    (mine / "report-data" / "part-0003.js").write_bytes((other / "report-data" / "part-0003.js").read_bytes())
    fresh = page.context.browser.new_page()
    fresh.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
    fresh.on("pageerror", lambda e: errors.append(str(e)))
    fresh.goto((mine / "report.html").as_uri())
    fresh.fill("#f-text", "no such words")
    fresh.wait_for_function("/not a file of this report/.test(document.getElementById('count').textContent)")
    assert "part-0003.js" in fresh.locator("#count").text_content() and errors == []
    fresh.close()
