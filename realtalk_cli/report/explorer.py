"""report.html: one self-contained page (leaderboard, bar chart with intervals, question explorer).

The page's data is one JSON blob; the chat messages it shows (evidence, and what retrieval put in the
prompt) come from the chat files the runs name in their manifest, or from files the caller passes.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path

import orjson

from realtalk_cli.data.evidence import parse_evidence
from realtalk_cli.data.formats import chat_ids, chat_paths, file_layout, file_sha256, iter_chats
from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.chart import bar_chart_svg
from realtalk_cli.report.leaderboard import category_of
from realtalk_cli.report.runs import Run


def evidence_ids(row: dict) -> list[str]:
    """A row's evidence ids: as the run resolved them (dangling ones after), else parsed from its raw list."""
    if isinstance(row.get("evidence_ids"), list):
        return [str(i) for i in [*row["evidence_ids"], *(row.get("evidence_dangling") or [])]]
    raw = row.get("evidence")
    raw = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    parsed = parse_evidence([str(v) for v in raw])
    return parsed.ids + parsed.unparsed


def find_chats(runs: list[Run], extra: list[Path]) -> tuple[dict[str, Chat], list[str]]:
    """Chats by name: the files given first, then those in the runs' manifests; plus warnings for the reader.

    A LongMemEval file holds one chat per question: it is read one instance at a time, and of each chat needed
    only the messages the runs' rows name (evidence, retrieved) are kept."""
    chats: dict[str, Chat] = {}
    warnings: list[str] = []
    wanted = _wanted_ids(runs)
    given: dict[str, tuple[Path, str]] = {}  # chat id (a file's stem) -> the --chats file and its sha256
    for path in chat_paths(extra):
        given.setdefault(path.stem, (path, file_sha256(path)))
        for chat in _chats_in(path, None, wanted):
            chats.setdefault(chat.name, chat)
    for run in runs:
        datasets = run.manifest.get("datasets")
        named = [(Path(n), d) for n, d in datasets.items() if isinstance(d, str)] if isinstance(datasets, dict) else []
        for (path, digest), chat_id in zip(named, chat_ids(named), strict=True):  # the ids the run's rows carry
            name = str(path)
            if chat_id in given and given[chat_id][1] != digest:
                warnings.append(
                    f"{given[chat_id][0]}: not the file run {run.id} was made with ({name}, sha256 differs); "
                    "evidence shown from it"
                )
            if not path.is_file():
                continue
            many = file_layout(path) == "longmemeval"  # its chats are named by question_id, not by the file
            missing = set(wanted) - set(chats)
            if not missing or (not many and (chat_id in chats or chat_id not in wanted)):
                continue
            try:
                found = list(_chats_in(path, missing if many else None, wanted))
            except RealtalkError as e:
                warnings.append(str(e))
                continue
            if file_sha256(path) != digest:
                warnings.append(f"{path}: changed since run {run.id} was made; evidence shown from the current file")
            for chat in found:
                if not many:
                    chat.name = chat_id
                chats.setdefault(chat.name, chat)
    missing_names = sorted(set(wanted) - set(chats))
    if missing_names:
        more = len(missing_names) - 10
        shown = ", ".join(missing_names[:10]) + (f" and {more} more" if more > 0 else "")
        warnings.append(f"chat files not found for {shown}: evidence text is not shown (pass them with --chats)")
    return chats, warnings


def _wanted_ids(runs: list[Run]) -> dict[str, set[str]]:
    """Chat name -> the message ids the runs' rows name (evidence and what retrieval showed)."""
    wanted: dict[str, set[str]] = {}
    for run in runs:
        for r in run.rows:
            ids = wanted.setdefault(r["chat"], set())
            ids.update(evidence_ids(r))
            if isinstance(r.get("retrieved"), list):
                ids.update(str(i) for i in r["retrieved"])
    return wanted


def _chats_in(path: Path, names: set[str] | None, wanted: dict[str, set[str]]):
    """The chats of one file (only `names`, when given); a LongMemEval file's pruned to the messages wanted."""
    for chat, reload in iter_chats(path):
        if names is not None and chat.name not in names:
            continue
        if reload is not None:  # one of many haystacks: keep what the rows name, not the haystack
            keep = wanted.get(chat.name, set())
            sessions = [replace(s, messages=[m for m in s.messages if m.dia_id in keep]) for s in chat.sessions]
            chat = replace(chat, sessions=sessions)
        yield chat


def explorer_data(runs: list[Run], board: dict, chats: dict[str, Chat]) -> dict:
    questions: dict[tuple, dict] = {}
    messages: dict[str, dict[str, list]] = {}

    def remember(chat_name: str, ids: list[str]) -> None:
        chat = chats.get(chat_name)
        if chat is None:
            return
        index = _index(chat)
        known = messages.setdefault(chat_name, {})
        for i in ids:
            m = index.get(i)
            if m is not None and i not in known:
                known[i] = [m.speaker, message_date(chat, m), m.clean_text]

    for run in runs if board["kind"] == "probe" else []:  # simulate runs: leaderboard and chart only
        for row in run.rows:
            key = run.key(row)
            q = questions.get(key)
            if q is None:
                q = questions[key] = {
                    "chat": row["chat"],
                    "dataset": row.get("dataset"),
                    "qa": row["qa_index"],
                    "question": row["question"],
                    "gold": row.get("answer"),
                    "category": category_of(row),
                    "evidence": evidence_ids(row),
                    "runs": {},
                }
                remember(row["chat"], q["evidence"])
            fix = row.get("erratum") if board.get("errata") else None
            if isinstance(fix, dict):  # `report --errata`: the corrected gold beside the published one
                q["corrected"] = {"id": fix.get("id"), "gold": fix.get("gold")}
            retrieved = row.get("retrieved")
            answer = {
                "prediction": row.get("prediction"),
                "f1": row.get("f1"),
                "f1_date": row.get("f1_date_normalised"),
                "judge": row.get("judge_score"),
            }
            if isinstance(retrieved, list):
                answer["retrieved"] = [str(i) for i in retrieved]
                remember(row["chat"], answer["retrieved"])
            q["runs"][run.id] = answer
    ordered = sorted(questions.values(), key=lambda q: (q["chat"], q["qa"]))
    return {
        "runs": [{k: r[k] for k in _RUN_FIELDS} for r in board["runs"]],
        "questions": ordered,
        "messages": messages,
        "chats_found": sorted(chats),
    }


def message_date(chat: Chat, m) -> str:
    """The message's own time (REALTALK), else its session's date (LoCoMo dates sessions, not messages)."""
    if m.date_time:
        return m.date_time
    session = next((s for s in chat.sessions if s.number == m.session), None)
    return f"session {m.session}, {session.date_time}" if session is not None else f"session {m.session}"


_RUN_FIELDS = ("id", "label", "model", "context", "memory", "judge", "path")
_INDEX_CACHE: dict[int, dict] = {}


def _index(chat: Chat) -> dict:
    if id(chat) not in _INDEX_CACHE:
        _INDEX_CACHE[id(chat)] = chat.message_index()
    return _INDEX_CACHE[id(chat)]


def _resource(name: str) -> str:
    return resources.files("realtalk_cli").joinpath("resources", name).read_text(encoding="utf-8")


def _script_json(obj) -> str:
    # Inside <script>, "</script" would close the tag early and "<!--<script" would keep it open past its end:
    # no "<" is left as is (in JSON it can only be inside a string, where \u003c is the same text).
    text = orjson.dumps(obj).decode().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")  # for old parsers


def render_html(board: dict, data: dict, warnings: list[str], title: str) -> str:
    charts = "".join(
        f"<figure>{bar_chart_svg(board, metric)}<figcaption>{html.escape(name)} per category, mean with 95% "
        f"bootstrap interval; runs as in the leaderboard.</figcaption></figure>"
        for metric, name in board["metrics"].items()
    )
    notes = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)
    parts = {
        "CSS": _resource("explorer.css"),
        "JS": _resource("explorer.js"),
        "TITLE": html.escape(title),
        "WARNINGS": notes,
        "CHARTS": charts,
        "DATA": _script_json({"board": board, **data}),
    }
    # One pass, so that text inside the data can never be taken for a placeholder.
    return re.sub(r"@@(CSS|JS|TITLE|WARNINGS|CHARTS|DATA)@@", lambda m: parts[m.group(1)], _resource("explorer.html"))
