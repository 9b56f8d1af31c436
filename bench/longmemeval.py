"""LongMemEval at scale: peak memory and time of realtalk on a synthetic LongMemEval-S-sized file.

    python bench/longmemeval.py [--instances 500] [--concurrency 8] [--skip-live]

A synthetic file like LongMemEval-S (data/make_longmemeval_sample.py --bench: 500 instances of 48 filler + the
evidence sessions, ~115k o200k tokens each; no line of the real files) is written once, then each command runs
as a fresh process and reports its wall time and peak RSS:
- the file loaded whole by Python's json (what a reader that is not streaming holds) and `realtalk validate`;
- `realtalk probe --compat longmemeval --dry-run` (every prompt built and counted: the ~57M prompt tokens of a
  full-context run);
- `realtalk analyze stats` (every turn tokenized);
- a live full-context run of `--compat longmemeval` and of realtalk's own protocol against the loopback server
  (in this process; realtalk in its own), and a `--context bm25` run;
- `realtalk report` over the `--compat longmemeval` run (its HTML explorer reads the evidence from the file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "data"))

from make_longmemeval_sample import bench_file  # noqa: E402

from tests.llm_server import API_KEY, FakeLLM, serve_llm  # noqa: E402


def run(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MB, stdout) of a child process, its own peak measured by wait4; a failure ends
    the benchmark."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code not in (0, 1):
            sys.exit(f"{' '.join(cmd[:8])}...: exit {code}\n{err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss // 1024, out.read().decode()


def realtalk(*args: str) -> list[str]:
    return [sys.executable, "-m", "realtalk_cli", *args]


def reply(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    return "yes" if prompt.startswith("I will give you a") and "response from a model" in prompt else "Pixel."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--file", type=Path, help="a synthetic file written earlier (else one is written)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lme-"))
    env = {**os.environ, "BENCH_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    data = args.file or bench_file(tmp / "longmemeval_s_synthetic.json", args.instances)
    size = data.stat().st_size / 2**20
    if args.file:
        print(f"synthetic file {data}: {size:.0f} MB")
    else:
        print(f"synthetic S-sized file: {args.instances} instances, {size:.0f} MB, written in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    wall, rss, _ = run([sys.executable, "-c", f"import json; json.load(open({str(data)!r}))"], env)
    print(f"  json.load of the whole file (not streaming): peak RSS {rss} MB, {wall:.1f} s")
    wall, rss, _ = run(realtalk("validate", str(data), "-q"), env)
    print(f"  realtalk validate: peak RSS {rss} MB, {wall:.1f} s")
    flags = ["--model", "gpt-4o", "--out", str(tmp / "dry"), "--dry-run", "--json"]
    wall, rss, out = run(realtalk("probe", str(data), "--compat", "longmemeval", *flags), env)
    plan = json.loads(out)
    print(
        f"  probe --compat longmemeval --model gpt-4o --dry-run: {plan['requests']} requests, "
        f"{plan['prompt_tokens']:,} prompt tokens ({plan['prompt_tokens_per_question']:,.0f} per question), "
        f"${plan['estimated_cost_usd']:.2f}; peak RSS {rss} MB, {wall:.1f} s"
    )
    wall, rss, out = run(realtalk("analyze", "stats", str(data), "--json"), env)
    print(f"  analyze stats: {json.loads(out)[0]['tokens']:,} tokens in turns; peak RSS {rss} MB, {wall:.1f} s")
    if args.skip_live:
        return
    fake = FakeLLM(reply=reply, record=False)
    with serve_llm(fake) as url:
        common = ["--model", "gpt-4o-mini", "--base-url", url, "--api-key-env", "BENCH_KEY", "--no-cache"]
        common += ["--concurrency", str(args.concurrency), "--json"]
        runs = [
            ("--compat longmemeval, judge", ["--compat", "longmemeval", "--judge-model", "judge-model"]),
            ("realtalk's protocol, full context", []),
            ("realtalk's protocol, --context bm25", ["--context", "bm25"]),
        ]
        for i, (label, extra) in enumerate(runs):
            out = tmp / f"live-{i}"
            wall, rss, _ = run(realtalk("probe", str(data), *common, *extra, "--out", str(out)), env)
            rows = sum(1 for _ in open(out / "predictions.jsonl"))
            print(f"  live {label}: {rows} questions answered, peak RSS {rss} MB, {wall:.1f} s")
    wall, rss, _ = run(realtalk("report", str(tmp / "live-0"), "-o", str(tmp / "board"), "--resamples", "200"), env)
    print(f"  report (leaderboard and HTML explorer) of the first run: peak RSS {rss} MB, {wall:.1f} s")


if __name__ == "__main__":
    main()
