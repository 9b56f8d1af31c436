"""Running the memory of a probe run: choosing it, calling into it safely, packing what it recalls.

Each call into a memory (importing it once per run, building and ingesting a chat, recalling for a question,
letting go of it so that its `__del__` runs) is guarded: under a deadline in a daemon thread (a thread cannot
be killed: one past its deadline is left running, and the console script's exit waits neither for it nor for
threads the plug-in started), what it prints going to stderr (stdout carries realtalk's own output, e.g.
`--json`), a working directory it changes put back, and its exception text one line with API keys redacted.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import hashlib
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from realtalk_cli.data.model import Chat
from realtalk_cli.errors import IncompleteRun, RealtalkError
from realtalk_cli.llm.client import Totals
from realtalk_cli.llm.jobs import dry_run_plan
from realtalk_cli.llm.providers import Endpoint, Prices, api_keys
from realtalk_cli.llm.replies import redact
from realtalk_cli.tasks.memory.loader import Loaded, build_memory, load_factory, memory_identity
from realtalk_cli.tasks.memory.packing import Packer, Recalled, check_recalled, is_unicode
from realtalk_cli.tasks.memory.protocol import Memory, MemoryTools, Passage

RETRIEVER_CONTEXTS = ("retrieval", "bm25", "dense", "hybrid")
GIVE_UP_AFTER = 3  # recalls past the deadline in a row, after which a chat's other questions are not asked


@dataclass
class MemoryChoice:
    spec: str
    options: dict[str, str]
    note: str | None = None  # e.g. why `retrieval` fell back to bm25


def memory_choice(
    context: str, memory: str | None, memory_options: dict[str, str], top_k: int | None, embedder: str | None
) -> MemoryChoice | None:
    """The memory a probe run uses: `--memory SPEC`, or the retriever `--context` names; None for full/events."""
    if memory:
        return MemoryChoice(memory, dict(memory_options))
    if context not in RETRIEVER_CONTEXTS:
        return None
    spec, note = context, None
    if context == "retrieval":
        from realtalk_cli.tasks.memory.embeddings import embedder_available

        why_not = embedder_available() if embedder is None else None
        spec = "hybrid" if why_not is None else "bm25"
        if why_not:
            note = f"retrieval used bm25 alone: the dense embedder is unavailable ({why_not})"
    options = {"top_k": str(top_k)} if top_k else {}
    if embedder and spec != "bm25":
        options["embedder"] = embedder
    return MemoryChoice(spec, options, note)


class MemoryRunner:
    """Builds the chosen memory for each chat, ingests it once (timed) and packs its answers into the budget.

    Every call into the memory goes through `GuardedCalls` (the module's docstring says what it guards), with a
    deadline of `timeout` seconds (None: no deadline, called inline).
    """

    def __init__(
        self,
        choice: MemoryChoice,
        count: Callable[[str], int],
        store_root: Path | None = None,
        complete: Callable[..., list[str | None]] | None = None,
        timeout: float | None = None,
        key_envs: tuple[str, ...] = (),
    ):
        self.choice = choice
        self.calls = GuardedCalls(f"--memory {choice.spec}", timeout, key_envs)

        def load() -> tuple[Loaded, dict]:
            loaded = load_factory(choice.spec)
            return loaded, memory_identity(loaded, choice.options)

        try:  # importing a plug-in runs its code: guarded as its calls are, and once per run
            self.loaded, self.identity = self.calls.run("import", choice.spec, load)
        except CallTimeout:
            raise RealtalkError(
                f"--memory {choice.spec}: importing it took longer than --memory-timeout {timeout:g} s"
            ) from None
        self.count = count
        self.store_root = store_root
        self.complete = complete
        self.timeout = timeout
        self.ingest_s: dict[str, float] = {}
        self.unknown_ids = 0
        self.unknown_examples: list[str] = []
        self.over_budget = 0
        self.over_budget_tokens = 0
        self.over_budget_questions: list[dict] = []  # per question: where, items and tokens left out, budget
        self.counted_with: str | None = None  # how the budget was counted, for the report
        self.prompts_over_limit = 0  # questions whose prompt exceeds the bound with no context at all
        self.progress: Callable | None = None  # the run's progress display for tools.progress; None: lines on stderr
        self.recall_timeouts = 0
        self.recalls_not_asked = 0  # after GIVE_UP_AFTER timeouts in a row on a chat
        self.llm_totals = Totals()  # the memory's own LLM requests, apart from answering
        self.dry_requests: list[list[dict]] = []  # what ingesting would send, in a dry run
        self._held: list[Memory] = []  # the memory of the chat being asked about
        self._held_chat = ""
        self.dry_max_tokens: int | None = None  # the largest max_tokens those requests asked for

    def count_requests(
        self, requests: list[list[dict]], max_tokens: int | None = None, temperature: float | None = None
    ) -> list[str | None]:
        """A dry run's `tools.complete`: the requests are kept for the estimate and every reply is None, as for a
        failed request."""
        self.dry_requests += requests
        if max_tokens is not None:
            self.dry_max_tokens = max(self.dry_max_tokens or 0, max_tokens)
        return [None] * len(requests)

    def _checked_complete(
        self, requests: list[list[dict]], max_tokens: int | None = None, temperature: float | None = None
    ) -> list[str | None]:
        """`tools.complete` as the memory sees it: its requests and parameters checked, then sent (or counted in a
        dry run)."""
        if max_tokens is not None and (type(max_tokens) is not int or not 1 <= max_tokens <= 1_000_000):
            raise RealtalkError(
                f"--memory {self.choice.spec}: tools.complete(max_tokens={max_tokens!r}): expected a whole number"
                " of tokens, at least 1"
            )
        if temperature is not None and (
            type(temperature) not in (int, float) or not 0 <= temperature <= 2  # nan fails both comparisons
        ):
            raise RealtalkError(
                f"--memory {self.choice.spec}: tools.complete(temperature={temperature!r}): expected a number from"
                " 0 to 2"
            )
        if not isinstance(requests, list) or not all(
            isinstance(r, list) and r and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in r)
            for r in requests
        ):
            raise RealtalkError(
                f"--memory {self.choice.spec}: tools.complete() takes a list of requests, each a list of messages"
                ' like {"role": "user", "content": "text"}'
            )
        fields = [text for r in requests for m in r for pair in m.items() for text in pair]
        if not all(isinstance(text, str) for text in fields) or not all("role" in m for r in requests for m in r):
            raise RealtalkError(
                f"--memory {self.choice.spec}: tools.complete(): a message has a role and a content, and its fields"
                ' and values are text (like {"role": "user", "content": "text"})'
            )
        if not all(is_unicode(text) for text in fields):
            raise RealtalkError(
                f"--memory {self.choice.spec}: tools.complete() was given text that is not valid Unicode (a lone"
                " surrogate, which no request can carry)"
            )
        with self.calls.not_counted():  # realtalk's client: each request has its own --timeout
            return self.complete(requests, max_tokens=max_tokens, temperature=temperature)

    def dry_run_notes(self, endpoint: Endpoint, prices: Prices, max_tokens: int, context_max: int) -> dict:
        """What a dry run adds for the memory: questions left out (recall past the deadline) and, for a memory
        that calls the LLM while ingesting, those requests estimated apart (each reply at `max_tokens`). What such
        a memory writes is unknown before it runs: the answers' prompts may hold up to `context_max` more tokens."""
        notes: dict = {}
        if self.recall_timeouts:  # questions left out: recalls past the deadline, and those then not asked
            notes["recall_timeouts"] = self.recall_timeouts + self.recalls_not_asked
        if self.dry_requests:
            replies = self.dry_max_tokens or max_tokens
            notes["memory"] = dry_run_plan(endpoint, prices, self.dry_requests, 0, "request", replies)
            notes["memory"]["answer_context_tokens_max"] = context_max
        return notes

    def add_llm_usage(self, totals: Totals) -> None:
        for f in fields(Totals):
            setattr(self.llm_totals, f.name, getattr(self.llm_totals, f.name) + getattr(totals, f.name))

    def summary(self) -> dict:
        """The report's `memory` section: identity, ingestion time and LLM usage, what did not fit."""
        t = self.llm_totals
        return {
            **self.identity,
            "note": self.choice.note,
            "counted_with": self.counted_with,
            "ingest_s": self.ingest_s,
            "ingest_total_s": round(sum(self.ingest_s.values()), 3),
            "ingest_llm": {
                "requests": t.requests,
                "cached": t.cached,
                "errors": t.errors,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "cost_usd": round(t.cost_usd, 6),
            },
            "unknown_ids": self.unknown_ids,
            "unknown_id_examples": self.unknown_examples,
            "items_over_budget": self.over_budget,
            "items_over_budget_tokens": self.over_budget_tokens,
            "questions_over_budget": len(self.over_budget_questions),
            "most_over_budget": sorted(self.over_budget_questions, key=lambda q: -q["tokens"])[:5],
            "prompts_over_limit": self.prompts_over_limit,
            "recall_timeouts": self.recall_timeouts,
            "recalls_not_asked": self.recalls_not_asked,
        }

    def release(self) -> None:
        """Let go of the memory of the chat done with, inside a guarded call, so that its `__del__` is guarded like
        its other calls (prints to stderr, working directory put back, bounded by the deadline)."""
        held, self._held = self._held, []
        if not held:
            return

        def drop() -> None:
            held.clear()
            if self.loaded.plugin:
                gc.collect()  # a memory in a reference cycle: its __del__ runs now, not at a random later point

        with contextlib.suppress(CallTimeout):
            self.calls.run("release", self._held_chat, drop)

    def open(self, chat: Chat) -> Callable[[str, int], Recalled]:
        """Ingest `chat` (releasing the memory of the chat before); returns the recall of its questions
        (CallTimeout past the deadline)."""
        self.release()
        store = None
        if self.store_root is not None:
            store = self.store_root / store_name(chat.name)
            store.mkdir(parents=True, exist_ok=True)
        # The memory reads a copy without the questions: it may not see the gold answers, nor change the chat.
        shown = copy.deepcopy(dataclasses.replace(chat, qa=[]))

        def build_and_ingest() -> Memory:
            memory = build_memory(self.loaded, self.choice.options)
            complete = self._checked_complete if self.complete else None
            memory.ingest(shown, MemoryTools(store, self.count, complete, self.progress or line_stage))
            return memory

        started = time.perf_counter()
        try:
            memory = self.calls.run("ingest", chat.name, build_and_ingest)
        except CallTimeout:
            raise IncompleteRun(
                f"--memory {self.choice.spec}: ingest on {chat.name} took longer than --memory-timeout "
                f"{self.timeout:g} s, so the run stopped before asking its questions; run the same command again "
                "(with a larger --memory-timeout) to continue"
            ) from None
        self.ingest_s[chat.name] = round(time.perf_counter() - started, 3)
        packer = Packer(chat, self.count)
        held = self._held = [memory]  # the only reference kept: release() ends it
        self._held_chat = chat.name
        del memory

        def recall(question: str, budget: int) -> list[str | Passage]:
            items = held[0].recall(question, budget)
            # checked and copied into plain values here, under the deadline: a list, str or Passage may be a
            # subclass whose iteration, __str__ or attributes hang or raise when realtalk reads them
            check_recalled(items, self.choice.spec)
            return [_plain(item) for item in items]

        timeouts_in_a_row = 0

        def ask(
            question: str,
            budget: int,
            where: str = "",
            over: Callable[[str], int] | None = None,
            pack: Callable[[list[str | Passage], int], Recalled] | None = None,
        ) -> Recalled:
            """What the memory recalls, packed into `budget` context tokens. `where` names the question in the
            report (e.g. `Chat_1 #3`); `over(context)`, when given, is by how many tokens the whole prompt around
            that context exceeds its bound: the context is packed again, smaller, until it fits. `pack(items,
            budget)` lays the items out in another protocol's layout (default: realtalk's, `Packer.pack`)."""
            nonlocal timeouts_in_a_row
            if timeouts_in_a_row >= GIVE_UP_AFTER:  # a memory stuck for good would cost the deadline per question
                self.recalls_not_asked += 1
                raise CallTimeout(
                    f"--memory {self.choice.spec}: recall not asked: {GIVE_UP_AFTER} recalls in a row on {chat.name}"
                    " took longer than --memory-timeout"
                )
            try:
                items = self.calls.run("recall", chat.name, lambda: recall(question, budget))
            except CallTimeout:
                self.recall_timeouts += 1
                timeouts_in_a_row += 1
                raise
            timeouts_in_a_row = 0
            pack = pack or packer.pack
            recalled = pack(items, budget)
            while over is not None and (excess := over(recalled.context)) > 0:
                if not recalled.context:  # instructions and question alone exceed the bound
                    self.prompts_over_limit += 1
                    break
                budget = max(0, budget - excess)
                recalled = pack(items, budget)
            self.note_unknown(chat.name, recalled)
            if recalled.over_budget:
                self.over_budget += recalled.over_budget
                self.over_budget_tokens += recalled.over_budget_tokens
                self.over_budget_questions.append(
                    {
                        "question": where or question[:80],
                        "items": recalled.over_budget,
                        "tokens": recalled.over_budget_tokens,
                        "budget": budget,
                    }
                )
            return recalled

        return ask

    def note_unknown(self, chat: str, recalled: Recalled) -> None:
        """Count the ids that named no message, keep a few examples; the first time in a run, say so on stderr."""
        if not recalled.unknown_ids:
            return
        if not any(e in self.unknown_examples for e in recalled.unknown_examples) and len(self.unknown_examples) < 5:
            first = not self.unknown_examples
            self.unknown_examples += recalled.unknown_examples[: 5 - len(self.unknown_examples)]
            if first:
                shown = ", ".join(repr(e) for e in recalled.unknown_examples)
                sys.stderr.write(
                    f"warning: --memory {self.choice.spec}: on {chat} it gave ids that name no message ({shown});"
                    " ids are matched without case or spaces, like D3:12; report.json counts them (unknown_ids)\n"
                )
        self.unknown_ids += recalled.unknown_ids


@contextlib.contextmanager
def line_stage(label: str, total: int):
    """tools.progress without a run's progress display: one line on stderr as the step starts."""
    sys.stderr.write(f"{label} ...\n")
    yield lambda n: None


def store_name(chat_id: str) -> str:
    """The folder of a chat's memory store: its id as a plain file name, with a short hash of the id where that
    changed it ("Ana Ben" and "Ana_Ben" keep a store each; "a/Chat_1" stays inside the run folder)."""
    plain = re.sub(r"[^\w.-]", "_", chat_id)
    if plain == chat_id and plain.strip("."):
        return plain
    return f"{plain}-{hashlib.sha256(chat_id.encode()).hexdigest()[:8]}"


def _plain(item: str | Passage) -> str | Passage:
    if isinstance(item, Passage):
        date = None if item.date is None else str.__str__(item.date)
        speaker = None if item.speaker is None else str.__str__(item.speaker)
        return Passage(str.__str__(item.text), [str.__str__(i) for i in item.ids], date, speaker)
    return str.__str__(item)


def _error_text(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:
        return f"{type(error).__name__} (its message could not be read)"


class CallTimeout(Exception):
    """A call into the plug-in outlived its deadline (it may still be running in its thread)."""


class GuardedCalls:
    """Calls into one plug-in, named `who` in messages (e.g. `--memory my.py:Mem`); `timeout` None: no deadline.

    With a deadline, every call runs in the same worker thread, one at a time, so that what the plug-in made in
    one call (a sqlite3 connection, thread-local state) works in the next; a call past its deadline keeps that
    thread, and the next call gets a new one. Time spent in `not_counted()` (waiting on realtalk's own LLM
    client, whose requests have their own --timeout) does not count towards the deadline.
    """

    def __init__(self, who: str, timeout: float | None, key_envs: tuple[str, ...] = ()):
        self.who = who
        self.timeout = timeout
        self.key_envs = key_envs  # the run's API-key variables, redacted from error text with every provider's
        self._warned: set[str] = set()
        self._jobs: queue.SimpleQueue | None = None  # the worker thread's queue
        self._lock = threading.Lock()
        self._uncounted = 0  # not_counted() blocks in progress
        self._uncounted_since = 0.0
        self._uncounted_s = 0.0  # seconds spent in finished ones

    @contextlib.contextmanager
    def not_counted(self):
        with self._lock:
            if not self._uncounted:
                self._uncounted_since = time.monotonic()
            self._uncounted += 1
        try:
            yield
        finally:
            with self._lock:
                self._uncounted -= 1
                if not self._uncounted:
                    self._uncounted_s += time.monotonic() - self._uncounted_since

    def _uncounted_total(self) -> float:
        with self._lock:
            return self._uncounted_s + (time.monotonic() - self._uncounted_since if self._uncounted else 0.0)

    def _wait(self, finished: threading.Event) -> bool:
        """Whether the call finished within the deadline, time in not_counted() left out."""
        started, uncounted = time.monotonic(), self._uncounted_total()
        while True:
            left = self.timeout - (time.monotonic() - started) + (self._uncounted_total() - uncounted)
            if left <= 0:
                return finished.is_set()
            if finished.wait(min(left, threading.TIMEOUT_MAX)):
                return True

    def _submit(self, job: Callable[[], None]) -> None:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            worker = threading.Thread(target=_serve, args=(self._jobs,), name="realtalk memory", daemon=True)
            worker.realtalk_memory = True  # see _StuckPrints
            worker.start()
        self._jobs.put(job)

    def run(self, step: str, where: str, call: Callable):
        """`call()`'s value. Its exception is one RealtalkError line naming the plug-in, the step and where
        (KeyboardInterrupt and RealtalkError pass as they are); past the deadline, CallTimeout."""
        outcome: dict[str, object] = {}
        finished = threading.Event()

        def work() -> None:
            try:
                outcome["value"] = call()
            except BaseException as e:  # reported in the calling thread
                outcome["error"] = e
                outcome["text"] = _error_text(e)  # read here, under the deadline: its __str__ is the plug-in's code
            finally:
                finished.set()

        cwd = os.getcwd()
        before = set(threading.enumerate())
        failure: BaseException | None = None
        with _stdout_to_stderr():
            if self.timeout is None:
                work()
            else:
                self._submit(work)
                try:
                    self._wait(finished)
                except BaseException:  # Ctrl-C: the worker may be busy for good; a later call gets a new one
                    self._jobs = None
                    raise
            if finished.is_set() and "error" in outcome:
                # the plug-in's exception and its frames are freed here, under the redirect
                failure = self._failure(outcome.pop("error"), outcome.pop("text"), step, where)
        self._restore(cwd, before)
        if not finished.is_set():
            self._jobs = None  # its worker is busy with this call, perhaps for good
            if not isinstance(sys.stdout, _StuckPrints):  # what it prints from now on must not reach stdout either
                sys.stdout = _StuckPrints(sys.stdout)
            raise CallTimeout(f"{self.who}: {step} on {where} took longer than --memory-timeout {self.timeout:g} s")
        if failure is not None:
            raise failure
        return outcome["value"]

    def _failure(self, error: BaseException, text: str, step: str, where: str) -> BaseException:
        """What the caller raises for a plug-in's exception: one line, with any API key or bearer token in its text
        redacted as in a server's error text. A new exception: the plug-in's frames are not kept alive by it."""
        if isinstance(error, KeyboardInterrupt):
            return KeyboardInterrupt()
        keys = api_keys(self.key_envs)
        if isinstance(error, RealtalkError):  # realtalk's own checks of what the plug-in did, and the loader's
            return type(error)(" ".join(redact(str(error), keys).split()))
        return RealtalkError(f"{self.who}: {step} failed on {where}: {' '.join(redact(text, keys).split())}")

    def _restore(self, cwd: str, threads_before: set[threading.Thread]) -> None:
        if os.getcwd() != cwd:
            os.chdir(cwd)
            self._warn("cwd", "it changed the working directory; realtalk changed it back")
        left = [t for t in threading.enumerate() if t not in threads_before and not t.daemon and t.is_alive()]
        for t in left:
            t.realtalk_abandoned = True  # read by the console script's exit (cli/__init__.py main)
        if left:
            names = ", ".join(sorted(t.name for t in left))
            self._warn("threads", f"it left threads running ({names}); realtalk will not wait for them at exit")

    def _warn(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            sys.stderr.write(f"warning: {self.who}: {message}\n")


class _StuckPrints:
    """sys.stdout once a memory call has outlived its deadline: what a memory worker thread still prints goes to
    stderr (the redirect of its call ended when realtalk stopped waiting for it); everyone else's to stdout."""

    def __init__(self, stdout):
        self._stdout = stdout

    def write(self, text: str) -> int:
        memory = getattr(threading.current_thread(), "realtalk_memory", False)
        return (sys.stderr if memory else self._stdout).write(text)

    def __getattr__(self, name: str):
        return getattr(self._stdout, name)


def _serve(jobs: queue.SimpleQueue) -> None:
    while True:
        jobs.get()()


@contextlib.contextmanager
def _stdout_to_stderr():
    """Python's print and child processes alike."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptor 1 or 2: Python's own stdout is still redirected
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
