"""What a probe protocol and a judge protocol are: the two interfaces the probe run asks instead of testing
which protocol it follows.

A probe protocol decides which questions are asked and how: the context layout and answer prompt (its
items), the sampling parameters of every answer request, how a reply becomes the prediction, and which judge
grades by default. A judge protocol decides the judge's prompt, its request, how a verdict is read and how
often an unreadable one is asked again. Implementations live one module each in `protocols/` and `judges/`
and are registered by name in those packages' `__init__.py`; a run makes a fresh instance, so prompt files
edited between runs are read again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from realtalk_cli.data.model import QAItem
from realtalk_cli.llm.client import Completion
from realtalk_cli.tasks.probe.items import Item

if TYPE_CHECKING:
    from realtalk_cli.tasks.memory.runner import MemoryRunner


class ProbeProtocol:
    """How a probe run asks its questions. Subclass it and register the class in `protocols/__init__.py`."""

    name: ClassVar[str] = ""
    answer_params: ClassVar[dict] = {}
    """Parameters of every answer request (`temperature`, `max_tokens`...); None leaves one to the provider."""
    judge: ClassVar[str] = "realtalk"
    """The judge protocol (a name in `judges/__init__.py`) that grades this protocol's answers."""
    judge_with_answering_model: ClassVar[bool] = False
    """Without --judge-model, grade with the answering model (as the paper's script does) instead of not at all."""
    keep_raw_reply: ClassVar[bool] = False
    """The prediction is the reply as it came (the paper's script does not strip it); else stripped."""
    takes_context: ClassVar[bool] = True
    """Whether --context and --memory apply; a protocol that lays out the whole chat itself says False."""
    with_memory: ClassVar[type[ProbeProtocol] | None] = None
    """The protocol a run with --memory follows instead, when this one lays out the whole chat itself (mem0's
    memory prompt beside its full-context one); None: --memory does not apply."""
    batch: ClassVar[bool] = True
    """Whether the run can go as batch jobs (`--batch`)."""

    def prompt_hashes(self) -> dict[str, str]:
        """The answer prompts' hashes (not the judge's): part of the run's identity and its manifest."""
        raise NotImplementedError

    def build_items(self, files: list[Path], opts, model: str, memories: MemoryRunner | None) -> list[Item]:
        """One item per question asked, in order, at most `opts.limit` (`opts`: the run's ProbeOptions, which
        import the protocols, hence no annotation); `memories` chooses the context when set."""
        raise NotImplementedError

    def requests(self, items: list[Item]) -> list[list[Item]]:
        """The items asked together, one request each: one item per request unless the protocol batches questions."""
        return [[item] for item in items]

    def request(self, group: list[Item]) -> list[dict]:
        """The messages of one request for a group of `requests`."""
        return group[0].messages

    def replies(self, group: list[Item], completion: Completion) -> list[Completion]:
        """The reply of one request as one completion per item of its group, in order; the request's usage is
        counted once (on the first)."""
        return [completion]

    def scores(self, row: dict) -> dict[str, float]:
        """The protocol's own scores of an answered row beside realtalk's (e.g. LoCoMo's rounded F1), each
        under a name of its own (`f1_locomo`): never one column for two different scores."""
        return {}

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict | None:
        """What the report's manifest says about the protocol (None: realtalk's own, described in the README)."""
        return None


class JudgeProtocol:
    """How answers are graded. Subclass it and register the class in `judges/__init__.py`."""

    name: ClassVar[str] = ""
    params: ClassVar[dict] = {}
    """Parameters of a live judge request (sampling, `response_format`)."""
    batch_params: ClassVar[dict] = {}
    """The same request's parameters in a batch job's body."""
    attempts: ClassVar[int] = 2
    """How many replies an item is asked for at most in one invocation while they are unusable (malformed, or
    `settled` rejects them): the client's re-asks, all of them billed and counted, never multiplied by others."""
    cached: ClassVar[bool] = True
    """Whether verdicts may come from the response cache (not when a re-ask must reach the model)."""
    max_tokens: ClassVar[int] = 200
    """The reply size a dry run prices."""

    def prompt_hashes(self) -> dict[str, str]:
        """The judge prompt's hash, keyed by its name (for the manifest)."""
        raise NotImplementedError

    @property
    def prompt_hash(self) -> str:
        """What a judged row records as `judge_prompt`: a verdict counts only under the same prompt."""
        return next(iter(self.prompt_hashes().values()))

    def check_item(self, qa: QAItem, where: str) -> None:
        """Raise RealtalkError (naming `where`) when this judge cannot grade the item, e.g. it needs fields of
        another dataset; called for every item before a run asks anything."""

    def messages(self, row: dict) -> list[dict]:
        """The request that grades one answered predictions row."""
        raise NotImplementedError

    def parse(self, text: str) -> float | None:
        """The score in [0, 1] a reply gives, or None when it gives none."""
        raise NotImplementedError

    def settled(self, text: str) -> bool:
        """Whether a reply ends the re-asking (within `attempts`); a reply it rejects is never cached."""
        return self.parse(text) is not None

    @property
    def request(self) -> dict:
        """What a live judge request passes to the client: `params`, the reply check and the attempts."""
        return {**self.params, "accept": self.settled, "reply_attempts": self.attempts}
