"""`realtalk convert` on Telegram, Discord and Messenger exports, `--anonymize`, and bad input: hand-written
exports shaped as shared/CHAT_EXPORTS.md describes them (invented people)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

from .test_exports_whatsapp import ANDROID_EN_GB, IOS_EN

runner = CliRunner()


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Epoch-only exports use the local zone; the tests pin it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run(*args):
    return runner.invoke(app, ["convert", *map(str, args)])


def converted(source: Path, tmp_path: Path, *args) -> tuple[dict, dict, list[dict]]:
    out = tmp_path / "out.json"
    result = run(source, "-o", out, "--json", *args)
    assert result.exit_code == 0, result.output
    obj = json.loads(out.read_text(encoding="utf-8"))
    rows = [m for k, v in obj.items() if k.startswith("session_") and isinstance(v, list) for m in v]
    return json.loads(result.output)["files"][0], obj, rows


def write_json(path: Path, obj, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + json.dumps(obj, ensure_ascii=True).encode())
    return path


# --- Telegram ------------------------------------------------------------------------------------


def tg_chat(name: str = "Ana Lima", chat_id: int = 111) -> dict:
    return {
        "name": name,
        "type": "personal_chat",
        "id": chat_id,
        "messages": [
            {"id": 1, "type": "service", "date": "2022-07-07T09:00:00", "actor": "Ana Lima", "action": "phone_call"},
            {
                "id": 2,
                "type": "message",
                "date": "2022-07-07T09:35:27",
                "date_unixtime": "1657179327",  # 07:35:27 UTC: the exporter was at +02:00
                "from": "Ana Lima",
                "from_id": "user1",
                "text": ["Look at ", {"type": "link", "text": "https://example.org"}, "\nsecond line"],
                "text_entities": [],
            },
            {
                "id": 3,
                "type": "message",
                "date": "2022-07-07T09:36:00",
                "from": "Ben Ode",
                "from_id": "user2",
                "photo": "photos/photo_284@07-07-2022_09-35-27.jpg",
                "text": "",
            },
            {
                "id": 4,
                "type": "message",
                "date": "2022-07-07T09:37:00",
                "from": "Ben Ode",
                "from_id": "user2",
                "file": "(File not included. Change data exporting settings to download.)",
                "media_type": "sticker",
                "sticker_emoji": "😊",
                "text": "",
            },
            {
                "id": 5,
                "type": "message",
                "date_unixtime": "1657238400",  # no `date`: the epoch in the local zone (UTC here)
                "from": None,
                "from_id": "user9",
                "text": "from a deleted account",
            },
            {
                "id": 6,
                "type": "message",
                "date": "2022-07-08T01:00:00",
                "from": "Ben Ode",
                "from_id": "user2",
                "poll": {"question": "Lunch?", "answers": []},
                "text": "",
            },
            {
                "id": 7,
                "type": "message",
                "date": "2022-07-08T02:00:00",
                "from": "Ana Lima",
                "from_id": "user1",
                "location_information": {"latitude": 52.5, "longitude": 13.4},
                "text": "",
            },
        ],
    }


def test_telegram_single_chat(tmp_path):
    folder = tmp_path / "ChatExport"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "photo_284@07-07-2022_09-35-27.jpg").write_bytes(b"jpg")
    source = write_json(folder / "result.json", tg_chat())
    report, obj, rows = converted(source, tmp_path, "--images-dir", tmp_path / "img")
    assert report["format"] == "telegram" and report["system_skipped"] == 1
    assert report["placeholders_dropped"] == {"poll": 1}
    assert obj["name"] == {"speaker_1": "Ana Lima", "speaker_2": "Ben Ode", "speaker_3": "Deleted Account user9"}
    assert rows[0]["clean_text"] == "Look at https://example.org\nsecond line"
    assert rows[0]["date_time"] == "07.07.2022, 09:35:27"  # `date`, not the epoch
    assert rows[1]["img_file"] == ["photo_284@07-07-2022_09-35-27.jpg"]
    assert rows[2]["img_file"] == ["(File not included. Change data exporting settings to download.)"]
    assert rows[3]["date_time"] == "08.07.2022, 00:00:00" and rows[3]["speaker"] == "Deleted Account user9"
    assert rows[4]["clean_text"] == "location: 52.5, 13.4"
    assert report["media_copied"] == 1 and (tmp_path / "img" / "photo_284@07-07-2022_09-35-27.jpg").exists()


def test_telegram_full_export_lists_its_chats_and_picks_one_with_chat(tmp_path):
    full = {
        "about": "full export",
        "personal_information": {"first_name": "Ana"},
        "chats": {"about": "", "list": [tg_chat("Ben Ode", 1), tg_chat("Клуб книги", 2)]},
    }
    source = write_json(tmp_path / "result.json", full)
    result = run(source, "-o", tmp_path / "out.json")
    assert result.exit_code == 2 and "pick one with --chat NAME" in result.output
    assert "Ben Ode [id 1]" in result.output and "Клуб книги [id 2]" in result.output
    assert not (tmp_path / "out.json").exists()
    report, _, rows = converted(source, tmp_path, "--chat", "Клуб книги")
    assert report["messages"] == 5
    assert run(source, "-o", tmp_path / "x.json", "--chat", "Nobody").exit_code == 2


# --- Discord -------------------------------------------------------------------------------------


def dce(messages: list[dict]) -> dict:
    return {
        "guild": {"id": "0", "name": "Direct Messages", "iconUrl": ""},
        "channel": {
            "id": "9",
            "type": "DirectTextChat",
            "categoryId": "",
            "category": "",
            "name": "ben",
            "topic": None,
        },
        "dateRange": {"after": None, "before": None},
        "messages": messages,
        "messageCount": len(messages),
    }


def dmsg(mid, kind, ts, author, content="", **extra):
    return {"id": mid, "type": kind, "timestamp": ts, "content": content, "author": author, **extra}


ANA = {"id": "100", "name": "ana.lima", "discriminator": "0000", "nickname": "Ana", "isBot": False}
BEN = {"id": "200", "name": "benode", "discriminator": "0000", "isBot": False}
BOT = {"id": "300", "name": "Helper", "discriminator": "0000", "nickname": "Helper", "isBot": True}


def test_discord_channel(tmp_path):
    source = write_json(
        tmp_path / "Direct Messages - ben [9].json",
        dce(
            [
                dmsg("1", "Default", "2023-05-01T23:59:59.123+02:00", ANA, "hi @benode"),
                dmsg("1", "Default", "2023-05-01T23:59:59.123+02:00", ANA, "hi @benode"),  # the same id twice
                dmsg("2", "Reply", "2023-05-02T00:00:01.000+02:00", BEN, "hello", reference={"messageId": "1"}),
                dmsg("3", "Call", "2023-05-02T00:01:00.000+02:00", BEN, "Started a call that lasted 3 minutes."),
                dmsg("4", "ChannelNameChange", "2023-05-02T00:02:00.000+02:00", BEN, "Changed the channel name."),
                dmsg(
                    "5",
                    "Default",
                    "2023-05-02T00:03:00.000+02:00",
                    {**ANA, "nickname": None},  # nickname missing this time: still one person
                    "",
                    attachments=[{"id": "a", "url": "https://cdn/x.png", "fileName": "x.png", "fileSizeBytes": 3}],
                ),
                dmsg("6", "Default", "2023-05-02T00:04:00.000+02:00", BOT, "beep"),
            ]
        ),
    )
    report, obj, rows = converted(source, tmp_path)
    assert report["format"] == "discord"
    assert obj["name"] == {"speaker_1": "Ana", "speaker_2": "benode", "speaker_3": "Helper"}
    assert [m["clean_text"] for m in rows] == ["hi @benode", "hello", "", "beep"]
    assert rows[0]["date_time"] == "01.05.2023, 23:59:59" and rows[1]["date_time"] == "02.05.2023, 00:00:01"
    assert rows[2]["img_file"] == ["x.png"] and rows[2]["speaker"] == "Ana"
    assert report["bots"] == ["Helper"] and report["system_skipped"] == 1
    assert report["placeholders_dropped"] == {"call": 1}
    assert len([k for k in obj if k.endswith("_date_time")]) == 2  # the midnight splits the days


# --- Messenger -----------------------------------------------------------------------------------


def mojibake(text: str) -> str:
    """What Messenger writes: UTF-8 bytes as Latin-1 code points."""
    return text.encode("utf-8").decode("latin-1")


def messenger_thread(folder: Path) -> Path:
    zoe, ben = mojibake("Zoë Aalto"), "Ben Ode"
    participants = [{"name": zoe}, {"name": ben}, {"name": mojibake("Cléo Park")}]
    newest = [  # message_1.json: the newest, newest first
        {"sender_name": ben, "timestamp_ms": 1657238460000, "content": mojibake("see you 😊")},
        {"sender_name": zoe, "timestamp_ms": 1657238400000, "content": "unsent", "is_unsent": True},
        {"sender_name": zoe, "timestamp_ms": 1657238300000, "photos": [{"uri": "messages/inbox/zoe_1/photos/p.jpg"}]},
    ]
    older = [
        {"sender_name": ben, "timestamp_ms": 1657152000000, "type": "Call", "call_duration": 3},
        {"sender_name": zoe, "timestamp_ms": 1657151000000, "type": "Subscribe", "users": [{"name": ben}]},
        {"sender_name": zoe, "timestamp_ms": 1657150000000, "content": mojibake("Grüße\nzweite Zeile")},
    ]
    thread = folder / "messages" / "inbox" / "zoe_1"
    for n, messages in ((1, newest), (2, older)):
        obj = {"participants": participants, "messages": messages, "title": zoe, "thread_type": "RegularGroup"}
        write_json(thread / f"message_{n}.json", obj, bom=n == 1)
    (thread / "photos").mkdir()
    (thread / "photos" / "p.jpg").write_bytes(b"jpg")
    return thread


def test_messenger_folder_merges_files_in_time_order_and_repairs_mojibake(tmp_path):
    thread = messenger_thread(tmp_path / "export")
    report, obj, rows = converted(thread, tmp_path, "--images-dir", tmp_path / "img")
    assert report["format"] == "messenger"
    assert obj["name"] == {"speaker_1": "Zoë Aalto", "speaker_2": "Ben Ode"}
    assert [m["clean_text"] for m in rows] == ["Grüße\nzweite Zeile", "", "see you 😊"]
    assert rows[0]["date_time"] == "06.07.2022, 23:26:40"  # epoch ms in the local zone (TZ=UTC here)
    assert rows[1]["img_file"] == ["p.jpg"] and report["media_copied"] == 1
    assert report["placeholders_dropped"] == {"deleted": 1, "call": 1} and report["system_skipped"] == 1


def test_one_messenger_file_says_the_folder_holds_more(tmp_path):
    thread = messenger_thread(tmp_path / "export")
    out = tmp_path / "one.json"
    result = run(thread / "message_1.json", "-o", out)
    assert result.exit_code == 0, result.output
    assert "pass the folder to read the whole thread" in result.output


# --- anonymize -------------------------------------------------------------------------------------


def test_anonymize_leaves_no_name_phone_email_or_url(tmp_path):
    text = (
        "23/03/2022, 13:31 - Ana Lima: Hi Ben! Call me on +49 170 1234567 or write to ana.lima@example.org\n"
        "23/03/2022, 13:32 - Ben Ode: sure Ana, see https://example.org/ben?x=1 and www.example.com\n"
        "23/03/2022, 13:33 - Ben Ode: \u200eIMG-20220323-WA0001 Ana Lima.jpg (file attached)\n"
        "23/03/2022, 13:34 - +44 7700 900123: hello from a number\n"
        "23/03/2022, 13:35 - Ana Lima: ANA LIMA says hi to benode\n"
    )
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    mapping = tmp_path / "map.json"
    report, obj, rows = converted(source, tmp_path, "--anonymize", "--anonymize-map", mapping)
    raw = (tmp_path / "out.json").read_text(encoding="utf-8")
    for secret in ("Ana", "Lima", "Ben", "Ode", "+49", "1234567", "7700", "example", "@", "http", "www"):
        assert secret not in raw, secret
    assert obj["name"] == {"speaker_1": "Person 1", "speaker_2": "Person 2", "speaker_3": "Person 3"}
    assert rows[0]["clean_text"] == "Hi Person 2! Call me on [phone] or write to [email]"
    assert rows[2]["img_file"] == ["IMG-20220323-WA0001 Person 1.jpg"]
    assert json.loads(mapping.read_text()) == {
        "Ana Lima": "Person 1",
        "Ben Ode": "Person 2",
        "+44 7700 900123": "Person 3",
    }
    assert report["anonymized"] and report["speakers"] == ["Person 1", "Person 2", "Person 3"]


def test_anonymize_writes_no_mapping_unless_asked(tmp_path):
    source = tmp_path / "chat.txt"
    source.write_text(ANDROID_EN_GB, encoding="utf-8")
    before = set(os.listdir(tmp_path))
    converted(source, tmp_path, "--anonymize")
    assert set(os.listdir(tmp_path)) - before == {"out.json"}


def test_discord_anonymize_replaces_user_names_beside_nicknames(tmp_path):
    source = write_json(
        tmp_path / "dm.json",
        dce(
            [
                dmsg("1", "Default", "2023-05-01T10:00:00+00:00", ANA, "hey @benode"),
                dmsg("2", "Default", "2023-05-01T10:01:00+00:00", BEN, "hi ana.lima"),
            ]
        ),
    )
    converted(source, tmp_path, "--anonymize")
    raw = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert "benode" not in raw and "ana.lima" not in raw and "Ana" not in raw


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,content",
    [
        ("notes.txt", b"just some notes\nnothing like a chat\n"),
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
        ("data.json", b'{"hello": [1, 2, 3]}'),
        ("list.json", b"[1, 2, 3]"),
        ("empty.txt", b""),
    ],
)
def test_an_unrecognised_file_is_one_line_naming_the_formats_tried(tmp_path, name, content):
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "out.json"
    result = run(source, "-o", out)
    assert result.exit_code == 2 and not out.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "WhatsApp" in lines[0] and "Telegram" in lines[0] and "Messenger" in lines[0]
    assert "Traceback" not in result.output


def test_a_truncated_zip_is_one_line(tmp_path):
    import zipfile

    archive = tmp_path / "chat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("_chat.txt", IOS_EN * 50)
    archive.write_bytes(archive.read_bytes()[:200])
    result = run(archive, "-o", tmp_path / "out.json")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.json").exists()


def test_one_speaker_or_no_message_is_exit_2_and_nothing_written(tmp_path):
    source = tmp_path / "chat.txt"
    source.write_text("23/03/2022, 13:31 - Ana Lima: hi\n23/03/2022, 13:32 - Ana Lima: anyone?\n", encoding="utf-8")
    result = run(source, "-o", tmp_path / "out.json")
    assert result.exit_code == 2 and "at least two speakers" in result.output
    source.write_text("23/03/2022, 13:31 - Messages and calls are end-to-end encrypted.\n", encoding="utf-8")
    result = run(source, "-o", tmp_path / "out.json")
    assert result.exit_code == 2 and "no messages" in result.output
    assert not (tmp_path / "out.json").exists()


def test_an_existing_output_is_kept_without_force(tmp_path):
    source = tmp_path / "chat.txt"
    source.write_text(ANDROID_EN_GB, encoding="utf-8")
    out = tmp_path / "out.json"
    out.write_text("mine")
    result = run(source, "-o", out)
    assert result.exit_code == 2 and "already exists" in result.output and out.read_text() == "mine"
    assert run(source, "-o", out, "--force").exit_code == 0 and out.read_text() != "mine"


def test_telegram_result_json_is_never_written_over_itself(tmp_path):
    source = write_json(tmp_path / "result.json", tg_chat())
    result = run(source, "--force")
    assert result.exit_code == 2 and "the export itself" in result.output
    assert json.loads(source.read_text())["name"] == "Ana Lima"


def test_json_of_the_wrong_shape_inside_a_known_layout_is_one_line(tmp_path):
    bad = dce([dmsg("1", "Default", "not a time", ANA, "x"), "just a string"])
    source = write_json(tmp_path / "dm.json", bad)
    result = run(source, "-o", tmp_path / "out.json", "--json")
    assert result.exit_code == 2 and "no messages" in result.output and "Traceback" not in result.output


def test_help_says_which_placeholder_kinds_are_dropped():
    result = runner.invoke(app, ["convert", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    for flag in (
        "--format",
        "--chat",
        "--anonymize",
        "--anonymize-map",
        "--session-gap",
        "--date-order",
        "--images-dir",
    ):
        assert flag in text
    assert "dropped" in text and "deleted or unsent messages, call notices, view-once media" in text
    assert "polls without text" in text


def test_odd_values_inside_a_known_layout_never_give_a_traceback(tmp_path):
    messages = [
        dmsg("1", "Default", "2023-01-01T10:00:00+00:00", {"id": 1, "name": ["x"]}, 5, attachments=7),
        dmsg("2", "Default", "2023-01-01T10:01:00+00:00", "bob", "x"),
        dmsg("3", "Default", "2023-01-01T10:02:00+00:00", ANA, "ok", stickers={"a": 1}),
    ]
    report, obj, rows = converted(write_json(tmp_path / "dm.json", dce(messages)), tmp_path)
    assert obj["name"] == {"speaker_1": "Unknown", "speaker_2": "Unknown (2)", "speaker_3": "Ana"} and len(rows) == 3
    deep = tmp_path / "deep.json"
    deep.write_text('{"participants": [], "messages": [' + "[" * 900 + "]" * 900 + "]}")
    result = run(deep, "-o", tmp_path / "deep_out.json")
    assert result.exit_code == 2 and "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_fifo_or_an_empty_folder_is_one_line(tmp_path):
    fifo = tmp_path / "chat.txt"
    os.mkfifo(fifo)
    assert "not a regular file" in run(fifo, "-o", tmp_path / "a.json").output
    (tmp_path / "empty").mkdir()
    result = run(tmp_path / "empty", "-o", tmp_path / "b.json")
    assert result.exit_code == 2 and "neither message_N.json files (Messenger) nor .xlsx sheets" in result.output


def test_utf16_text_with_its_bom_is_read(tmp_path):
    source = tmp_path / "chat.txt"
    source.write_bytes("23/03/2022, 13:31 - Ana: hi\n23/03/2022, 13:32 - Ben: yo\n".encode("utf-16"))
    report, obj, _ = converted(source, tmp_path)
    assert report["messages"] == 2 and obj["name"] == {"speaker_1": "Ana", "speaker_2": "Ben"}
