"""The stock baseline of issue 22, as a memory plug-in: what a practitioner would assemble from stock parts.

rank_bm25's BM25Okapi (k1=1.2, b=0.75, epsilon=0.25; re-implemented here line for line, as rank_bm25 is not a
dependency) over lower-cased word tokens, and the MiniLM sentence embeddings (the same vectors as
sentence-transformers' encode: bench/retrieval.py checks that), fused by reciprocal-rank fusion (k=60), over
the same ±2-message windows as realtalk's retrievers, packed by realtalk into the same whole-prompt budget.
No stemming, no dates, no query expansion. bench/retrieval.py loads it by file path, as a user's memory.

`MessageBM25` is the retriever before issue 11 (unstemmed BM25 over single messages), kept for history;
`WholeWindows` realtalk's `hybrid` before it ranked messages (version 2: each ranked window shown whole).
"""

import math
import re
from collections import Counter

from realtalk_cli.tasks.memory.builtins import RetrieverMemory
from realtalk_cli.tasks.memory.embeddings import load_embedder
from realtalk_cli.tasks.memory.retrieval import BM25, window_ids, window_texts, windows

_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25Okapi:
    """rank_bm25.BM25Okapi: Robertson idf log((N - n + 0.5) / (n + 0.5)), negative idfs floored at epsilon times
    the average idf."""

    def __init__(self, corpus: list[list[str]], k1: float = 1.2, b: float = 0.75, epsilon: float = 0.25):
        self.k1, self.b = k1, b
        self.doc_freqs = [Counter(doc) for doc in corpus]
        self.doc_len = [len(doc) for doc in corpus]
        self.avgdl = sum(self.doc_len) / len(corpus)
        nd = Counter(word for doc in self.doc_freqs for word in doc)
        n = len(corpus)
        self.idf = {w: math.log(n - f + 0.5) - math.log(f + 0.5) for w, f in nd.items()}
        floor = epsilon * sum(self.idf.values()) / len(self.idf)
        self.idf = {w: (idf if idf >= 0 else floor) for w, idf in self.idf.items()}

    def get_scores(self, query: list[str]) -> list[float]:
        scores = [0.0] * len(self.doc_freqs)
        for q in query:
            idf = self.idf.get(q) or 0.0
            if not idf:
                continue
            for i, (doc, length) in enumerate(zip(self.doc_freqs, self.doc_len, strict=True)):
                f = doc.get(q)
                if f:
                    scores[i] += idf * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * length / self.avgdl))
        return scores


def rrf(rankings: list[list[int]], k: int = 60) -> list[int]:
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + 1 / (k + rank + 1)
    return sorted(score, key=lambda i: (-score[i], i))


class StockHybrid:
    version = "1"

    def __init__(self, retriever: str = "hybrid"):
        self.retriever = retriever  # hybrid, bm25 or dense

    def ingest(self, chat, tools) -> None:
        self.messages = list(chat.messages())
        self.windows = windows(self.messages, 2)
        texts = window_texts(self.messages, self.windows)
        self.bm25 = BM25Okapi([tokenize(t) for t in texts])
        self.embedder = load_embedder(None)
        self.vectors = self.embedder.encode_cached(texts, tools.progress, f"windows of {chat.name}")

    def recall(self, question: str, budget: int) -> list[str]:
        rankings = []
        if self.retriever in ("hybrid", "bm25"):
            scores = self.bm25.get_scores(tokenize(question))
            rankings.append(sorted(range(len(scores)), key=lambda i: (-scores[i], i)))
        if self.retriever in ("hybrid", "dense"):
            dense = self.vectors @ self.embedder.encode([question])[0]
            rankings.append(sorted(range(len(dense)), key=lambda i: (-dense[i], i)))
        ranking = rankings[0] if len(rankings) == 1 else rrf(rankings)
        return window_ids(self.messages, self.windows, ranking)


class MessageBM25:
    version = "0"

    def ingest(self, chat, tools) -> None:
        self.messages = list(chat.messages())
        self.index = BM25([m.clean_text + " " + (m.blip_caption or "") for m in self.messages])

    def recall(self, question: str, budget: int) -> list[str]:
        return [self.messages[i].dia_id for i in self.index.top(question, len(self.messages))]


class WholeWindows(RetrieverMemory):
    """realtalk's `hybrid` (or `--memory-option retriever=...`) showing each ranked window whole, its own message
    then its neighbours nearest first, whoever speaks: the order before `message_ids`."""

    version = "2"

    def recall(self, question: str, budget: int) -> list[str]:
        return window_ids(self.messages, self.windows, self.rank(question))
