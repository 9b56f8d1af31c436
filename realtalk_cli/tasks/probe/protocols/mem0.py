"""mem0's LoCoMo harness, full-context baseline, byte for byte (`probe --compat mem0`).

Source: mem0ai/mem0 `evaluation/` (commit aae5989): `src/rag.py` with `--chunk_size -1` (the Makefile's
`run-full-context`), `metrics/llm_judge.py` (its judge "J": judges/mem0.py), `metrics/utils.py` (its F1);
facts and exact strings in `shared/LITERATURE_PROTOCOLS.md` §1.

- Context (`clean_chat_history`): every turn of every `session_N` (N digits only, ascending), turns in order, as
  `f"{session_N_date_time} | {speaker}: {text}\\n"`; no captions, no ids; turn text `clean_text` where the key
  exists (REALTALK), else `text`.
- Request: mem0's system message, then `PROMPT` rendered as Jinja2 renders it (its single trailing newline
  dropped) with the question and the context; temperature 0, no max_tokens; the reply stripped.
- Judge: mem0's J (CORRECT/WRONG in JSON mode), graded by the `--judge-model` given (mem0 hard-codes
  gpt-4o-mini; the report names the model used); without one, F1 only.
- mem0's own F1 (token sets, no stemming) is kept as `f1_mem0` beside realtalk's `f1`; its BLEU-1 needs NLTK's
  tokenizer data and is not computed.

Choices, each stated in the run's manifest:
- Category 5: mem0 asks LoCoMo's adversarial questions (gold `""`) but never scores them (no F1, no J): they
  are not asked here, which changes no score mem0 reports and costs nothing.
- Memory systems (`--memory`): mem0's memory answer prompt (§1.3) needs per-speaker memories with timestamps;
  not yet offered: `--compat mem0` takes the whole chat only.
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.scoring.literature import mem0_f1
from realtalk_cli.tasks.probe.items import Item, chosen_questions
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.probe.protocols.paper import conversation, load_file
from realtalk_cli.tasks.prompts import text_hash

SYSTEM = (
    "You are a helpful assistant that can answer questions based on the provided context."
    "If the question involves timing, use the conversation date for reference."
    "Provide the shortest possible answer."
    "Use words directly from the conversation when possible."
    "Avoid using subjects in your answer."
)
PROMPT = "\n# Question: \n{{QUESTION}}\n\n# Context: \n{{CONTEXT}}\n\n# Short answer:\n"
SOURCE = "mem0ai/mem0 aae5989: evaluation/src/rag.py (--chunk_size -1), metrics/llm_judge.py, metrics/utils.py"


def render(question: str, context: str) -> str:
    """`jinja2.Template(PROMPT).render(...)`: values inserted as they are; Jinja2 drops one trailing newline."""
    text = PROMPT[:-1] if PROMPT.endswith("\n") else PROMPT
    before, rest = text.split("{{QUESTION}}")
    middle, after = rest.split("{{CONTEXT}}")
    return before + question + middle + context + after


def chat_history(conv: dict) -> str:
    """`clean_chat_history` over the turns of locomo10_rag.json, rebuilt from the conversation."""
    numbers = sorted(
        int(k.split("_")[1])
        for k in conv
        if k.startswith("session_") and k.split("_")[1].isdigit() and len(k.split("_")) == 2
    )
    lines = []
    for n in numbers:
        stamp = conv[f"session_{n}_date_time"]
        for m in conv[f"session_{n}"]:
            text = m["clean_text"] if "clean_text" in m else m["text"]
            lines.append(f"{stamp} | {m['speaker']}: {text}\n")
    return "".join(lines)


class Mem0Protocol(ProbeProtocol):
    name = "mem0"
    answer_params = {"temperature": 0.0, "max_tokens": None}
    judge = "mem0"
    takes_context = False
    batch = False

    def prompt_hashes(self) -> dict[str, str]:
        return {"mem0:system": text_hash(SYSTEM), "mem0:prompt": text_hash(PROMPT)}

    def build_items(self, files: list[Path], opts, model: str, memories) -> list[Item]:
        items: list[Item] = []
        asks = lambda chat, qa: not (chat.dataset == "locomo" and qa.category == 5)  # noqa: E731  (never scored)
        for path, chat, questions in chosen_questions(files, opts, asks):
            data = load_file(path)
            try:
                history = chat_history(conversation(data))
            except KeyError as e:
                raise RealtalkError(f"{path}: missing key {e} that mem0's harness reads") from None
            for i, qa in questions:
                question = str(data["qa"][i].get("question", ""))  # as evals.py passes it: str(item["question"])
                item = Item.with_prompt(chat, path, i, qa, render(question, history))
                item.system = SYSTEM
                items.append(item)
        return items

    def scores(self, row: dict) -> dict[str, float]:
        return {"f1_mem0": mem0_f1(row["prediction"], str(row.get("answer", "")))}

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        return {
            "compat": self.name,
            "source": SOURCE,
            "context": "every turn of every session, oldest first, 'DATE | speaker: text' lines (full context)",
            "request_parameters": "mem0's system message + the rendered prompt, temperature 0, no max_tokens",
            "category_5": "not asked: mem0 asks LoCoMo's adversarial questions but never scores them",
            "judge": f"{judge} (mem0 hard-codes gpt-4o-mini)" if judge else "none (give --judge-model for mem0's J)",
            "f1": "f1_mem0: mem0's token-set F1 (no stemming); BLEU-1 not computed (needs NLTK's tokenizer data)",
        }
