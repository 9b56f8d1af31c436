"""The judge protocols, by name: one module each in this folder, registered in `JUDGES` below.

A new judge (e.g. another harness's grading prompt) is one module defining a `JudgeProtocol` subclass
(tasks/probe/protocol.py: its prompt, request, verdict parsing and re-asks) and one line here.
"""

from __future__ import annotations

from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.probe.judges.longmemeval import LongMemEvalJudge
from realtalk_cli.tasks.probe.judges.mem0 import Mem0Judge
from realtalk_cli.tasks.probe.judges.paper import PaperJudge
from realtalk_cli.tasks.probe.judges.realtalk import RealtalkJudge
from realtalk_cli.tasks.probe.protocol import JudgeProtocol

JUDGES: dict[str, type[JudgeProtocol]] = {j.name: j for j in (RealtalkJudge, PaperJudge, Mem0Judge, LongMemEvalJudge)}


def register(judge: type[JudgeProtocol]) -> None:
    JUDGES[judge.name] = judge


def judge_protocol(name: str) -> JudgeProtocol:
    """A fresh judge of that name (its prompt files read now)."""
    if name not in JUDGES:
        raise RealtalkError(f"judge protocol {name!r}: choose {', '.join(JUDGES)}")
    return JUDGES[name]()
