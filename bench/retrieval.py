"""Evidence recall of the retrievers inside a whole-prompt budget, on tuning and held-out chats, against the stock
baseline, with the paired difference and its interval; and dense encoding time against bare sentence-transformers.

Every question's prompt is built exactly as `realtalk probe --context NAME --context-tokens N` builds it (the whole
prompt, instructions + question + context, within N tokens of gpt-4o-mini's tokenizer), and its evidence recall is
read from that prompt (the share of its resolvable evidence messages shown). Overall recall is given for all
categories and for categories 1-4 (LoCoMo's adversarial category 5 left out, as a probe report's `overall`).

    python bench/retrieval.py [--budget 2700] [--retrievers stock,stock-bm25,bm25,dense,hybrid]
                              [--datasets realtalk,locomo] [--encode 600] [--cold]

Held out (never looked at while tuning; chosen before any tuning, a short and two long chats of each dataset):
REALTALK Chat_2, Chat_6, Chat_8; LoCoMo Chat_3, Chat_7, Chat_10. The rest of the shared chats are the tuning
set. `stock` is bench/retrieval_baseline.py:StockHybrid (rank_bm25's BM25Okapi 1.2/0.75 + MiniLM, RRF k=60, the
same windows and budget), `stock-bm25` its BM25 alone (compared with `bm25`), `before-11` the retriever before
issue 11, `hybrid-2` the `hybrid` before it ranked messages (each ranked window shown whole; `--baseline hybrid-2`
gives the paired gain of ranking messages). `--encode N` times our MiniLM encode of N window texts against a bare
`SentenceTransformer(...).encode` of the same texts (ratio and largest difference); `--cold` starts with an empty
embedding cache, so indexing time includes encoding every window.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtalk_cli.data.formats import chat_paths, load_chat  # noqa: E402
from realtalk_cli.llm.tokens import count_message_tokens, count_tokens  # noqa: E402
from realtalk_cli.report.stats import bootstrap_ci, paired_difference  # noqa: E402
from realtalk_cli.tasks.memory.runner import MemoryChoice, MemoryRunner  # noqa: E402
from realtalk_cli.tasks.probe.options import ProbeOptions  # noqa: E402
from realtalk_cli.tasks.probe.protocols.realtalk import RealtalkProtocol  # noqa: E402

SHARED = ROOT.parent / "shared"
MODEL = "gpt-4o-mini"
HELD_OUT = {
    "realtalk": ("Chat_2_Kevin_Elise", "Chat_6_Vanessa_Nicolas", "Chat_8_Akib_Muhhamed"),
    "locomo": ("Chat_3_John_Maria", "Chat_7_James_John", "Chat_10_Calvin_Dave"),
}
RETRIEVERS = {
    "stock": (str(ROOT / "bench" / "retrieval_baseline.py") + ":StockHybrid", {}),
    "stock-bm25": (str(ROOT / "bench" / "retrieval_baseline.py") + ":StockHybrid", {"retriever": "bm25"}),
    "before-11": (str(ROOT / "bench" / "retrieval_baseline.py") + ":MessageBM25", {}),
    "hybrid-2": (str(ROOT / "bench" / "retrieval_baseline.py") + ":WholeWindows", {}),
    "bm25": ("bm25", {}),
    "dense": ("dense", {}),
    "hybrid": ("hybrid", {}),
}


@contextlib.contextmanager
def line_stage(label: str, total: int):
    started = time.perf_counter()
    yield lambda n: None
    print(f"  ({label}: {time.perf_counter() - started:.1f} s)", file=sys.stderr)


def measure(files: list[Path], name: str, budget: int) -> dict:
    """Per question (chat, index): category, recall found in the prompt, prompt tokens; and the times."""
    spec, options = RETRIEVERS[name]
    opts = ProbeOptions(model=MODEL, out=Path("unused"), context="memory", memory=spec, memory_options=options)
    opts.context_tokens = budget
    runner = MemoryRunner(MemoryChoice(spec, options), lambda text: count_tokens(text, MODEL)[0])
    runner.progress = line_stage
    started = time.perf_counter()
    items = RealtalkProtocol().build_items(files, opts, MODEL, runner)
    total = time.perf_counter() - started
    ingest = sum(runner.ingest_s.values())
    rows = {
        (it.chat.name, it.qa_index): (
            it.qa.category,
            it.qa.dataset == "locomo" and it.qa.category == 5,
            it.recall,
            count_message_tokens(it.messages, MODEL)[0],
        )
        for it in items
    }
    return {"rows": rows, "ingest_s": ingest, "query_ms": (total - ingest) / max(1, len(items)) * 1000}


def recall_of(rows: dict, keys: list, pool: str) -> list[float]:
    """The recalls of `keys` with resolvable evidence; pool 'all' or '1-4' (adversarial left out)."""
    return [rows[k][2] for k in keys if rows[k][2] is not None and (pool == "all" or not rows[k][1])]


def fmt_ci(ci: dict) -> str:
    if ci["low"] is None:
        return f"{ci['mean']:+.3f}"
    return f"{ci['mean']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"


def encode_check(n: int) -> None:
    """Our MiniLM encode against a bare sentence-transformers encode of the same texts."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from realtalk_cli.tasks.memory.embeddings import load_embedder, packaged_minilm
    from realtalk_cli.tasks.memory.retrieval import window_texts, windows

    chat = load_chat(next(iter(chat_paths([SHARED / "realtalk"]))))
    messages = list(chat.messages())
    texts = window_texts(messages, windows(messages))[:n]
    ours = load_embedder(None)
    bare = SentenceTransformer(str(packaged_minilm()), device="cpu")
    ours.encode(texts[:64]), bare.encode(texts[:64])  # warm-up: first calls pay one-off costs
    timings: dict[str, list[float]] = {"ours": [], "bare": []}
    for _ in range(3):  # interleaved, best of three: the machine is shared
        for name, encode in (
            ("ours", lambda: ours.encode(texts)),
            ("bare", lambda: bare.encode(texts, normalize_embeddings=True)),
        ):
            started = time.perf_counter()
            vectors = encode()
            timings[name].append(time.perf_counter() - started)
            if name == "ours":
                a = vectors
            else:
                b = vectors
    best = {k: min(v) for k, v in timings.items()}
    print(
        f"\nEncoding {len(texts)} window texts of {chat.name} (best of 3): realtalk {best['ours']:.2f} s, bare"
        f" sentence-transformers {best['bare']:.2f} s, ratio {best['ours'] / best['bare']:.2f};"
        f" largest difference between the vectors {float(np.abs(a - b).max()):.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=2700)
    parser.add_argument("--retrievers", default="stock,stock-bm25,bm25,dense,hybrid")
    parser.add_argument("--datasets", default="realtalk,locomo")
    parser.add_argument("--baseline", default="stock", help="the retriever the others are compared with")
    parser.add_argument("--encode", type=int, default=600, help="window texts for the encode-time check (0: skip)")
    parser.add_argument("--cold", action="store_true", help="start with an empty embedding cache")
    args = parser.parse_args()
    if args.cold:
        os.environ["REALTALK_CACHE_DIR"] = tempfile.mkdtemp()
    names = args.retrievers.split(",")
    results: dict[tuple[str, str], dict] = {}
    for dataset in args.datasets.split(","):
        files = sorted(chat_paths([SHARED / dataset]))
        for name in names:
            print(f"measuring {name} on {dataset} ...", file=sys.stderr)
            results[dataset, name] = measure(files, name, args.budget)

    print(f"Whole prompt within {args.budget} tokens ({MODEL}); evidence recall read from the prompt.\n")
    print(
        "| dataset | chats | retriever | questions with evidence | recall, all categories | recall, categories 1-4 |"
        " prompt tokens mean / max |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for (dataset, name), r in results.items():
        rows = r["rows"]
        for split in ("tuning", "held-out", "all"):
            keys = [k for k in rows if split == "all" or (k[0] in HELD_OUT[dataset]) == (split == "held-out")]
            every, kept = recall_of(rows, keys, "all"), recall_of(rows, keys, "1-4")
            prompts = [rows[k][3] for k in keys]
            print(
                f"| {dataset} | {split} | {name} | {len(every)} | {sum(every) / len(every):.3f} |"
                f" {sum(kept) / len(kept):.3f} | {sum(prompts) / len(prompts):.0f} / {max(prompts)} |"
            )

    print("\nBy category (all chats):\n")
    print("| dataset | retriever | " + " | ".join(f"category {c}" for c in range(1, 6)) + " |")
    print("|---|---|" + "---:|" * 5)
    for (dataset, name), r in results.items():
        by: dict[int, list[float]] = defaultdict(list)
        for category, _, recall, _ in r["rows"].values():
            if recall is not None:
                by[category].append(recall)
        cells = [f"{sum(by[c]) / len(by[c]):.3f}" if by[c] else "-" for c in range(1, 6)]
        print(f"| {dataset} | {name} | " + " | ".join(cells) + " |")

    pairs = [(n, args.baseline) for n in names if n not in (args.baseline, "stock-bm25") and args.baseline in names]
    if "bm25" in names and "stock-bm25" in names:
        pairs.append(("bm25", "stock-bm25"))  # BM25 alone against the stock BM25 alone
    if pairs:
        print("\nPaired difference in recall (per question; 95% bootstrap interval, sign-flip permutation p):\n")
        columns = "dataset | chats | retriever | against | categories | questions | mean recall | difference [CI] | p"
        print(f"| {columns} |")
        print("|---|---|---|---|---|---:|---:|---|---:|")
    for dataset in args.datasets.split(","):
        for name, against in pairs:
            base, rows = results[dataset, against]["rows"], results[dataset, name]["rows"]
            for split in ("held-out", "all"):
                for pool in ("all", "1-4") if dataset == "locomo" else ("all",):
                    keys = [k for k in rows if split == "all" or k[0] in HELD_OUT[dataset]]
                    keys = [k for k in keys if rows[k][2] is not None and (pool == "all" or not rows[k][1])]
                    ours, theirs = [rows[k][2] for k in keys], [base[k][2] for k in keys]
                    diff = paired_difference(ours, theirs, resamples=10000)
                    mean = bootstrap_ci(ours, resamples=0)["mean"]
                    print(
                        f"| {dataset} | {split} | {name} | {against} | {pool} | {len(keys)} | {mean:.3f} |"
                        f" {fmt_ci(diff)} | {diff['p']:.4f} |"
                    )

    print("\n| dataset | retriever | indexing s (all chats) | query ms per question |")
    print("|---|---|---:|---:|")
    for (dataset, name), r in results.items():
        print(f"| {dataset} | {name} | {r['ingest_s']:.2f} | {r['query_ms']:.1f} |")
    if args.encode:
        encode_check(args.encode)


if __name__ == "__main__":
    main()
