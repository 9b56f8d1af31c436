"""The retriever before issue 11, as a memory plug-in: unstemmed BM25 over single messages, best first.

bench/retrieval.py loads it by file path (`--memory bench/retrieval_baseline.py:MessageBM25`), which
also exercises the plug-in path the way a user's memory takes it.
"""

from realtalk_cli.tasks.memory.retrieval import BM25


class MessageBM25:
    version = "0"

    def ingest(self, chat, tools) -> None:
        self.messages = list(chat.messages())
        self.index = BM25([m.clean_text + " " + (m.blip_caption or "") for m in self.messages])

    def recall(self, question: str, budget: int) -> list[str]:
        return [self.messages[i].dia_id for i in self.index.top(question, len(self.messages))]
