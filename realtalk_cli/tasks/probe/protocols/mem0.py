"""mem0's LoCoMo harness, byte for byte (`probe --compat mem0`): its full-context baseline, and with `--memory` its
memory answer prompt over what the memory recalls.

Source: mem0ai/mem0 `evaluation/` (commit aae5989): `src/rag.py` with `--chunk_size -1` (the Makefile's
`run-full-context`), `src/memzero/search.py` and `prompts.py` (`ANSWER_PROMPT`; the Makefile's `run-mem0-search`,
`--top_k 30`), `metrics/llm_judge.py` (its judge "J": judges/mem0.py), `metrics/utils.py` (its F1); facts and
exact strings in `shared/LITERATURE_PROTOCOLS.md` §1.

- Context (`clean_chat_history`): every turn of every `session_N` (N digits only, ascending), turns in order, as
  `f"{session_N_date_time} | {speaker}: {text}\\n"`; no captions, no ids; turn text `clean_text` where the key
  exists (REALTALK), else `text`.
- Request: mem0's system message, then `PROMPT` rendered as Jinja2 renders it (its single trailing newline
  dropped) with the question and the context; temperature 0, no max_tokens; the reply stripped.
- Judge: mem0's J (CORRECT/WRONG in JSON mode), graded by the `--judge-model` given (mem0 hard-codes
  gpt-4o-mini; the report names the model used); without one, F1 only.
- mem0's own F1 (token sets, no stemming) is kept as `f1_mem0` beside realtalk's `f1`; its BLEU-1 needs NLTK's
  tokenizer data and is not computed.

With `--memory SPEC` (`Mem0MemoryProtocol`, as `search.py` answers):
- Prompt: `ANSWER_PROMPT` rendered as Jinja2 renders it (nothing dropped: it ends with four spaces) with
  `speaker_N_user_id` = the speaker's name cut at its first `_` (`f"{speaker}_{idx}".split("_")[0]`; speaker 1 is
  LoCoMo's `speaker_a`, REALTALK's `name.speaker_1`), `speaker_N_memories` = `json.dumps([f"{timestamp}:
  {memory}", ...], indent=4)` (ASCII escapes, as json.dumps writes by default), and the question as mem0 reads it.
- Request: that prompt as one system message and nothing else, temperature 0, no max_tokens; the reply kept as it
  came (search.py does not strip it; mem0's F1 strips, its judge gets the reply as is).
- Category 5 and the judge as in the full-context baseline.

What the sources leave open (§7), chosen here and written in the run's manifest:
- Category 5: mem0 asks LoCoMo's adversarial questions (gold `""`) but never scores them (no F1, no J): they
  are not asked here, which changes no score mem0 reports and costs nothing.
- Memories per speaker: mem0 searches each speaker's own store (`filters={"user_id": ...}`, top 30, best first;
  add.py fills a speaker's store from that speaker's messages). A realtalk memory answers one `recall` per
  question, best first, so its items are dealt to the two speakers in that order, at most 30 each: a message id
  goes to its message's speaker, as `"{its session's date_time}: {its text}"` (`clean_text`, else `text`, no
  caption, as add.py reads a turn); a `Passage` to its `speaker` when it names one (a plug-in wrapping mem0 keeps
  one store per speaker and says whose memory each is), else to the one speaker of the messages its ids name, else
  (no ids, or both speakers') to both lists; as `"{date}: {text}"`, or its text alone when it has no date. A chat
  with a message by anyone else is refused, as add.py raises on an unknown speaker.
- Budget: mem0 sets none; here each prompt stays within `--context-tokens` (the whole prompt, as realtalk's own
  protocol counts it): items are kept in order while they fit, and those left out are counted in the report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.tokens import count_message_tokens, count_tokens, counted_with
from realtalk_cli.scoring.evidence import evidence_recall
from realtalk_cli.scoring.literature import mem0_f1
from realtalk_cli.tasks.memory.packing import Recalled, id_key, in_prompt
from realtalk_cli.tasks.memory.protocol import Passage
from realtalk_cli.tasks.memory.runner import CallTimeout, MemoryRunner, memory_choice
from realtalk_cli.tasks.probe.items import Item, chosen_questions, recall_if_claimed
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
# prompts.py ANSWER_PROMPT (mem0's and LangMem's memory baselines), a Jinja2 template
ANSWER_PROMPT = (
    "\n"
    "    You are an intelligent memory assistant tasked with retrieving accurate information from conversation"
    " memories.\n"
    "\n"
    "    # CONTEXT:\n"
    "    You have access to memories from two speakers in a conversation. These memories contain \n"
    "    timestamped information that may be relevant to answering the question.\n"
    "\n"
    "    # INSTRUCTIONS:\n"
    "    1. Carefully analyze all provided memories from both speakers\n"
    "    2. Pay special attention to the timestamps to determine the answer\n"
    "    3. If the question asks about a specific event or fact, look for direct evidence in the memories\n"
    "    4. If the memories contain contradictory information, prioritize the most recent memory\n"
    '    5. If there is a question about time references (like "last year", "two months ago", etc.), \n'
    "       calculate the actual date based on the memory timestamp. For example, if a memory from \n"
    '       4 May 2022 mentions "went to India last year," then the trip occurred in 2021.\n'
    "    6. Always convert relative time references to specific dates, months, or years. For example, \n"
    '       convert "last year" to "2022" or "two months ago" to "March 2023" based on the memory \n'
    "       timestamp. Ignore the reference while answering the question.\n"
    "    7. Focus only on the content of the memories from both speakers. Do not confuse character \n"
    "       names mentioned in memories with the actual users who created those memories.\n"
    "    8. The answer should be less than 5-6 words.\n"
    "\n"
    "    # APPROACH (Think step by step):\n"
    "    1. First, examine all memories that contain information related to the question\n"
    "    2. Examine the timestamps and content of these memories carefully\n"
    "    3. Look for explicit mentions of dates, times, locations, or events that answer the question\n"
    "    4. If the answer requires calculation (e.g., converting relative time references), show your work\n"
    "    5. Formulate a precise, concise answer based solely on the evidence in the memories\n"
    "    6. Double-check that your answer directly addresses the question asked\n"
    "    7. Ensure your final answer is specific and avoids vague time references\n"
    "\n"
    "    Memories for user {{speaker_1_user_id}}:\n"
    "\n"
    "    {{speaker_1_memories}}\n"
    "\n"
    "    Memories for user {{speaker_2_user_id}}:\n"
    "\n"
    "    {{speaker_2_memories}}\n"
    "\n"
    "    Question: {{question}}\n"
    "\n"
    "    Answer:\n"
    "    "
)
MEMORY_SOURCE = (
    "mem0ai/mem0 aae5989: evaluation/src/memzero/search.py (--top_k 30), prompts.py ANSWER_PROMPT, "
    "metrics/llm_judge.py, metrics/utils.py"
)
TOP_K = 30  # memories per speaker: the Makefile's run-mem0-search --top_k 30
CATEGORY_5 = "not asked: mem0 asks LoCoMo's adversarial questions but never scores them"
F1 = "f1_mem0: mem0's token-set F1 (no stemming); BLEU-1 not computed (needs NLTK's tokenizer data)"


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


def _asked(chat: Chat, qa) -> bool:
    """mem0 asks category 5 but never scores it: not asked here."""
    return not (chat.dataset == "locomo" and qa.category == 5)


def _scores(row: dict) -> dict[str, float]:
    return {"f1_mem0": mem0_f1(row["prediction"], str(row.get("answer", "")))}


def _judge(judge: str | None) -> str:
    return f"{judge} (mem0 hard-codes gpt-4o-mini)" if judge else "none (give --judge-model for mem0's J)"


def render_memory_prompt(speakers: tuple[str, str], memories: tuple[list[str], list[str]], question: str) -> str:
    """`jinja2.Template(ANSWER_PROMPT).render(...)` as search.py calls it: the speakers' user ids (`speakers`: their
    names), each speaker's memories as `json.dumps(list, indent=4)`, the question. Each field is filled once with
    its value as it is (Jinja2 does not render a value again); a single trailing newline would be dropped, but
    ANSWER_PROMPT ends with spaces."""
    values = {
        "speaker_1_user_id": user_id(speakers[0]),
        "speaker_2_user_id": user_id(speakers[1]),
        "speaker_1_memories": json.dumps(memories[0], indent=4),
        "speaker_2_memories": json.dumps(memories[1], indent=4),
        "question": question,
    }
    text = ANSWER_PROMPT[:-1] if ANSWER_PROMPT.endswith("\n") else ANSWER_PROMPT
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def user_id(speaker: str) -> str:
    """search.py's user id in the prompt: `f"{speaker}_{idx}".split("_")[0]`, the name up to its first `_`."""
    return speaker.split("_")[0]


def memory_entry(timestamp: str | None, memory: str) -> str:
    """One memory as search.py lists it (`f"{timestamp}: {memory}"`); the text alone when it has no date."""
    return f"{timestamp}: {memory}" if timestamp else memory


@dataclass
class SpeakerMemories(Recalled):
    """What a memory recalled for one question, as mem0's two lists (speaker 1's, speaker 2's)."""

    lists: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))


class SpeakerLists:
    """Deals a memory's recall for one chat into mem0's two per-speaker lists (the module's docstring says how)."""

    def __init__(self, chat: Chat, count: Callable[[str], int], spec: str):
        self.chat = chat
        self.count = count
        self.spec = spec
        self.messages = list(chat.messages())
        self.position: dict[str, int] = {}
        for i, m in enumerate(self.messages):
            self.position.setdefault(id_key(m.dia_id), i)
        self.dates = {s.number: s.date_time for s in chat.sessions}

    def slot(self, speaker: str) -> int | None:
        """0 for speaker 1, 1 for speaker 2 (add.py's order of tests), else None."""
        return 0 if speaker == self.chat.speaker_1 else 1 if speaker == self.chat.speaker_2 else None

    def passage_slots(self, p: Passage) -> tuple[int, ...]:
        if p.speaker is not None:
            named = self.slot(p.speaker)
            if named is None:  # the name as the chat writes it, else without case or outer spaces
                folded = [n.strip().casefold() for n in (self.chat.speaker_1, self.chat.speaker_2)]
                named = folded.index(p.speaker.strip().casefold()) if p.speaker.strip().casefold() in folded else None
            if named is None:
                raise RealtalkError(
                    f"--memory {self.spec}: recall() returned a Passage whose speaker {p.speaker[:40]!r} is neither"
                    f" of {self.chat.name}'s speakers ({self.chat.speaker_1}, {self.chat.speaker_2})"
                )
            return (named,)
        slots = {
            self.slot(self.messages[i].speaker)
            for claim in p.ids
            if (i := self.position.get(id_key(claim))) is not None
        }
        return (slots.pop(),) if len(slots) == 1 else (0, 1)

    def pack(
        self, items: list[str | Passage], budget: int, prompt: Callable[[tuple[list[str], list[str]]], str], over
    ) -> SpeakerMemories:
        """At most TOP_K memories per speaker, in the memory's order, while the memories fit `budget` tokens and the
        whole prompt (`prompt(lists)`) is within its bound (`over(prompt)`: by how many tokens it exceeds it)."""
        chosen: list[tuple[str | Passage, tuple[int, ...], str, int]] = []  # item, slots, entry, cost
        lists: tuple[list[str], list[str]] = ([], [])
        shown: set[int] = set()
        used = unknown = skipped = skipped_tokens = 0
        examples: list[str] = []

        def note_unknown(text: str) -> None:
            nonlocal unknown
            unknown += 1
            if len(examples) < 3:
                examples.append(text if len(text) <= 40 else text[:37] + "...")

        for item in items:
            if isinstance(item, Passage):
                slots, entry = self.passage_slots(item), memory_entry(item.date, item.text)
            else:
                i = self.position.get(id_key(item))
                if i is None:
                    note_unknown(item)
                    continue
                if i in shown:
                    continue
                m = self.messages[i]
                slots, entry = (self.slot(m.speaker),), memory_entry(self.dates.get(m.session), m.clean_text)
            slots = tuple(s for s in slots if len(lists[s]) < TOP_K)
            if not slots:  # past mem0's top_k for that speaker: not shown, as mem0's search returns no more
                continue
            cost = len(slots) * (self.count(json.dumps(entry)) + 1)
            if used + cost > budget:
                skipped += 1
                skipped_tokens += cost
                continue
            chosen.append((item, slots, entry, cost))
            used += cost
            for s in slots:
                lists[s].append(entry)
            if isinstance(item, str):
                shown.add(i)
        while chosen and over(prompt(lists)) > 0:  # the running sum is an estimate; the whole prompt decides
            item, slots, entry, cost = chosen.pop()
            for s in slots:
                lists[s].pop()
            if isinstance(item, str):
                shown.discard(self.position[id_key(item)])
            skipped += 1
            skipped_tokens += cost
        ids = [self.messages[i].dia_id for i in sorted(shown)]
        passages = [item for item, *_ in chosen if isinstance(item, Passage)]
        claimed = []  # ids a passage claims count as a shown message's would; ids naming no message do not
        for p in passages:
            for claim in p.ids:
                i = self.position.get(id_key(claim))
                if i is None:
                    note_unknown(claim)
                elif self.messages[i].dia_id not in ids:
                    claimed.append(self.messages[i].dia_id)
        context = "\n\n".join(json.dumps(entries, indent=4) for entries in lists) if chosen else ""
        return SpeakerMemories(
            context,
            ids + list(dict.fromkeys(claimed)),
            self.count(context) if context else 0,
            any(isinstance(item, str) or item.ids for item in items),
            unknown,
            skipped,
            skipped_tokens,
            examples,
            ids,
            passages,
            lists,
        )


class Mem0MemoryProtocol(ProbeProtocol):
    """`--compat mem0 --memory SPEC`: mem0's memory answer prompt (search.py) over what the memory recalls."""

    name = "mem0"
    answer_params = {"temperature": 0.0, "max_tokens": None}
    judge = "mem0"
    keep_raw_reply = True  # search.py returns response.choices[0].message.content as it came
    batch = False

    def prompt_hashes(self) -> dict[str, str]:
        return {"mem0:memory_prompt": text_hash(ANSWER_PROMPT)}

    def build_items(self, files: list[Path], opts, model: str, memories: MemoryRunner | None) -> list[Item]:
        chats = list(chosen_questions(files, opts, _asked))  # every chat read and checked before one is ingested
        for path, chat, _ in chats:
            two_speakers(path, chat)
        if memories is None:
            choice = memory_choice(opts.context, opts.memory, opts.memory_options, opts.top_k, opts.embedder)
            memories = MemoryRunner(choice, lambda text: count_tokens(text, model)[0])
        memories.counted_with = counted_with(model)
        try:
            items, claims = [], False
            for path, chat, questions in chats:
                for item in self._chat_items(path, chat, questions, opts.context_tokens, model, memories):
                    claims = claims or item.claims
                    items.append(item)
        except KeyboardInterrupt:
            raise  # the process ends at once: nothing waits on the memory
        except BaseException:
            memories.release()
            raise
        memories.release()  # the last chat's memory: its __del__ guarded like its other calls
        return recall_if_claimed(items, claims)

    def _chat_items(self, path: Path, chat: Chat, questions, limit: int, model: str, memories: MemoryRunner):
        ask = memories.open(chat)
        lists = SpeakerLists(chat, memories.count, memories.choice.spec)
        index = chat.message_index()
        speakers = (chat.speaker_1, chat.speaker_2)

        def over(text: str) -> int:  # by how many tokens a prompt exceeds --context-tokens
            return count_message_tokens([{"role": "system", "content": text}], model)[0] - limit

        for i, qa in questions:
            # search.py's val.get("question", ""): the reader keeps it verbatim (a string)
            prompt = partial(render_memory_prompt, speakers, question=qa.question)
            rest = over(prompt(([], [])))  # the prompt without memories
            if rest > 0:
                memories.prompts_over_limit += 1
            try:
                pack = partial(lists.pack, prompt=prompt, over=over)
                recalled = ask(qa.question, max(0, -rest), f"{chat.name} #{i}", pack=pack)
            except CallTimeout as e:
                item = Item.with_lazy_prompt(chat, path, i, qa, str)
                item.role, item.error = "system", str(e)
                yield item
                continue
            text = prompt(recalled.lists)
            # given whole, as it goes (Item.with_prompt would fill a "{context}" a memory's text holds)
            item = Item.with_lazy_prompt(chat, path, i, qa, lambda text=text: text)
            item.role = "system"
            item.retrieved, item.context_tokens, item.claims = recalled.ids, recalled.tokens, recalled.claims
            evidence = resolve_evidence(chat, qa.evidence, index).resolved
            item.recall = evidence_recall(evidence, in_prompt(recalled, [index[e] for e in evidence]))
            item.recall_claimed = evidence_recall(evidence, recalled.ids)
            yield item

    def scores(self, row: dict) -> dict[str, float]:
        return _scores(row)

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        return {
            "compat": self.name,
            "source": MEMORY_SOURCE,
            "context": "mem0's memory prompt (ANSWER_PROMPT): each speaker's memories as json.dumps(['TIMESTAMP: "
            "memory', ...], indent=4), the user ids as the speakers' names cut at their first '_'",
            "memories": f"one recall per question, its items dealt in order to the two speakers, at most {TOP_K} "
            "each (mem0 searches each speaker's store, top 30): a message id to its speaker as 'SESSION DATE: "
            "text'; a Passage to its speaker field, else to the one speaker of the messages its ids name, else to "
            "both, as 'DATE: text' (its text alone without a date)",
            "budget": "mem0 sets none: the whole prompt within --context-tokens, items kept in order while they fit",
            "request_parameters": "the rendered prompt as one system message, temperature 0, no max_tokens; the "
            "reply not stripped",
            "category_5": CATEGORY_5,
            "judge": _judge(judge),
            "f1": F1,
        }


class Mem0Protocol(ProbeProtocol):
    name = "mem0"
    answer_params = {"temperature": 0.0, "max_tokens": None}
    judge = "mem0"
    takes_context = False
    batch = False
    with_memory = Mem0MemoryProtocol  # with --memory: mem0's memory prompt

    def prompt_hashes(self) -> dict[str, str]:
        return {"mem0:system": text_hash(SYSTEM), "mem0:prompt": text_hash(PROMPT)}

    def build_items(self, files: list[Path], opts, model: str, memories) -> list[Item]:
        items: list[Item] = []
        for path, chat, questions in chosen_questions(files, opts, _asked):
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
        return _scores(row)

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        return {
            "compat": self.name,
            "source": SOURCE,
            "context": "every turn of every session, oldest first, 'DATE | speaker: text' lines (full context)",
            "request_parameters": "mem0's system message + the rendered prompt, temperature 0, no max_tokens",
            "category_5": CATEGORY_5,
            "judge": _judge(judge),
            "f1": F1,
        }


def two_speakers(path: Path, chat: Chat) -> None:
    """mem0's memory prompt holds two speakers' memories, and add.py raises on a turn by anyone else: so does this."""
    for m in chat.messages():
        if m.speaker not in (chat.speaker_1, chat.speaker_2):
            raise RealtalkError(
                f"{path}: message {m.dia_id} is by {m.speaker!r}, neither {chat.speaker_1!r} nor {chat.speaker_2!r};"
                " mem0's memory prompt lists two speakers' memories (--compat mem0 --memory)"
            )
