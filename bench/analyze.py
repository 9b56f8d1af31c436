"""EI analysis cost: the lexicon backend's speed over all shared chats (messages per second), and the
llm backend's requests and prompt tokens per message, per-message vs per-session labelling.

    python bench/analyze.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtalk_cli.analysis.ei import run_ei  # noqa: E402
from realtalk_cli.analysis.ei_llm import llm_jobs  # noqa: E402
from realtalk_cli.data.formats import chat_paths, load_chat  # noqa: E402
from realtalk_cli.llm.tokens import count_tokens  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    chats = [load_chat(p) for p in chat_paths([SHARED / "realtalk", SHARED / "locomo"])]
    n = sum(sum(1 for _ in c.messages()) for c in chats)
    run_ei(chats[:1], Path(tempfile.mkdtemp()), "lexicon")  # load VADER and NRC once, outside the timing
    start = time.perf_counter()
    run_ei(chats, Path(tempfile.mkdtemp()), "lexicon")
    seconds = time.perf_counter() - start
    print(f"lexicon backend: {n} messages in {len(chats)} chats, {seconds:.2f} s, {n / seconds:,.0f} messages/s")

    realtalk = [c for c in chats if c.dataset == "realtalk"]
    m = sum(sum(1 for _ in c.messages()) for c in realtalk)
    print(f"\nllm backend on the {len(realtalk)} shared REALTALK chats ({m} messages), gpt-4o-mini tokenizer:")
    for per in ("message", "session"):
        jobs = [job for c in realtalk for job in llm_jobs(c, set(range(sum(1 for _ in c.messages()))), per)]
        tokens = sum(count_tokens(prompt, "gpt-4o-mini")[0] for _, prompt in jobs)
        print(
            f"  per {per:8s} {len(jobs):>6} requests ({len(jobs) / m:.3f}/message), "
            f"{tokens:>10,} prompt tokens ({tokens / m:,.0f}/message)"
        )


if __name__ == "__main__":
    main()
