"""`realtalk report` over 5 runs x ~2,000 questions (LoCoMo's 10 chats), against merely parsing the runs'
predictions files (the floor); then the HTML page in headless chromium: load, and one filter change.

The runs are synthetic (predictions drawn from the gold answers, 10 retrieved ids each) but have the
shape and size of real ones, and name the real chat files, so the evidence text is resolved as usual.

python bench/report.py [--repeat N] [--resamples N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from realtalk_cli.data.formats import load_chat
from realtalk_cli.report.build import make_report

CHATS = sorted((Path(__file__).resolve().parents[1].parent / "shared" / "locomo").glob("*.json"))
RUNS = 5


def make_runs(base: Path) -> list[Path]:
    rng = random.Random(0)
    chats = [(p, load_chat(p)) for p in CHATS]
    dirs = []
    for n in range(RUNS):
        run = base / f"run{n}"
        run.mkdir()
        rows = []
        for _, chat in chats:
            ids = [m.dia_id for m in chat.messages()]
            for i, qa in enumerate(chat.qa):
                right = rng.random() < 0.3 + 0.1 * n
                f1 = rng.random() if right else rng.random() * 0.2
                rows.append(
                    {
                        "chat": chat.name,
                        "dataset": chat.dataset,
                        "qa_index": i,
                        "question": qa.question,
                        "answer": qa.gold,
                        "category": qa.category,
                        "category_name": qa.category_name,
                        "evidence": qa.evidence,
                        "prediction": qa.gold if right else "no idea",
                        "f1": f1,
                        "f1_date_normalised": f1,
                        "judge_score": float(right),
                        "model": f"model-{n}",
                        "prompt_tokens": 600,
                        "completion_tokens": 8,
                        "cost_usd": 0.0001,
                        "error": None,
                        "retrieved": rng.sample(ids, 10),
                    }
                )
        (run / "predictions.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        manifest = {
            "model": f"model-{n}",
            "judge_model": "judge",
            "datasets": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in chats},
            "parameters": {"context": "retrieval", "top_k": 10},
        }
        (run / "report.json").write_text(json.dumps({"manifest": manifest, "run": {"wall_time_s": 60.0}}))
        dirs.append(run)
    return dirs


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def browser_timing(page_path: Path) -> str:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "browser: playwright not installed, skipped"
    if not chromium:
        return "browser: no chromium, skipped"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_selector("#questions article")
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        page.select_option("#f-wrong", "A")
        page.select_option("#f-right", "E")
        page.wait_for_function("document.getElementById('count').textContent.length > 0")
        filtered = time.perf_counter() - start
        count = page.locator("#count").text_content()
        browser.close()
    return f"browser: page load {loaded:.2f} s, two filter changes {filtered:.2f} s ({count})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    if not CHATS:
        raise SystemExit("no LoCoMo chats found under ../shared/locomo")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        runs = make_runs(base)
        questions = sum(1 for _ in (runs[0] / "predictions.jsonl").open())
        print(f"{RUNS} runs x {questions} questions, {args.resamples} bootstrap resamples")

        def parse_only() -> None:
            for run in runs:
                [orjson.loads(line) for line in (run / "predictions.jsonl").read_bytes().splitlines()]

        def report() -> None:
            make_report(runs, base / "out", resamples=args.resamples, force=True)

        floor_best, floor_med = timed(parse_only, args.repeat)
        rep_best, rep_med = timed(report, args.repeat)
        size = (base / "out" / "report.html").stat().st_size
        print(f"parse the predictions files (floor): best {floor_best:.3f} s, median {floor_med:.3f} s")
        print(f"realtalk report (all five files):    best {rep_best:.3f} s, median {rep_med:.3f} s")
        print(f"ratio report / parse: {rep_best / floor_best:.1f}x (best); report.html {size / 1e6:.1f} MB")
        print(browser_timing(base / "out" / "report.html"))


if __name__ == "__main__":
    main()
