"""The probe protocols, by name (`--compat NAME`): one module each in this folder, registered in `PROTOCOLS`.

A new protocol (another harness's prompts and sampling, byte for byte) is one module defining a
`ProbeProtocol` subclass (tasks/probe/protocol.py: its items and prompts, answer parameters, default judge)
and one line here; `probe run --compat NAME` then runs it, resumes it and reports it like any other.
"""

from __future__ import annotations

from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.probe.protocols.locomo import LocomoBatchedProtocol, LocomoProtocol
from realtalk_cli.tasks.probe.protocols.longmemeval import LongMemEvalProtocol
from realtalk_cli.tasks.probe.protocols.mem0 import Mem0Protocol
from realtalk_cli.tasks.probe.protocols.paper import PaperOnceProtocol, PaperProtocol
from realtalk_cli.tasks.probe.protocols.realtalk import RealtalkProtocol

PROTOCOLS: dict[str, type[ProbeProtocol]] = {
    p.name: p
    for p in (
        RealtalkProtocol,
        PaperProtocol,
        PaperOnceProtocol,
        LocomoProtocol,
        LocomoBatchedProtocol,
        Mem0Protocol,
        LongMemEvalProtocol,
    )
}
ALIASES = {"official": "paper"}  # the name earlier versions used for the paper's layout
DEFAULT = RealtalkProtocol.name  # a run's options store it as compat None, as every earlier version did


def register(protocol: type[ProbeProtocol]) -> None:
    PROTOCOLS[protocol.name] = protocol


def compat_mode(value: str | None) -> str | None:
    """The canonical --compat value of a protocol name or alias (None: realtalk's own)."""
    mode = ALIASES.get(value, value) if value is not None else DEFAULT
    if mode not in PROTOCOLS:
        names = ", ".join([*(n for n in PROTOCOLS if n != DEFAULT), *ALIASES])
        raise RealtalkError(f"--compat {value!r}: choose {names}")
    return None if mode == DEFAULT else mode


def probe_protocol(compat: str | None, memory: bool = False) -> ProbeProtocol:
    """A fresh instance of the protocol a run's `compat` option names (its prompt files read now); with `memory`
    (the run has --memory), the protocol's own for memory systems where it has one (`with_memory`)."""
    protocol = PROTOCOLS[compat_mode(compat) or DEFAULT]
    return (protocol.with_memory if memory and protocol.with_memory else protocol)()
