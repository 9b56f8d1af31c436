"""Simulate cost: BERTScore per target in one batch vs one pair at a time (CPU, packaged MiniLM,
model loaded once, same run), and the requests and prompt tokens of a run on the shared chats.

    python bench/simulate.py [--pairs 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from realtalk_cli.analysis.bertscore import BertScorer, packaged_minilm  # noqa: E402
from realtalk_cli.cli import app  # noqa: E402
from realtalk_cli.data.formats import chat_paths, load_chat  # noqa: E402
from realtalk_cli.tasks.simulate.prompts import select_targets  # noqa: E402

SHARED = ROOT.parent / "shared" / "realtalk"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    chats = [load_chat(p) for p in chat_paths([SHARED])]
    targets = [t for c in chats for t in select_targets(c, None, "messages", 3)]
    # pairs of (a real message, the one before it), standing in for (generated, real)
    pairs = [(t.history[-1].clean_text, t.reference) for t in targets[: args.pairs]]
    scorer = BertScorer(packaged_minilm(), 6)
    scorer.score(["warm up"], ["warm up"])
    start = time.perf_counter()
    scorer.score([a for a, _ in pairs], [b for _, b in pairs])
    batch = time.perf_counter() - start
    start = time.perf_counter()
    for a, b in pairs:
        scorer.score([a], [b])
    single = time.perf_counter() - start
    n = len(pairs)
    print(
        f"BERTScore (MiniLM, layer 6, CPU) on {n} pairs: batch {batch:.2f} s ({batch / n * 1000:.1f} ms/target), "
        f"one by one {single:.2f} s ({single / n * 1000:.1f} ms/target), {single / batch:.1f}x"
    )

    runner = CliRunner()
    out = Path(tempfile.mkdtemp())
    print("\nrequests and prompt tokens of a run on the shared REALTALK chats (dry run, gpt-4o-mini tokenizer):")
    for flags in (["--targets", "messages"], ["--targets", "turns"], ["--targets", "turns", "--sessions", "1"]):
        result = runner.invoke(
            app, ["simulate", str(SHARED), "--model", "gpt-4o-mini", "--out", str(out), "--dry-run", "--json", *flags]
        )
        plan = json.loads(result.output)
        print(
            f"  {' '.join(flags):36s} {plan['requests']:>6} requests, {plan['prompt_tokens']:>11,} prompt tokens "
            f"({plan['prompt_tokens_per_target']:,.0f}/target), ~${plan['estimated_cost_usd']}"
        )


if __name__ == "__main__":
    main()
