from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data import rawsheet
from realtalk_cli.data.captions import captions_from
from realtalk_cli.data.convert import convert_file, parse_events
from realtalk_cli.data.formats import dumps_realtalk, load_chat, realtalk_dict
from realtalk_cli.data.model import Chat, Event, Message, QAItem, Session
from realtalk_cli.data.rawsheet import write_raw_sheet
from realtalk_cli.errors import RealtalkError

from .conftest import REALTALK_RAW, SAMPLE_JSON, SAMPLE_XLSX, SHARED, ids, needs_shared

# One QA row at the very end of Chat_9's sheet was added after its JSON was published.
QA_ADDED_LATER = {"Chat_9_Fahim_Akib": 1}
runner = CliRunner()


def _published(sheet: Path) -> Path:
    return SHARED / "realtalk" / f"{sheet.stem}.json"


@needs_shared
@pytest.mark.parametrize("sheet", REALTALK_RAW, ids=ids(REALTALK_RAW))
def test_convert_reproduces_the_published_json(sheet: Path):
    published = _published(sheet)
    chat, report = convert_file(sheet, captions_from(published))
    ours, theirs = realtalk_dict(chat), json.loads(published.read_text(encoding="utf-8"))
    assert ours["name"] == theirs["name"]
    assert list(ours) == list(theirs)  # same sessions, events and dates, in the published key order
    unnamed = {rawsheet_name for rawsheet_name in _unnamed_pictures(sheet)}
    for key, value in theirs.items():
        if key == "qa":
            extra = QA_ADDED_LATER.get(sheet.stem, 0)
            assert ours["qa"][: len(value)] == value
            assert len(ours["qa"]) == len(value) + extra
        elif key.startswith("session_") and not key.endswith("date_time"):
            assert len(ours[key]) == len(value), key
            for mine, pub in zip(ours[key], value, strict=False):
                if any(f.removesuffix("_opt.jpg").removesuffix(".jpg") in unnamed for f in mine["img_file"]):
                    assert len(mine["img_file"]) == len(pub["img_file"])  # a pasted picture's name is unknowable
                    mine = {**mine, "img_file": pub["img_file"]}
                assert {**mine, "img_file": set(mine["img_file"])} == {**pub, "img_file": set(pub["img_file"])}
                assert list(mine) == list(pub)
        else:
            assert ours[key] == value, key
    assert report.pictures == report.pictures_attached + report.pictures_dropped


def _unnamed_pictures(sheet: Path) -> set[str]:
    from realtalk_cli.data.rawsheet import picture_file_name

    return {picture_file_name(p) for p in rawsheet.read_raw_sheet(sheet).pictures if p.name is None}


@needs_shared
def test_convert_without_captions_leaves_the_key_out():
    chat, report = convert_file(REALTALK_RAW[0])
    assert all(m.blip_caption is None for m in chat.messages())
    assert report.captions == "none"


def test_sample_sheet_converts_to_the_sample_json():
    chat, report = convert_file(SAMPLE_XLSX)
    assert dumps_realtalk(chat) == SAMPLE_JSON.read_text(encoding="utf-8")
    assert (report.sessions, report.messages, report.qa, report.pictures_attached) == (3, 26, 6, 2)
    assert report.warnings == []


def test_events_parse_keeps_ids_and_empty_lines():
    events = parse_events("E: one\nЕ: two: with colon\n")
    assert [(e.id, e.sub_event) for e in events] == [("E", "one"), ("Е", "two: with colon"), ("", "")]
    assert parse_events(None) == []


# --- round trip: Chat -> raw sheet -> convert -> the same Chat -----------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda t: t.strip() and not t.startswith("Session") and t != "Events"
)


@st.composite
def chats(draw) -> Chat:
    sessions = []
    for n in range(1, draw(st.integers(1, 4)) + 1):
        count = draw(st.integers(1, 6))
        messages = []
        for i in range(1, count + 1):
            speaker = draw(st.sampled_from(["Ann", "Bo"]))
            stamp = f"{10 + n:02d}.01.2024, 12:{i:02d}:{draw(st.integers(0, 59)):02d}"
            messages.append(Message(f"D{n}:{i}", speaker, draw(_text), stamp, session=n))
        events = {
            "agent_a": [Event(draw(_text).strip(), "E") for _ in range(draw(st.integers(0, 2)))],
            "agent_b": [Event(draw(_text).strip(), "E") for _ in range(draw(st.integers(0, 2)))],
        }
        sessions.append(Session(n, messages[0].date_time, messages, events))
    qa = [
        QAItem(
            draw(_text).replace("\n", "").strip(),
            draw(_text).replace("\n", "").strip(),
            ["D1:1"],
            draw(st.integers(1, 3)),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    for session in sessions:
        for m in session.messages:
            m.img_url = [w for w in m.clean_text.split() if w.startswith(("http://", "https://"))]
    return Chat("Chat_T_Ann_Bo", "realtalk", "Ann", "Bo", sessions, [q for q in qa if q.question and q.answer])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chat=chats())
def test_raw_sheet_round_trip(tmp_path: Path, chat: Chat):
    path = tmp_path / "Chat_T_Ann_Bo.xlsx"
    write_raw_sheet(chat, path)
    back, _ = convert_file(path)
    assert dumps_realtalk(back) == dumps_realtalk(chat)


def test_pictures_attach_to_the_nearest_message_within_a_minute(tmp_path: Path):
    chat = load_chat(SAMPLE_JSON)
    path = tmp_path / "Chat_S_Ana_Ben.xlsx"
    write_raw_sheet(chat, path)
    back, report = convert_file(path)
    with_pictures = [m.dia_id for m in back.messages() if m.img_file]
    assert with_pictures == ["D1:7", "D3:2"]
    assert report.pictures_dropped == 0


# --- bad input -----------------------------------------------------------------------------------


def test_missing_sheet(tmp_path: Path):
    with pytest.raises(RealtalkError, match=r"nope.xlsx: no such file"):
        convert_file(tmp_path / "nope.xlsx")


def test_text_file_is_not_an_xlsx(tmp_path: Path):
    bad = tmp_path / "notes.xlsx"
    bad.write_text("just text")
    with pytest.raises(RealtalkError, match=r"notes.xlsx: not an xlsx file \(not a zip archive\)"):
        convert_file(bad)


def test_truncated_xlsx_is_refused(tmp_path: Path):
    bad = tmp_path / "cut.xlsx"
    bad.write_bytes(SAMPLE_XLSX.read_bytes()[:3000])
    with pytest.raises(RealtalkError, match=r"cut.xlsx: not an xlsx file"):
        convert_file(bad)


def test_zip_bomb_entry_is_refused_before_unpacking(tmp_path: Path):
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(rawsheet.MAX_ENTRY_BYTES // len(chunk) + 1):
                f.write(chunk)
    with pytest.raises(RealtalkError, match=r"bomb.xlsx: xl/worksheets/sheet1.xml unpacks to more than"):
        convert_file(bomb)


def test_zip_without_workbook_is_refused(tmp_path: Path):
    bad = tmp_path / "other.xlsx"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(RealtalkError, match=r"other.xlsx: not an xlsx file \(no xl/workbook.xml inside\)"):
        convert_file(bad)


def test_wrong_header_names_the_cell(tmp_path: Path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["", "Ann", "", "Bo", "When", "", "", "Question", "Answer", "Evidence", "Category"])
    path = tmp_path / "layout.xlsx"
    wb.save(path)
    with pytest.raises(RealtalkError, match=r"layout.xlsx: row 1, cell E1: expected 'Date, Time', found 'When'"):
        convert_file(path)


def test_message_before_any_session_names_the_row(tmp_path: Path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([None, "Ann", None, "Bo", "Date, Time", None, None, "Question", "Answer", "Evidence", "Category"])
    ws.append(["D1:1", "hi", None, None, "01.01.2024, 10:00:00"])
    path = tmp_path / "order.xlsx"
    wb.save(path)
    with pytest.raises(RealtalkError, match=r"order.xlsx: row 2: message D1:1 before any 'Session' header row"):
        convert_file(path)


# --- rows and pictures that must not be lost or written astray (crafted sheets) ---------------------


def _rewrite(path: Path, name: str, change) -> None:
    """Replace one part of an xlsx by change(old_text)."""
    with zipfile.ZipFile(path) as z:
        parts = {i.filename: z.read(i.filename) for i in z.infolist()}
    parts[name] = change(parts[name].decode()).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for part, data in parts.items():
            z.writestr(part, data)


def _two_session_chat() -> Chat:
    s1 = Session(
        1,
        "01.03.2024, 10:00:00",
        [
            Message("D1:1", "Ana", "Session 2 of the course starts Monday", "01.03.2024, 10:00:00"),
            Message("D1:2", "Ben", "ok", "01.03.2024, 10:01:00"),
        ],
    )
    s2 = Session(2, "02.03.2024, 10:00:00", [Message("D2:1", "Ana", "hi", "02.03.2024, 10:00:00")])
    return Chat("Chat_T_Ana_Ben", "realtalk", "Ana", "Ben", [s1, s2], [])


def test_a_message_starting_with_session_stays_a_message(tmp_path: Path):
    path = tmp_path / "Chat_T_Ana_Ben.xlsx"
    write_raw_sheet(_two_session_chat(), path)
    chat, _ = convert_file(path)
    assert [len(s.messages) for s in chat.sessions] == [2, 1]
    assert chat.sessions[0].messages[0].clean_text == "Session 2 of the course starts Monday"


def test_a_stale_dimension_drops_no_row(tmp_path: Path):
    path = tmp_path / "Chat_T_Ana_Ben.xlsx"
    write_raw_sheet(_two_session_chat(), path)
    _rewrite(path, "xl/worksheets/sheet1.xml", lambda x: re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1:K3"', x))
    chat, _ = convert_file(path)
    assert sum(len(s.messages) for s in chat.sessions) == 3


def test_a_dia_id_with_stray_spaces_is_trimmed_not_dropped(tmp_path: Path):
    path = tmp_path / "Chat_T_Ana_Ben.xlsx"
    chat = _two_session_chat()
    chat.sessions[0].messages[1].dia_id = " D1:2  "
    write_raw_sheet(chat, path)
    back, _ = convert_file(path)
    assert [m.dia_id for m in back.messages()] == ["D1:1", "D1:2", "D2:1"]


def _sheet_with_picture(tmp_path: Path, name: str = "PHOTO-2024-03-01-10-00-30") -> Path:
    chat = _two_session_chat()
    chat.sessions[0].messages[0].img_file = [f"{name}_opt.jpg", f"{name}.jpg"]
    path = tmp_path / "Chat_T_Ana_Ben.xlsx"
    write_raw_sheet(chat, path)
    return path


@pytest.mark.parametrize(
    "descr", ["../../PHOTO-2024-03-01-10-00-30", "/tmp/PHOTO-2024-03-01-10-00-30", "..\\..\\PHOTO-2024-03-01-10-00-30"]
)
def test_picture_names_from_the_sheet_never_write_outside_images_dir(tmp_path: Path, descr: str):
    path = _sheet_with_picture(tmp_path)
    _rewrite(
        path,
        "xl/drawings/drawing1.xml",
        lambda x: x.replace('descr="PHOTO-2024-03-01-10-00-30_opt.jpg"', f'descr="{descr}_opt.jpg"'),
    )
    images = tmp_path / "deep" / "images"
    result = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "out.json"), "--images-dir", str(images)])
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("*.jpg")]
    assert written == [images / "Chat_T_Ana_Ben" / "PHOTO-2024-03-01-10-00-30_opt.jpg"]
    assert "not a plain file name" in result.output


@pytest.mark.parametrize(
    "part,old,new,message",
    [
        (
            "xl/drawings/_rels/drawing1.xml.rels",
            'Target="../media/image1.jpg"',
            'Target="../../../../etc/passwd"',
            "not in the archive",
        ),
        ("xl/drawings/drawing1.xml", "<xdr:row>", "<xdr:row>x", "not a number"),
        ("xl/drawings/drawing1.xml", "PHOTO-2024-03-01-10-00-30", "PHOTO-2024-13-45-10-00-30", "impossible date"),
    ],
)
def test_bad_drawing_xml_is_one_line_naming_the_sheet_and_folder_mode_converts_the_rest(
    tmp_path: Path, part: str, old: str, new: str, message: str
):
    raw = tmp_path / "raw"
    raw.mkdir()
    bad = _sheet_with_picture(raw)
    _rewrite(bad, part, lambda x: x.replace(old, new, 1))
    write_raw_sheet(_two_session_chat(), raw / "Chat_U_Ana_Ben.xlsx")
    one = runner.invoke(app, ["convert", str(bad), "-o", str(tmp_path / "one.json")])
    assert one.exit_code == 2 and message in one.output and str(bad) in one.output
    assert "Traceback" not in one.output
    folder = runner.invoke(app, ["convert", str(raw), "-o", str(tmp_path / "out")])
    assert folder.exit_code == 2 and message in folder.output
    assert (tmp_path / "out" / "Chat_U_Ana_Ben.json").exists()
    assert not (tmp_path / "out" / "Chat_T_Ana_Ben.json").exists()
