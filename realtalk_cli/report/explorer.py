"""report.html: the leaderboard, bar chart with intervals, and the question explorer.

The page's own data is one JSON blob (the leaderboard, the runs, and how the question list is split). The question
list, with every run's answers and the chat messages they cite (evidence, and what retrieval put in the prompt),
comes in parts of about `PART_BYTES`: inside the page when the whole list is one part (a self-contained file),
else as `report-data/part-0001.js`... beside it, which the page loads when it needs them. A part is a script
calling `realtalkReportPart(token, index, data)`: browsers run sibling scripts of a page opened from `file://`,
where they refuse `fetch()`. The chat messages come from the chat files the runs name in their manifest, or
from files the caller passes.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
import orjson

from realtalk_cli.data.evidence import parse_evidence
from realtalk_cli.data.formats import chat_ids, chat_paths, file_layout, file_sha256, iter_chats
from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.chart import bar_chart_svg
from realtalk_cli.report.runs import Run, category_of

PART_BYTES = 1_000_000  # the question list is cut into parts of about this size
DATA_DIR = "report-data"  # the parts' folder, beside report.html
PART_NAME = re.compile(r"(part|chat)-\d{4,}\.js")
_BATCH = 512  # questions read from the runs at a time


def evidence_ids(row: dict) -> list[str]:
    """A row's evidence ids: as the run resolved them (dangling ones after), else parsed from its raw list."""
    if isinstance(row.get("evidence_ids"), list):
        return [str(i) for i in [*row["evidence_ids"], *(row.get("evidence_dangling") or [])]]
    raw = row.get("evidence")
    raw = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return list(_parsed_evidence(tuple(map(str, raw))))


@functools.lru_cache(maxsize=65536)
def _parsed_evidence(raw: tuple[str, ...]) -> tuple[str, ...]:
    parsed = parse_evidence(raw)
    return (*parsed.ids, *parsed.unparsed)


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
    """Chat name -> the message ids the runs' rows name (evidence and what retrieval showed): the ids only for a
    LongMemEval file's chats (read again from the rows), where they prune a haystack to what the page shows."""
    keys = runs[0].items.keys if runs else []
    answered = np.zeros(len(keys), dtype=bool)
    for run in runs:
        answered[run.answers.items] = True
    wanted: dict[str, set[str]] = {keys[i][0]: set() for i in np.flatnonzero(answered)}
    for run in runs:
        if "longmemeval" not in run.datasets:
            continue
        for r in run.answered_rows():
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


@dataclass
class Questions:
    """The explorer's question list as it is cut into parts: each part's JSON, and what the page needs besides."""

    total: int = 0
    chats: list[str] = field(default_factory=list)  # the chats of the questions, in their order
    parts: list[dict] = field(default_factory=list)  # {"count": n} and {"file": ...} or {"data": ...}
    chat_files: dict[str, str] = field(default_factory=dict)  # chat -> its messages' file, when parts are files


def question_order(runs: list[Run]) -> list[tuple[int, int]]:
    """(run index, item number) of each question, with the run that first answered it, in the order the page lists
    them: by chat and question index; where those are equal, in the order the runs answered them."""
    if not runs or runs[0].kind != "probe":  # simulate runs: leaderboard and chart only
        return []
    items = np.concatenate([r.answers.items for r in runs])
    if not len(items):
        return []
    first = np.full(len(runs[0].items.keys), len(items), dtype=np.int64)
    np.minimum.at(first, items, np.arange(len(items)))
    first = np.sort(first[first < len(items)])  # in the order the runs answered them
    starts = np.cumsum([0, *(len(r.answers) for r in runs)])
    owner = np.searchsorted(starts, first, side="right") - 1
    keys = runs[0].items.keys
    found = list(zip(owner.tolist(), items[first].tolist(), strict=True))
    return sorted(found, key=lambda ri: keys[ri[1]][:2])


def page_fields(row: dict) -> bytes:
    """What the page shows of a probe row's answer (JSON), kept while the runs are read (`load_runs(keep=...)`)."""
    if "qa_index" not in row:
        return b""
    answer = {
        "prediction": row.get("prediction"),
        "f1": row.get("f1"),
        "f1_date": row.get("f1_date_normalised"),
    }  # and "judge": the leaderboard's (the verdict of the judge the run names), added by question_parts
    judges = row.get("judges")
    if isinstance(judges, dict) and len(judges) > 1:  # graded by several judges: each one's score
        answer["judges"] = {str(k): _judge_score(v) for k, v in judges.items()}
    retrieved = row.get("retrieved")
    if isinstance(retrieved, list):
        answer["retrieved"] = retrieved if set(map(type, retrieved)) <= {str} else [str(i) for i in retrieved]
    return orjson.dumps(answer)


def _judge_score(entry) -> float | None:
    score = entry.get("score") if isinstance(entry, dict) else None
    ok = isinstance(score, (int, float)) and not isinstance(score, bool) and entry.get("error") is None
    return float(score) if ok and 0 <= score <= 1 else None


def question_parts(runs: list[Run], corrected: dict[int, dict] | None = None) -> Iterator[list[tuple[str, bytes]]]:
    """The question list in order, in batches of (chat, the question's JSON): the question's fields from the row
    of the first run that answered it (read again), and every run's answer (`page_fields`); `corrected`: item
    number -> the erratum's corrected gold (`report --errata`), shown under the published one."""
    order = question_order(runs)
    where = []  # per run: item number -> position of its answer, or -1
    for run in runs:
        w = np.full(len(run.items.keys), -1, dtype=np.int64)
        w[run.answers.items] = np.arange(len(run.answers))
        where.append(w)
    names = [orjson.dumps(run.id) + b":" for run in runs]
    judges = [run.answers.scores.get("judge_score") for run in runs]
    for start in range(0, len(order), _BATCH):
        batch = order[start : start + _BATCH]
        items = [item for _, item in batch]
        positions = [w[items].tolist() for w in where]
        firsts: dict[int, dict] = {}  # item -> the row its question's fields come from
        for r, run in enumerate(runs):
            mine = sorted(positions[r][k] for k, (owner, _) in enumerate(batch) if owner == r)  # in file order
            firsts.update(zip(run.answers.items[mine].tolist(), run.rows_at(mine), strict=True))
        out = []
        for k, (_, item) in enumerate(batch):
            row = firsts[item]
            answers = [
                name + _with_judge(run.pages[p[k]], judge, p[k])
                for run, name, judge, p in zip(runs, names, judges, positions, strict=True)
                if p[k] >= 0
            ]
            head = {
                "chat": row["chat"],
                "dataset": row.get("dataset"),
                "qa": row["qa_index"],
                "question": row["question"],
                "gold": row.get("answer"),
                "category": category_of(row),
                "evidence": evidence_ids(row),
            }
            if corrected and item in corrected:
                head["corrected"] = corrected[item]
            out.append((row["chat"], orjson.dumps(head)[:-1] + b',"runs":{' + b",".join(answers) + b"}}"))
        yield out


def _with_judge(page: bytes, judge: np.ndarray | None, position: int) -> bytes:
    """An answer's page fields (a JSON object) with the run's judge score on it, as the leaderboard counts it."""
    score = None if judge is None or np.isnan(judge[position]) else float(judge[position])
    return page[:-1] + b',"judge":' + orjson.dumps(score) + b"}"


def _messages(chat: Chat, ids: Iterable[str] | None = None) -> dict[str, list]:
    """[speaker, date, text] of the chat's messages by id: these ids (a dangling one is left out), or all."""
    index = _index(chat)
    out: dict[str, list] = {}
    for i in index if ids is None else ids:
        m = index.get(i)
        if m is not None:
            out[i] = [m.speaker, message_date(chat, m), m.clean_text]
    return out


def _cite(known: dict[str, None], q: dict) -> None:
    """Add the ids of the messages a question cites: its evidence, and what retrieval put in each run's prompt."""
    known.update(dict.fromkeys(q["evidence"]))
    for answer in q["runs"].values():
        known.update(dict.fromkeys(answer.get("retrieved", ())))


def _script_file(token: str, name: str, data: bytes) -> bytes:
    """A data file of report-data/: a script that hands its data to the page. The data is a JSON text in a string
    (JSON.parse reads a large object faster than a browser parses it as code)."""
    text = _script_bytes(data).replace(b"\\", b"\\\\").replace(b"'", b"\\'")
    call = (_script_bytes(orjson.dumps(token)), _script_bytes(orjson.dumps(name)), text)
    return b"realtalkReportPart(%s, %s, JSON.parse('%s'));\n" % call


def write_questions(
    runs: list[Run], chats: dict[str, Chat], folder: Path, token: str, corrected: dict[int, dict] | None = None
) -> Questions:
    """Cut the question list into parts. A list of one part is kept for the page itself, with the messages its
    questions cite; a longer one is written into `folder` (part-0001.js...), and the messages of each chat the
    questions are from into a file of its own (chat-0001.js...)."""
    result = Questions()
    pending: list[bytes] = []
    cited: dict[str, dict[str, None]] | None = {}  # the messages the first part cites, while it may be the only one
    seen: dict[str, None] = {}
    size = 0

    def flush(last: bool) -> None:
        nonlocal pending, cited, size
        part: dict = {"count": len(pending)}
        if last and not result.parts:
            messages = {c: _messages(chats[c], ids) for c, ids in (cited or {}).items()}
            part["data"] = {"questions": [orjson.loads(q) for q in pending], "messages": messages}
        else:
            name = f"part-{len(result.parts) + 1:04d}"
            data = b'{"questions":[' + b",".join(pending) + b'],"messages":{}}'
            (folder / f"{name}.js").write_bytes(_script_file(token, name, data))
            part["file"] = f"{DATA_DIR}/{name}.js"
            cited = None
        result.parts.append(part)
        pending, size = [], 0

    for questions in question_parts(runs, corrected):
        for chat, q in questions:
            pending.append(q)
            size += len(q) + 1
            seen[chat] = None
            if cited is not None and chat in chats:
                _cite(cited.setdefault(chat, {}), orjson.loads(q))
            if size >= PART_BYTES:
                flush(last=False)
        result.total += len(questions)
    if pending or not result.parts:
        flush(last=True)
    result.chats = list(seen)
    if cited is None:
        for n, chat in enumerate(c for c in result.chats if c in chats):
            name = f"chat-{n + 1:04d}"
            data = orjson.dumps({"chat": chat, "messages": _messages(chats[chat])})
            (folder / f"{name}.js").write_bytes(_script_file(token, name, data))
            result.chat_files[chat] = f"{DATA_DIR}/{name}.js"
    return result


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


_SCRIPT_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"), ("\u2028".encode(), b"\\u2028"),
                   ("\u2029".encode(), b"\\u2029"))  # fmt: skip


def _script_bytes(raw: bytes) -> bytes:
    """JSON made safe inside <script>: "</script" would close the tag early and "<!--<script" would keep it open
    past its end, so no "<" is left as is (in JSON it can only be inside a string, where \\u003c is the same
    text); U+2028/9 for old parsers."""
    for char, escaped in _SCRIPT_ESCAPES:
        if char in raw:
            raw = raw.replace(char, escaped)
    return raw


def _script_json(obj) -> str:
    return _script_bytes(orjson.dumps(obj)).decode()


def page_token(runs: list[Run]) -> str:
    """Names the report in its part files (which runs, as their files were read): a part left from another
    report is not shown as this one's."""
    files = [(str(r.path), r.lines, len(r.answers), r.failed) for r in runs]
    return hashlib.sha256(orjson.dumps(files)).hexdigest()[:16]


def render_html(board: dict, runs: list[Run], questions: Questions, chats_found: list[str], warnings: list[str],
                title: str, token: str) -> str:  # fmt: skip
    charts = "".join(
        f"<figure>{bar_chart_svg(board, metric)}<figcaption>{html.escape(name)} per category, mean with 95% "
        f"bootstrap interval; runs as in the leaderboard.</figcaption></figure>"
        for metric, name in board["metrics"].items()
    )
    notes = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)
    data = {
        "board": board,
        "runs": [{k: r[k] for k in _RUN_FIELDS} for r in board["runs"]],
        "chats_found": chats_found,
        "chats": questions.chats,
        "total": questions.total,
        "parts": questions.parts,
        "chat_files": questions.chat_files,
        "token": token,
    }
    parts = {
        "CSS": _resource("explorer.css"),
        "JS": _resource("explorer.js"),
        "TITLE": html.escape(title),
        "WARNINGS": notes,
        "CHARTS": charts,
        "DATA": _script_json(data),
    }
    # One pass, so that text inside the data can never be taken for a placeholder.
    return re.sub(r"@@(CSS|JS|TITLE|WARNINGS|CHARTS|DATA)@@", lambda m: parts[m.group(1)], _resource("explorer.html"))
