"""Evidence recall and prompt tokens per question for each retriever and budget, on all shared chats.

For every retriever (and token budget) the probe's own prompts are built exactly as `realtalk probe
--context NAME --context-tokens N` builds them (gpt-4o-mini tokenizer), and each question's evidence
recall (share of its resolvable evidence messages in the prompt) is averaged per dataset and category.
Also: indexing time (ingestion, dense embeddings included unless cached) and query time per question.

    python bench/retrieval.py [--budgets 2700] [--retrievers bm25,dense,hybrid,baseline] [--cold]

`--cold` uses an empty embedding cache, so dense indexing time includes encoding every window.
`baseline` is the retriever before this work: unstemmed BM25 over single messages, filled to the budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtalk_cli.llm.tokens import count_message_tokens, count_tokens  # noqa: E402
from realtalk_cli.tasks.memory.runner import MemoryChoice, MemoryRunner  # noqa: E402
from realtalk_cli.tasks.probe.options import ProbeOptions  # noqa: E402
from realtalk_cli.tasks.probe.protocols.realtalk import RealtalkProtocol  # noqa: E402

SHARED = ROOT.parent / "shared"
MODEL = "gpt-4o-mini"


def measure(dataset: str, spec: str, options: dict, budget: int) -> dict:
    opts = ProbeOptions(model=MODEL, out=Path("unused"), context="memory", memory=spec, memory_options=options)
    opts.context_tokens = budget
    runner = MemoryRunner(MemoryChoice(spec, options), lambda text: count_tokens(text, MODEL)[0])
    started = time.perf_counter()
    items = RealtalkProtocol().build_items([SHARED / dataset], opts, MODEL, runner)
    total = time.perf_counter() - started
    ingest = sum(runner.ingest_s.values())
    by_category: dict[str, list] = defaultdict(list)
    for it in items:
        prompt_tokens = count_message_tokens(it.messages, MODEL)[0]
        by_category[f"{it.qa.category} {it.qa.category_name}"].append((it.recall, it.context_tokens, prompt_tokens))
    categories = dict(sorted(by_category.items()))
    return {"categories": categories, "ingest_s": ingest, "query_s": total - ingest, "n": len(items)}


def mean(values: list) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else float("nan")


def summarise(rows: list) -> tuple[float, float, float, float, int]:
    recalls = [r for r, _, _ in rows]
    prompts = [p for _, _, p in rows]
    return (
        mean(recalls),
        mean([c for _, c, _ in rows]),
        mean(prompts),
        max(prompts),
        sum(r is not None for r in recalls),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", default="2700")
    parser.add_argument("--retrievers", default="baseline,bm25,dense,hybrid")
    parser.add_argument("--datasets", default="realtalk,locomo")
    parser.add_argument("--cold", action="store_true", help="start with an empty embedding cache")
    args = parser.parse_args()
    if args.cold:
        os.environ["REALTALK_CACHE_DIR"] = tempfile.mkdtemp()
    specs = {
        "baseline": ("bench/retrieval_baseline.py:MessageBM25", {}),
        "bm25": ("bm25", {}),
        "dense": ("dense", {}),
        "hybrid": ("hybrid", {}),
        "hybrid-nodates": ("hybrid", {"dates": "off"}),
        "bm25-nodates": ("bm25", {"dates": "off"}),
    }
    print(
        "| dataset | retriever | budget | category | questions (with evidence) | evidence recall | "
        "context tokens (mean) | prompt tokens (mean) | prompt tokens (max) |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    timings = []
    for dataset in args.datasets.split(","):
        for name in args.retrievers.split(","):
            spec, options = specs[name]
            if spec.startswith("bench/"):
                spec = str(ROOT / spec)
            for budget in map(int, args.budgets.split(",")):
                result = measure(dataset, spec, options, budget)
                categories = result["categories"]
                groups = list(categories.items())
                groups.append(("**all**", [row for rows in categories.values() for row in rows]))
                if "5 adversarial" in categories:  # the probe report's overall leaves LoCoMo's category 5 out
                    kept = [row for key, rows in categories.items() if key != "5 adversarial" for row in rows]
                    groups.append(("**overall (1-4)**", kept))
                for category, rows in groups:
                    recall, context, prompt, most, counted = summarise(rows)
                    print(
                        f"| {dataset} | {name} | {budget} | {category} | {len(rows)} ({counted}) | {recall:.3f} | "
                        f"{context:.0f} | {prompt:.0f} | {most} |"
                    )
                timings.append((dataset, name, budget, result))
    print("\n| dataset | retriever | budget | indexing s (all chats) | query ms per question |")
    print("|---|---|---:|---:|---:|")
    for dataset, name, budget, r in timings:
        print(f"| {dataset} | {name} | {budget} | {r['ingest_s']:.2f} | {r['query_s'] / r['n'] * 1000:.1f} |")


if __name__ == "__main__":
    main()
