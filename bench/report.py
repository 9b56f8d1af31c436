"""`realtalk report` against merely parsing the runs' predictions files (the floor); then the page in headless
chromium: load, and one filter change.

Two sizes:
- default: 5 runs x ~2,000 questions (LoCoMo's 10 chats), timed in this process (best and median of --repeat);
- `--rows 1000000 [--runs 4]`: a million rows (4 runs of 250,000 questions). `realtalk report` and a bare orjson
  pass over the same files each run in a child process of their own, which gives the wall time and the peak
  resident memory of each (`os.wait4`'s ru_maxrss); `--profile FILE` writes the report child's cProfile stats.

The runs are synthetic (predictions drawn from the gold answers, 10 retrieved ids each) but have the shape and
size of real ones, and name real chat files, so the evidence text is resolved as usual: LoCoMo's chats from
../shared/locomo when they are there, else synthetic chats written beside the runs. In the large mode each chat
holds 25,000 questions (the chat's own questions cycled, with new indexes).

python bench/report.py [--repeat N] [--resamples N] [--synthetic]
python bench/report.py --rows 1000000 [--runs 4] [--data DIR] [--profile FILE] [--no-browser] [--code CHECKOUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from realtalk_cli.data.evidence import parse_evidence
from realtalk_cli.data.formats import load_chat, write_realtalk
from realtalk_cli.data.model import Chat, Message, QAItem, Session

ROOT = Path(__file__).resolve().parents[1]
CHATS = sorted((ROOT.parent / "shared" / "locomo").glob("*.json"))
RUNS = 5
WORDS = "the a to of and in on at with for about after before trip dog cat book work home friend party garden".split()


def synthetic_chats(folder: Path, count: int = 10, sessions: int = 20, per_session: int = 20) -> list[Path]:
    """Chats shaped like LoCoMo's (sessions of messages, questions of categories 1-5) when ../shared is absent."""
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in range(count):
        a, b = f"Ann{c}", f"Bob{c}"
        chat = Chat(f"Chat_{c + 1}_{a}_{b}", "realtalk", a, b)
        for s in range(1, sessions + 1):
            messages = [
                Message(
                    f"D{s}:{i}",
                    a if i % 2 else b,
                    " ".join(rng.choices(WORDS, k=rng.randint(5, 30))),
                    f"{s:02d}.01.2024, 10:{i % 60:02d}:00",
                    session=s,
                )
                for i in range(1, per_session + 1)
            ]
            chat.sessions.append(Session(s, f"{s:02d}.01.2024, 10:00:00", messages))
        for q in range(200):
            s, i = rng.randint(1, sessions), rng.randint(1, per_session)
            chat.qa.append(
                QAItem(
                    f"What did {a} say about the {rng.choice(WORDS)} in session {s}?",
                    " ".join(rng.choices(WORDS, k=4)),
                    [f"D{s}:{i}"],
                    1 + q % 5,
                )
            )
        path = folder / f"{chat.name}.json"
        write_realtalk(chat, path)
        paths.append(path)
    return paths


def make_runs(base: Path, chat_paths: list[Path], runs: int, per_chat: int | None = None) -> list[Path]:
    """`runs` run folders; each answers every chat's questions, or `per_chat` questions per chat (cycled)."""
    rng = random.Random(0)
    chats = [(p, load_chat(p)) for p in chat_paths]
    dirs = []
    for n in range(runs):
        run = base / f"run{n}"
        run.mkdir(parents=True)
        with (run / "predictions.jsonl").open("wb") as f:
            for _, chat in chats:
                ids = [m.dia_id for m in chat.messages()]
                dataset = "locomo" if chat.dataset == "locomo" or not CHATS else chat.dataset
                evidence = {id(qa): parse_evidence(qa.evidence) for qa in chat.qa}  # as the probe writes them
                for i in range(per_chat or len(chat.qa)):
                    qa = chat.qa[i % len(chat.qa)]
                    qa_key = id(qa)
                    right = rng.random() < 0.3 + 0.1 * n
                    f1 = rng.random() if right else rng.random() * 0.2
                    # date normalisation changes the score of some temporal answers, as in real runs
                    f1_date = min(1.0, f1 + 0.25) if qa.category == 2 and rng.random() < 0.5 else f1
                    names = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
                    row = {
                        "chat": chat.name,
                        "dataset": dataset,
                        "qa_index": i,
                        "question": qa.question,
                        "answer": qa.gold,
                        "category": qa.category,
                        "category_name": names.get(qa.category, qa.category_name),
                        "evidence": qa.evidence,
                        "evidence_ids": evidence[qa_key].ids,
                        "evidence_dangling": evidence[qa_key].unparsed,
                        "prediction": qa.gold if right else "no idea",
                        "f1": f1,
                        "f1_date_normalised": f1_date,
                        "judge_score": float(right),
                        "model": f"model-{n}",
                        "prompt_tokens": 600,
                        "completion_tokens": 8,
                        "cost_usd": 0.0001,
                        "error": None,
                        "retrieved": rng.sample(ids, 10),
                    }
                    f.write(orjson.dumps(row) + b"\n")
        manifest = {
            "model": f"model-{n}",
            "judge_model": "judge",
            "datasets": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in chats},
            "parameters": {"context": "retrieval", "top_k": 10},
        }
        (run / "report.json").write_text(
            json.dumps({"manifest": manifest, "run": {"wall_time_s": 60.0}, "complete": True})
        )
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
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        start = time.perf_counter()
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_selector("#leaderboard tbody tr")
        board = time.perf_counter() - start
        page.wait_for_selector("#questions article", timeout=600_000)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        page.select_option("#f-wrong", "A")
        page.select_option("#f-right", "E" if page.locator("#f-right option[value=E]").count() else "B")
        page.wait_for_function(
            "document.getElementById('count').textContent.includes('match') && "
            "!document.getElementById('count').textContent.includes('searching')",
            timeout=600_000,
        )
        filtered = time.perf_counter() - start
        count = page.locator("#count").text_content()
        browser.close()
    problems = f"; console errors: {errors[:3]}" if errors else "; no console errors"
    return (
        f"browser: leaderboard shown {board:.2f} s, first questions {loaded:.2f} s after opening; "
        f"two filter changes {filtered:.2f} s ({count}){problems}"
    )


def output_size(out: Path) -> str:
    html = (out / "report.html").stat().st_size
    data = out / "report-data"
    files = sorted(data.iterdir()) if data.is_dir() else []
    extra = (
        f" + report-data/ {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {len(files)} files" if files else ""
    )
    return f"report.html {html / 1e6:.2f} MB{extra}"


def child(argv: list[str]) -> None:
    """Run inside the measured child process: the bare parse, or `realtalk report` (under cProfile when asked)."""
    what, rest = argv[0], argv[1:]
    if what == "parse":
        for run in rest:
            with open(Path(run) / "predictions.jsonl", "rb") as f:
                for line in f:
                    orjson.loads(line)
        return
    profile, args = (rest[1], rest[2:]) if rest[0] == "--profile" else (None, rest)
    from realtalk_cli.cli import app

    def report() -> None:
        app(["report", *args], standalone_mode=False)

    if profile:
        import cProfile

        cProfile.runctx("report()", globals(), {"report": report}, profile)
    else:
        report()


def measured(args: list[str], code: Path = ROOT) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak resident memory (MB) of a child running `child(args)` with the
    realtalk_cli of the checkout `code`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args], env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child {args[0]} failed with exit code {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KB


def large(args: argparse.Namespace) -> None:
    per_run = args.rows // args.runs
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.data) if args.data else Path(tmp)
        stamp = base / "bench.json"
        runs = [base / f"run{n}" for n in range(args.runs)]
        wanted = {"rows": args.rows, "runs": args.runs, "shared": bool(CHATS), "rows_version": 2}
        if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
            for path in [*runs, base / "chats", base / "out"]:
                shutil.rmtree(path, ignore_errors=True)
            chats = CHATS or synthetic_chats(base / "chats")
            start = time.perf_counter()
            runs = make_runs(base, chats, args.runs, per_chat=per_run // len(chats))
            stamp.write_text(json.dumps(wanted))
            print(f"made the runs in {time.perf_counter() - start:.1f} s")
        questions = sum(1 for _ in (runs[0] / "predictions.jsonl").open("rb"))
        size = sum((r / "predictions.jsonl").stat().st_size for r in runs)
        print(
            f"{args.runs} runs x {questions} questions = {args.runs * questions} rows ({size / 1e6:.0f} MB), "
            f"{args.resamples} bootstrap resamples; chats: {'../shared/locomo' if CHATS else 'synthetic'}"
        )
        floor = measured(["parse", *map(str, runs)])
        print(f"bare orjson pass (floor):  {floor[0]:6.1f} s wall, {floor[1]:6.1f} s CPU, peak RSS {floor[2]:5.0f} MB")
        out = base / "out"
        report_args = [*map(str, runs), "-o", str(out), "--force", "--resamples", str(args.resamples)]
        code = Path(args.code).resolve() if args.code else ROOT
        rep = measured(["report", *(["--profile", args.profile] if args.profile else []), *report_args], code)
        print(f"realtalk report:           {rep[0]:6.1f} s wall, {rep[1]:6.1f} s CPU, peak RSS {rep[2]:5.0f} MB")
        print(f"ratio report / parse: {rep[0] / floor[0]:.1f}x wall, {rep[1] / floor[1]:.1f}x CPU; {output_size(out)}")
        if args.profile:
            print(f"profile written to {args.profile} (python -m pstats {args.profile})")
        if not args.no_browser:
            print(browser_timing(out / "report.html"))


def small(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        from realtalk_cli.report.build import make_report

        base = Path(tmp)
        runs = make_runs(base, CHATS or synthetic_chats(base / "chats"), RUNS)
        questions = sum(1 for _ in (runs[0] / "predictions.jsonl").open())
        print(f"{RUNS} runs x {questions} questions, {args.resamples} bootstrap resamples")

        def parse_only() -> None:
            for run in runs:
                [orjson.loads(line) for line in (run / "predictions.jsonl").read_bytes().splitlines()]

        def report() -> None:
            make_report(runs, base / "out", resamples=args.resamples, force=True)

        floor_best, floor_med = timed(parse_only, args.repeat)
        rep_best, rep_med = timed(report, args.repeat)
        print(f"parse the predictions files (floor): best {floor_best:.3f} s, median {floor_med:.3f} s")
        print(f"realtalk report (all five files):    best {rep_best:.3f} s, median {rep_med:.3f} s")
        print(f"ratio report / parse: {rep_best / floor_best:.1f}x (best); {output_size(base / 'out')}")
        if not args.no_browser:
            print(browser_timing(base / "out" / "report.html"))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--rows", type=int, help="total rows over all runs, e.g. 1000000 (child processes)")
    parser.add_argument("--runs", type=int, default=4, help="runs in the --rows mode")
    parser.add_argument("--data", help="--rows mode: keep the generated runs here, reused while --rows/--runs match")
    parser.add_argument("--profile", help="--rows mode: write cProfile stats of the report child to this file")
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium timing")
    parser.add_argument("--code", help="--rows mode: time the realtalk_cli of another checkout (e.g. main, to compare)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic chats even when ../shared has LoCoMo's")
    args = parser.parse_args()
    if args.synthetic:
        CHATS.clear()
    large(args) if args.rows else small(args)


if __name__ == "__main__":
    main()
