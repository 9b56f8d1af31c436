"""EI labels from any chat model via the LLM client: one call per message (session as context) or per session."""

from __future__ import annotations

import json
import re

from realtalk_cli.analysis.ei_annotation import annotate
from realtalk_cli.analysis.ei_lexicon import SENTIMENTS
from realtalk_cli.data.model import Chat, Message

LLM_EMOTIONS = ("anger", "joy", "optimism", "sadness", "neutral")

LABEL_SPEC = (
    '"sentiment": one of positive, neutral, negative; '
    f'"emotion": one of {", ".join(LLM_EMOTIONS)}; '
    '"reflective": true if the speaker reflects on their own thoughts or feelings; '
    '"grounding": true if the message clarifies or follows up on what the partner said; '
    '"empathy": {"emotional_reaction": 0-2, "interpretation": 0-2, "exploration": 0-2} '
    "(how the message responds to the partner's feelings; all 0 if it does not respond to them); "
    '"intimacy": 1 (not intimate) to 5 (very intimate)'
)


def _session_text(chat: Chat, session_number: int, start_index: int, mark: int | None = None) -> str:
    session = next(s for s in chat.sessions if s.number == session_number)
    lines = []
    for offset, m in enumerate(session.messages):
        i = start_index + offset
        prefix = ">>> " if i == mark else ""
        lines.append(f"{prefix}[{i}] {m.speaker}: {m.clean_text}")
    return f"Session {session_number} ({session.date_time}):\n" + "\n".join(lines)


def message_prompt(chat: Chat, index: int, session_number: int, start: int) -> str:
    return (
        "Here is one session of a chat between two people.\n\n"
        + _session_text(chat, session_number, start, mark=index)
        + f"\n\nLabel the message marked >>> (number {index}). Reply with JSON only, with the keys: {LABEL_SPEC}."
    )


def session_prompt(chat: Chat, session_number: int, start: int) -> str:
    return (
        "Here is one session of a chat between two people.\n\n"
        + _session_text(chat, session_number, start)
        + "\n\nLabel every message. Reply with JSON only: a list with one object per message, with the key "
        f'"i" (the message number) and the keys: {LABEL_SPEC}.'
    )


def text_prompt(context: str, speaker: str, text: str) -> str:
    """Labels for one message given the conversation before it (used to label generated messages)."""
    return (
        "Here is a chat between two people.\n\n"
        + context
        + f"\n>>> {speaker}: {text}\n\nLabel the message marked >>>. Reply with JSON only, with the keys: {LABEL_SPEC}."
    )


def labels_from_reply(reply: str) -> dict:
    parsed = _loads_lenient(reply)
    return _labels_dict(parsed if isinstance(parsed, dict) else {})


def _loads_lenient(text: str):
    text = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.M).strip()
    match = re.search(r"[\[{].*[\]}]", text, re.S)
    if not match:
        return None
    blob = re.sub(r",\s*([}\]])", r"\1", match.group(0))
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        return None


def reply_has_labels(text: str) -> bool:
    """Whether a reply labelling one message holds a readable label (else it is a bad reply, never cached)."""
    parsed = _loads_lenient(text)
    return isinstance(parsed, dict) and readable(_labels_dict(parsed))


def labels_every(members: list[tuple[int, Message]], per: str):
    """The reply check of one labelling call: it labels every message it was asked about (else it is a bad
    reply, asked again and never cached: a partial reply, cached, would answer its re-ask forever)."""

    def check(text: str) -> bool:
        by_index = _labels_by_index(_loads_lenient(text), members, per)
        return all(readable(_labels_dict(by_index.get(i, {}))) for i, _ in members)

    return check


def _labels_by_index(parsed, members: list[tuple[int, Message]], per: str) -> dict[int, dict]:
    """A parsed reply's labels by message number: a list of objects with "i" per session, one object per message."""
    if per == "session" and isinstance(parsed, list):
        return {int(x["i"]): x for x in parsed if isinstance(x, dict) and str(x.get("i", "")).isdigit()}
    if isinstance(parsed, dict):
        return {members[0][0]: parsed}
    return {}


def readable(labels: dict) -> bool:
    """At least one label came through: a reply of prose or wrong keys labels nothing."""
    return any(labels.get(k) is not None for k in ("sentiment", "emotion", "reflective", "grounding"))


def _labels_dict(labels: dict) -> dict:
    """An LLM's JSON labels, checked: anything off the allowed values becomes None."""
    sentiment = str(labels.get("sentiment", "")).lower()
    emotion = str(labels.get("emotion", "")).lower()
    out = {
        "sentiment": sentiment if sentiment in SENTIMENTS else None,
        "emotion": emotion if emotion in LLM_EMOTIONS else None,
        "reflective": labels.get("reflective") if isinstance(labels.get("reflective"), bool) else None,
        "grounding": labels.get("grounding") if isinstance(labels.get("grounding"), bool) else None,
        "empathy": None,
        "intimacy": None,
    }
    empathy = labels.get("empathy")
    if isinstance(empathy, dict):
        parts = [empathy.get(k) for k in ("emotional_reaction", "interpretation", "exploration")]
        if all(isinstance(p, (int, float)) and 0 <= p <= 2 for p in parts):
            out["empathy"] = float(sum(parts))
    intimacy = labels.get("intimacy")
    if isinstance(intimacy, (int, float)) and 1 <= intimacy <= 5:
        out["intimacy"] = (float(intimacy) - 1) / 4
    return out


def llm_jobs(chat: Chat, todo: set[int], per: str) -> list[tuple[list[tuple[int, Message]], str]]:
    """(messages labelled by the call, prompt) for every call the llm backend makes."""
    jobs = []
    index = 0
    for session in chat.sessions:
        start = index
        members = [(start + k, m) for k, m in enumerate(session.messages) if start + k in todo]
        index += len(session.messages)
        if not members:
            continue
        if per == "session":
            jobs.append((members, session_prompt(chat, session.number, start)))
        else:
            jobs.extend(([(i, m)], message_prompt(chat, i, session.number, start)) for i, m in members)
    return jobs


def llm_requests(pending: list[tuple[Chat, set[int]]], per: str) -> tuple[list[tuple], int]:
    """Every call the llm backend makes for the pending messages, and the reply budget per call."""
    calls = []
    for chat, todo in pending:
        calls.extend((chat, members, prompt) for members, prompt in llm_jobs(chat, todo, per))
    longest = max((len(members) for _, members, _ in calls), default=1)
    max_tokens = 150 if per == "message" else 50 + 60 * longest  # room for one JSON object per message
    return calls, max_tokens


def _record(tag: tuple[Chat, list[tuple[int, Message]]], completion, per: str, source: str, sink) -> None:
    """Write the labels a reply holds for its messages; a message without readable labels is not written."""
    chat, members = tag
    parsed = _loads_lenient(completion.text) if completion.error is None else None
    by_index = _labels_by_index(parsed, members, per)
    for i, m in members:
        labels = _labels_dict(by_index.get(i, {}))
        if completion.error is not None or not readable(labels):
            continue  # not written: the next run asks again
        sink(annotate(chat, i, m, source, labels))


def label_llm_batch(
    pending: list[tuple[Chat, set[int]]], client, per: str, sink, folder, max_cost=None, spending=None
) -> tuple[str | None, bool]:
    """The labelling calls as a batch job (llm/batch.py): record what came back (in the run folder's `spending`
    too); (what is pending, if anything; whether --max-cost held calls back)."""
    from realtalk_cli.llm import batch

    calls, max_tokens = llm_requests(pending, per)
    tags = {f"{chat.name}#{members[0][0]}": (chat, members) for chat, members, _ in calls}
    requests = [(f"{chat.name}#{members[0][0]}", [{"role": "user", "content": p}]) for chat, members, p in calls]
    params = {"temperature": 0.0, "max_tokens": max_tokens}  # as a live run sends: the same cache keys

    def accept(custom_id: str, text: str) -> bool:
        return custom_id in tags and labels_every(tags[custom_id][1], per)(text)

    def record(results: dict, batch_id: str | None) -> None:
        if spending is not None:
            spending.record("labels", results.values(), batch=batch_id)
        for custom_id, completion in results.items():
            if custom_id in tags:
                _record(tags[custom_id], completion, per, f"llm:{client.endpoint.label}", sink)

    spent = spending.spent() if spending is not None else 0.0
    return batch.step(client, folder, "label", requests, params, record, max_cost, spent, accept=accept)


def label_llm(pending: list[tuple[Chat, set[int]]], client, per: str, sink, over_budget=lambda: False) -> bool:
    """Label every pending message with one call per message or per session; write each as it arrives.
    Returns True when the run stopped at --max-cost (`over_budget()`: what the run folder spent reached it)."""
    from realtalk_cli.llm.jobs import StopRun, run_jobs

    calls, max_tokens = llm_requests(pending, per)

    def done(tag: tuple[Chat, list[tuple[int, Message]]], completion) -> None:
        _record(tag, completion, per, f"llm:{client.endpoint.label}", sink)
        if over_budget():
            raise StopRun()

    jobs = [((chat, members), [{"role": "user", "content": p}]) for chat, members, p in calls]
    stopped = bool(jobs) and over_budget()  # spent already by earlier invocations: nothing is sent
    jobs = [] if stopped else jobs
    every = run_jobs(client, jobs, done, max_tokens=max_tokens, accept_of=lambda tag: labels_every(tag[1], per))
    return every or stopped
