"""realtalk probe against a loopback OpenAI-compatible server with a fixed latency per request,
next to a plain sequential client sending the same prompts one by one, in the same run.
Also: prompt tokens per question by context layout, and BM25 evidence recall@k.

    python bench/probe.py [--latency 0.2] [--chat Chat_1_Emi_Elise] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import OpenAI  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from realtalk_cli.cli import app  # noqa: E402
from realtalk_cli.tasks.probe import ProbeOptions, run_probe  # noqa: E402
from realtalk_cli.tasks.probe_prompts import Templates, build_items  # noqa: E402
from tests.llm_server import API_KEY, FakeLLM, serve_llm  # noqa: E402

SHARED = ROOT.parent / "shared" / "realtalk"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--chat", default="Chat_1_Emi_Elise")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    chat = SHARED / f"{args.chat}.json"
    tmp = Path(tempfile.mkdtemp())
    os.environ.update({"BENCH_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp / "cache")})

    fake = FakeLLM(latency_s=args.latency, reply=lambda body: "I don't know")
    with serve_llm(fake) as url:
        opts = ProbeOptions(
            model="gpt-4o-mini",
            out=tmp / "run",
            base_url=url,
            api_key_env="BENCH_KEY",
            concurrency=args.concurrency,
            use_cache=False,
        )
        items = build_items([chat], opts, Templates.load(), "gpt-4o-mini")
        start = time.perf_counter()
        client = OpenAI(api_key=API_KEY, base_url=url, max_retries=0)
        for it in items:
            client.chat.completions.create(model="gpt-4o-mini", messages=it.messages, max_tokens=32, temperature=0)
        sequential = time.perf_counter() - start
        start = time.perf_counter()
        run_probe([chat], opts)
        cold = time.perf_counter() - start
        # Again in a fresh run directory: imports (NLTK ~2 s) and the tokenizer are loaded now.
        warm_opts = ProbeOptions(**{**opts.__dict__, "out": tmp / "run-warm"})
        start = time.perf_counter()
        run_probe([chat], warm_opts)
        concurrent = time.perf_counter() - start
    n = len(items)
    print(f"{args.chat}: {n} questions, {args.latency * 1000:.0f} ms latency per request")
    print(f"sequential openai client: {sequential:.2f} s ({sequential / n * 1000:.0f} ms/question)")
    label = f"realtalk probe (concurrency {args.concurrency})"
    print(f"{label}, first run in the process: {cold:.2f} s (one-time imports and tokenizer loading included)")
    print(f"{label}, warm: {concurrent:.2f} s ({concurrent / n * 1000:.0f} ms/question)")
    print(f"speed-up: {sequential / concurrent:.1f}x warm, {sequential / cold:.1f}x first run")

    runner = CliRunner()
    print("\nprompt tokens per question over the shared REALTALK chats (dry run, gpt-4o-mini tokenizer):")
    for label, flags in [
        ("full (each session once)", []),
        ("paper's protocol (--compat paper)", ["--compat", "paper"]),
        ("retrieval top-10", ["--context", "retrieval", "--top-k", "10"]),
        ("events", ["--context", "events"]),
    ]:
        result = runner.invoke(
            app,
            ["probe", str(SHARED), "--model", "gpt-4o-mini", "--out", str(tmp / "dry"), "--dry-run", "--json", *flags],
        )
        plan = json.loads(result.output)
        print(f"  {label:36s} {plan['prompt_tokens_per_question']:>9.1f}  ({plan['prompt_tokens']} in all)")

    print("\nBM25 evidence recall@k over the shared REALTALK chats (offline:bm25):")
    for k in (5, 10, 20, 50):
        out = tmp / f"bm25-{k}"
        result = runner.invoke(
            app,
            [
                "probe",
                str(SHARED),
                "--model",
                "offline:bm25",
                "--out",
                str(out),
                "--context",
                "retrieval",
                "--top-k",
                str(k),
                "--json",
                "--no-cache",
            ],
        )
        report = json.loads(result.output)["overall"]["overall"]
        print(f"  k={k:<3d} recall {report['recall_at_k']:.3f}   (offline:bm25 answer F1 {report['f1']:.3f})")


if __name__ == "__main__":
    main()
