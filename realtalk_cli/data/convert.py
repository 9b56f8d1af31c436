"""Raw REALTALK sheet -> Chat, following the mapping recorded in shared/FORMAT.md; pictures attached to the
nearest message in time; captions from captions.py.

Rows are told apart by content (session headers, event rows, messages, QA cells), never position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from realtalk_cli.data.captions import Captioner, Captions, apply_captions, caption_requests, captions_from
from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.data.model import Chat, Event, Message, QAItem, Session, parse_date
from realtalk_cli.data.rawsheet import Picture, RawSheet, Row, picture_file_name, read_raw_sheet
from realtalk_cli.errors import RealtalkError

_DIA_ID = re.compile(r"^D\d+:\d+$")
# A header row's whole shape: `Session N` or `Session N.M` in B, no message id in A or C, a date in D.
_SESSION_LABEL = re.compile(r"^Session\s+\d+(\.\d+)?$")
_HEADER_DATE = re.compile(r"^\d{1,2}\.\d{1,2}\.\d{4}")
_URL = re.compile(r"https?://\S+")
ATTACH_WINDOW = timedelta(seconds=60)
DATE_FORMAT = "%d.%m.%Y, %H:%M:%S"


@dataclass
class ConvertReport:
    source: str
    output: str = ""
    sessions: int = 0
    messages: int = 0
    dropped_rows: int = 0  # message rows without text (their pictures re-attach)
    pictures: int = 0
    pictures_attached: int = 0
    pictures_dropped: int = 0
    pictures_unnamed: int = 0
    images_written: int = 0
    qa: int = 0
    captions: str = "none"
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Kept:
    message: Message
    row: int
    time: datetime | None


def convert_sheet(sheet: RawSheet, captions: Captions | None = None) -> tuple[Chat, ConvertReport]:
    rows = sheet.rows
    report = ConvertReport(source=str(sheet.path))
    speaker_1, speaker_2 = str(rows[0].get("B")), str(rows[0].get("D"))
    sessions: list[Session] = []
    kept: list[list[_Kept]] = []  # per session
    header_dates: list[Any] = []

    for row in rows[1:]:
        a, b = row.get("A"), row.get("B")
        if _is_session_header(row):
            date = row.get("D")
            if not (isinstance(date, datetime) or (isinstance(date, str) and _HEADER_DATE.match(date.strip()))):
                report.warnings.append(f"row {row.number}: session header {b.strip()!r} without a date in D")
            sessions.append(Session(number=len(sessions) + 1, date_time=""))
            kept.append([])
            header_dates.append(row.get("D"))
            continue
        if a == "Events":
            _need_session(sessions, sheet, row, "an Events row")
            sessions[-1].events = {"agent_a": parse_events(row.get("B")), "agent_b": parse_events(row.get("D"))}
            continue
        for id_cell, text_column, speaker in (("A", "B", speaker_1), ("C", "D", speaker_2)):
            dia_id = _dia_id(row.get(id_cell))
            if dia_id:
                _need_session(sessions, sheet, row, f"message {dia_id}")
                text = row.get(text_column)
                if text is None:
                    report.dropped_rows += 1
                    continue
                text = text if isinstance(text, str) else _cell_text(text)
                date_time = _cell_date(row.get("E"))
                message = Message(
                    dia_id=dia_id,
                    speaker=speaker,
                    clean_text=text,
                    date_time=date_time,
                    img_url=_URL.findall(text),
                    session=sessions[-1].number,
                )
                sessions[-1].messages.append(message)
                kept[-1].append(_Kept(message, row.number, parse_date(date_time)))

    for session, session_kept, header in zip(sessions, kept, header_dates, strict=False):
        session.date_time = session_kept[0].message.date_time if session_kept else _cell_date(header)

    _attach_pictures(sheet, kept, report)
    if captions is not None:
        unnamed = {picture_file_name(p) for p in sheet.pictures if p.name is None}
        apply_captions(sessions, captions, unnamed)

    chat = Chat(sheet.path.stem, "realtalk", speaker_1, speaker_2, sessions, _read_qa(sheet))
    report.sessions = len(sessions)
    report.messages = sum(len(s.messages) for s in sessions)
    report.qa = len(chat.qa)
    report.warnings.extend(_dangling_evidence(chat))
    return chat, report


def _dia_id(value: Any) -> str | None:
    """A message id (`D3:12`), with stray spaces trimmed; None for anything else."""
    if isinstance(value, str) and _DIA_ID.match(value.strip()):
        return value.strip()
    return None


def _is_session_header(row: Row) -> bool:
    """`Session 3` / `Session 3.1` alone in B of a row that is not a message: a message whose text starts with
    "Session" is a message (its id is in A or C)."""
    b = row.get("B")
    if not isinstance(b, str) or not _SESSION_LABEL.match(b.strip()):
        return False
    return _dia_id(row.get("A")) is None and _dia_id(row.get("C")) is None


def _need_session(sessions: list[Session], sheet: RawSheet, row: Row, what: str) -> None:
    if not sessions:
        raise RealtalkError(f"{sheet.path}: row {row.number}: {what} before any 'Session' header row")


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.strftime(DATE_FORMAT)
    return str(value)


def _cell_date(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(DATE_FORMAT)
    return _cell_text(value)


def parse_events(cell: Any) -> list[Event]:
    """One event per line; `E: text` splits into id and text (empty lines are kept, as published)."""
    if cell is None or cell == "":
        return []
    events = []
    for line in str(cell).split("\n"):
        parts = line.split(":", 1)
        events.append(Event(sub_event=parts[-1].strip(), id=parts[0].strip(), date="", caused_by=[]))
    return events


def _read_qa(sheet: RawSheet) -> list[QAItem]:
    items = []
    for row in sheet.rows[1:]:
        question = row.get("H")
        if question is None or str(question).strip() == "":
            continue
        category = row.get("K")
        try:
            category_number = int(category)
        except (TypeError, ValueError):
            raise RealtalkError(
                f"{sheet.path}: row {row.number}, cell K{row.number}: QA category {category!r} is not a number"
            ) from None
        evidence = row.get("J")
        items.append(
            QAItem(
                question=str(question).replace("\n", "").strip(),
                answer=_answer_text(row.get("I")),
                evidence=[] if evidence is None else [x.strip() for x in re.split(r"[,\n]", str(evidence))],
                category=category_number,
            )
        )
    return items


def _answer_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d %B, %Y")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace("\n", "").strip()


def _picture_time(picture: Picture, sheet: RawSheet) -> datetime | None:
    if picture.time is not None:
        return picture.time
    row = sheet.rows[picture.row - 1] if picture.row - 1 < len(sheet.rows) else None
    return parse_date(_cell_date(row.get("E"))) if row is not None else None


def _attach_pictures(sheet: RawSheet, kept: list[list[_Kept]], report: ConvertReport) -> None:
    report.pictures = len(sheet.pictures)
    for picture in sheet.pictures:
        if picture.renamed_from is not None:
            report.warnings.append(
                f"row {picture.row}: picture name {picture.renamed_from!r} is not a plain file name; "
                f"named '{picture.name}'"
            )
        if picture.name is None:
            report.pictures_unnamed += 1
            report.warnings.append(
                f"row {picture.row}: picture {picture.media} has no file name; named '{picture_file_name(picture)}'"
            )
        when = _picture_time(picture, sheet)
        attached = False
        for session_kept in kept:
            best = _nearest(session_kept, when)
            if best is not None:
                name = picture_file_name(picture)
                best.message.img_file.extend([f"{name}_opt.jpg", f"{name}.jpg"])
                attached = True
        if attached:
            report.pictures_attached += 1
        else:
            report.pictures_dropped += 1
            report.warnings.append(
                f"row {picture.row}: picture {picture_file_name(picture)} matches no message within 60 s; dropped"
            )


def _nearest(candidates: list[_Kept], when: datetime | None) -> _Kept | None:
    if when is None:
        return None
    best: _Kept | None = None
    best_gap: timedelta | None = None
    for k in candidates:  # in row order, so a tie keeps the earlier row
        if k.time is None:
            continue
        gap = abs(k.time - when)
        if gap <= ATTACH_WINDOW and (best_gap is None or gap < best_gap):
            best, best_gap = k, gap
    return best


def _dangling_evidence(chat: Chat) -> list[str]:
    known = chat.message_index()
    warnings = []
    for i, q in enumerate(chat.qa):
        missing = resolve_evidence(chat, q.evidence, known).dangling
        if missing:
            warnings.append(f"qa[{i}]: evidence {', '.join(missing)} points to no message")
    return warnings


def convert_file(path: Path, captions: Captions | None = None) -> tuple[Chat, ConvertReport]:
    return convert_sheet(read_raw_sheet(path), captions)


def convert_many(
    source: Path,
    output: Path | None,
    force: bool = False,
    images_dir: Path | None = None,
    captions_source: Path | None = None,
    captioner: Captioner | None = None,
) -> tuple[list[ConvertReport], list[str]]:
    """Convert one sheet or a directory of sheets; returns the reports and one line per failed sheet.

    A single sheet that fails raises RealtalkError; in a directory the other sheets still convert.
    """
    if not source.exists():
        raise RealtalkError(f"{source}: no such file or directory")
    if source.is_dir():
        sheets = sorted(source.glob("*.xlsx"))
        if not sheets:
            raise RealtalkError(f"{source}: no .xlsx files in this directory")
        out_dir = output or source
        if out_dir.exists() and not out_dir.is_dir():
            raise RealtalkError(f"{out_dir}: exists and is not a directory")
        jobs = [(sheet, out_dir / f"{sheet.stem}.json") for sheet in sheets]
    else:
        target = output or source.with_suffix(".json")
        if target.is_dir():
            target = target / f"{source.stem}.json"
        jobs = [(source, target)]
    existing = [str(t) for _, t in jobs if t.exists()]
    if existing and not force:
        raise RealtalkError(f"{existing[0]}: already exists (use --force to overwrite)")
    if captions_source is not None and not captions_source.exists():
        raise RealtalkError(f"{captions_source}: no such file or directory")
    reports, failures = [], []
    for sheet, target in jobs:
        try:
            reports.append(_convert_one(sheet, target, images_dir, captions_source, captioner))
        except RealtalkError as e:
            if not source.is_dir():
                raise
            failures.append(str(e))
    return reports, failures


def _convert_one(
    sheet_path: Path,
    target: Path,
    images_dir: Path | None,
    captions_source: Path | None,
    captioner: Captioner | None = None,
) -> ConvertReport:
    from realtalk_cli.data.formats import write_realtalk

    sheet = read_raw_sheet(sheet_path)
    captions = None
    if captions_source is not None:
        published = captions_source / f"{sheet_path.stem}.json" if captions_source.is_dir() else captions_source
        if published.exists():
            captions = captions_from(published)
    chat, report = convert_sheet(sheet, captions)
    report.captions = str(published) if captions is not None else "none"
    if captioner is not None:
        report.captions = f"{captioner.label}: {captioner.caption(caption_requests(chat, sheet))} messages"
    if images_dir is not None:
        report.images_written = write_pictures(sheet, images_dir / sheet_path.stem)
    write_realtalk(chat, target)
    report.output = str(target)
    return report


def write_pictures(sheet: RawSheet, folder: Path) -> int:
    """Each embedded picture as `<name>_opt.jpg` (the sheet holds the optimised copies)."""
    from realtalk_cli.fileio import write_atomic

    written = 0
    for picture in sheet.pictures:
        if not picture.media:
            continue
        write_atomic(folder / f"{picture_file_name(picture)}_opt.jpg", sheet.read_media(picture))
        written += 1
    return written


# --- chat-app exports ----------------------------------------------------------------------------

TRIED = (
    "an .xlsx sheet, a WhatsApp .txt or .zip, Telegram's result.json, DiscordChatExporter JSON, "
    "Messenger message_N.json"
)


@dataclass
class ExportOptions:
    """What `convert` takes for a chat-app export (see `realtalk convert --help`)."""

    format: str = "auto"
    chat: str | None = None
    date_order: str | None = None
    session_gap_hours: float | None = None
    anonymize: bool = False
    anonymize_map: Path | None = None
    images_dir: Path | None = None
    force: bool = False


def detect_format(path: Path) -> str:
    """The format of `path` from its content (an .xlsx name keeps today's sheet reader)."""
    return _read_source(path, "auto")[0]


def convert_source(
    source: Path,
    output: Path | None,
    options: ExportOptions,
    captions_source: Path | None = None,
    captioner: Captioner | None = None,
) -> tuple[list, list[str]]:
    """`realtalk convert`: an .xlsx sheet (or a folder of them) as `convert_many` does; any chat-app export as
    `convert_export`. Returns the reports and one line per failed sheet of a folder."""
    if options.format not in ("auto", "xlsx", "whatsapp", "telegram", "discord", "messenger"):
        raise RealtalkError(f"--format {options.format!r}: choose auto, xlsx, whatsapp, telegram, discord or messenger")
    if not source.exists():
        raise RealtalkError(f"{source}: no such file or directory")
    fmt = options.format
    if fmt == "auto" and source.is_dir() and not _messenger_folder(source) and not any(source.glob("*.xlsx")):
        raise RealtalkError(f"{source}: a folder with neither message_N.json files (Messenger) nor .xlsx sheets")
    if fmt == "auto" and (source.suffix.lower() == ".xlsx" or source.is_dir() and not _messenger_folder(source)):
        fmt = "xlsx"
    if fmt == "xlsx":
        return convert_many(source, output, options.force, options.images_dir, captions_source, captioner)
    if captions_source is not None or captioner is not None:
        raise RealtalkError("--captions-from and --caption-model apply to the dataset's .xlsx sheets only")
    return [convert_export(source, output, options)], []


def _messenger_folder(path: Path) -> bool:
    from realtalk_cli.data.messenger import message_files

    return bool(message_files(path))


def convert_export(source: Path, output: Path | None, options: ExportOptions):
    """One chat-app export -> REALTALK JSON (no `qa`, empty events); media files from the export are copied to
    `images_dir`. Everything is checked before anything is written; the JSON is written atomically."""
    from realtalk_cli.data.anonymize import anonymize_chat, replacer
    from realtalk_cli.data.exports import build_chat, report_for
    from realtalk_cli.data.formats import write_realtalk
    from realtalk_cli.fileio import refuse_overwrite, write_atomic

    if options.session_gap_hours is not None and not options.session_gap_hours > 0:
        raise RealtalkError(f"--session-gap {options.session_gap_hours}: give a number of hours above 0")
    if options.date_order not in (None, "dmy", "mdy", "ymd"):
        raise RealtalkError(f"--date-order {options.date_order!r}: choose dmy, mdy or ymd")
    target = output or (source.parent / f"{source.name}.json" if source.is_dir() else source.with_suffix(".json"))
    if target.is_dir():
        target = target / f"{source.stem}.json"
    if target.resolve() == source.resolve():
        raise RealtalkError(f"{target}: that is the export itself; name the output with -o OUT.json")
    if target.exists() and not options.force:
        raise RealtalkError(f"{target}: already exists (use --force to overwrite)")
    mapping_file = options.anonymize_map
    if mapping_file is not None:
        if mapping_file.resolve() in (target.resolve(), source.resolve()):
            raise RealtalkError(f"--anonymize-map {mapping_file}: give the mapping a file of its own")
        refuse_overwrite(mapping_file, options.force)
    try:
        fmt, export = _read_source(source, options.format, options.chat, options.date_order)
        built = build_chat(export, source, target.stem, options.session_gap_hours)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError, UnicodeError) as e:
        # a shape no rule foresaw (a number where text belongs, JSON nested a thousand deep): one line, not a
        # traceback; the exception's type and text say where to look
        raise RealtalkError(f"{source}: cannot read this export ({type(e).__name__}: {str(e)[:200]})") from None
    mapping: dict[str, str] = {}
    if options.anonymize or mapping_file is not None:
        mapping = anonymize_chat(built.chat, export.names)
        built.bots = [mapping.get(b, b) for b in built.bots]
        replace = replacer(mapping)
        export.unparsed = [(w, replace(t)) for w, t in export.unparsed]
    report = report_for(export, built, source)
    report.anonymized = bool(mapping)
    if options.images_dir is not None:
        report.media_copied = _copy_media(built.media, options.images_dir, options.force)
    write_realtalk(built.chat, target, with_qa=False)
    report.output = str(target)
    if mapping_file is not None:
        import json

        write_atomic(mapping_file, json.dumps(mapping, ensure_ascii=False, indent=2) + "\n")
        report.anonymize_map = str(mapping_file)
    return report


def _read_source(path: Path, fmt: str, chat: str | None = None, date_order: str | None = None):
    """(format, Export) for `path`; with fmt "auto" the format is read from the content."""
    from realtalk_cli.data import discord, messenger, telegram, whatsapp
    from realtalk_cli.data.formats import read_json

    if not path.exists():
        raise RealtalkError(f"{path}: no such file or directory")
    if path.is_dir():
        files = messenger.message_files(path)
        if not files:
            raise RealtalkError(f"{path}: a folder without message_N.json files (a Messenger chat) or .xlsx sheets")
        return "messenger", messenger.read_messenger([(f, read_json(f)) for f in files])
    if not path.is_file():
        raise RealtalkError(f"{path}: not a regular file")
    if fmt == "xlsx":
        raise RealtalkError(f"{path}: the .xlsx reader takes .xlsx sheets")
    with open(path, "rb") as f:
        head = f.read(65536)
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text_head = head.decode("utf-16", errors="replace")
    else:
        text_head = head.decode("utf-8", errors="replace") if b"\x00" not in head else ""
    if fmt == "auto" and head.startswith(b"PK\x03\x04"):
        _check_zip_export(path)
    if (
        fmt == "whatsapp"
        or fmt == "auto"
        and (head.startswith(b"PK\x03\x04") or whatsapp.looks_like_whatsapp(text_head))
    ):
        return "whatsapp", whatsapp.read_whatsapp(path, date_order)
    if first in (b"{", b"[") or fmt in ("telegram", "discord", "messenger"):
        obj = read_json(path)
        readers = {
            "telegram": (telegram.looks_like_telegram, lambda: telegram.read_telegram(obj, path, chat)),
            "discord": (discord.looks_like_discord, lambda: discord.read_discord(obj, path)),
            "messenger": (messenger.looks_like_messenger, lambda: _messenger_file(path, obj)),
        }
        for name, (looks, read) in readers.items():
            if fmt in (name, "auto") and looks(obj):
                return name, read()
        if fmt != "auto":
            raise RealtalkError(f"{path}: not a {_names[fmt]} export (its keys: {_keys(obj)})")
        raise RealtalkError(
            f"{path}: JSON of no chat export this version reads (its keys: {_keys(obj)}); tried {TRIED}"
        )
    raise RealtalkError(f"{path}: not a chat export this version reads; tried {TRIED}")


_names = {
    "telegram": "Telegram result.json",
    "discord": "DiscordChatExporter JSON",
    "messenger": "Messenger message_N.json",
}


def _keys(obj) -> str:
    if isinstance(obj, dict):
        keys = list(obj)[:8]
        return ", ".join(map(repr, keys)) + (", ..." if len(obj) > 8 else "") if keys else "none"
    return f"a {type(obj).__name__}, not an object"


def _check_zip_export(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise RealtalkError(f"{path}: corrupt or truncated zip archive ({e})") from None
    if "xl/workbook.xml" in names:
        raise RealtalkError(f"{path}: an .xlsx workbook under another name; name it .xlsx or pass --format xlsx")
    if not any(n.lower().endswith(".txt") for n in names):
        raise RealtalkError(f"{path}: a zip archive without a chat inside; tried {TRIED}")


def _messenger_file(path: Path, obj):
    from realtalk_cli.data.messenger import MESSAGE_FILE, message_files, read_messenger

    export = read_messenger([(path, obj)])
    if MESSAGE_FILE.match(path.name):
        others = [p.name for p in message_files(path.parent) if p != path]
        if others:
            export.warnings.append(
                f"the folder also holds {', '.join(others[:5])}: pass the folder to read the whole thread"
            )
    return export


def _copy_media(media: list, folder: Path, force: bool) -> int:
    """The export's files behind the messages' img_file, under the names img_file gives them."""
    from realtalk_cli.fileio import write_atomic

    copied = 0
    for message, files in media:
        for i, item in enumerate(files):
            if item.read is None:
                continue
            name = _safe_name(message.img_file[i])
            message.img_file[i] = name
            target = folder / name
            if target.exists() and not force:
                continue
            try:
                data = item.read()
            except (OSError, KeyError, ValueError) as e:
                raise RealtalkError(f"{name}: cannot read it from the export ({e})") from None
            write_atomic(target, data)
            copied += 1
    return copied


def _safe_name(name: str) -> str:
    """A file name from an export as a plain name in one folder: no folders, no leading dots."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").lstrip(".").strip()
    return base or "file"
