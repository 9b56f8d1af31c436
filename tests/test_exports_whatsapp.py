"""`realtalk convert` on WhatsApp exports: hand-written files in each platform and locale form that
shared/CHAT_EXPORTS.md lists (invented people; the invisible marks written as escapes)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app

runner = CliRunner()
LRM, RLM, NBSP, NNBSP = "\u200e", "\u200f", "\u00a0", "\u202f"

ANDROID_EN_GB = """\
23/03/2022, 13:30 - Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, \
can read or listen to them. Tap to learn more.
23/03/2022, 13:31 - Ana Lima: Hi Ben!
How was the trip?
23/03/2022, 13:32 - Ben Ode: <Media omitted>
the view from the hotel
23/03/2022, 13:33 - Ben Ode: Lorem ipsum : dolor: sit amet
23/03/2022, 13:34 - Ana Lima: This message was deleted
23/03/2022, 13:35 - Ben Ode: Missed voice call
23/03/2022, 13:36 - Ana Lima: null
23/03/2022, 13:37 - Ana Lima: location: https://maps.google.com/?q=51.5,-0.12
23/03/2022, 23:59 - Ben Ode: see you tomorrow <This message was edited>
24/03/2022, 00:00 - Ana Lima: Hi \n\nshiva!
24/03/2022, 00:01 - Ben Ode: \u200eIMG-20220324-WA0002.jpg (file attached)
caption of the picture
24/03/2022, 00:02 - Ben Ode: \u200eAUD-20220324-WA0000. (file attached)
24/03/2022, 09:00 - Ben Ode changed the subject to "Re: Trip"
"""

# 2023+ Android en-US: U+202F before AM/PM, month first (13 in the second field decides), 12:xx AM is 00:xx;
# the last line has no newline
ANDROID_EN_US = (
    f"1/4/23, 7:02{NNBSP}PM - Ana Lima: one\n"
    f"1/13/23, 12:05{NNBSP}AM - Ben Ode: two\n"
    f"1/13/23, 12:30{NNBSP}PM - Ana Lima: three"
)

# Spanish-style 12-hour clock: `p. m.` after an NBSP, `a. m.` with 00:08
ANDROID_ES = (
    f"20/6/2017 8:28{NBSP}p. m. - Ana Lima: hola\n"
    f"21/6/2017 00:08{NBSP}a. m. - Ben Ode: buenas\n"
    "01/30/2019, 08:49 p. m. - Ana Lima: otra\n"
).replace("01/30/2019", "30/01/2019")

ANDROID_CS = """\
23.03.22 13:31 - Zprávy a hovory jsou koncově šifrované.
23.03.22 13:31 - Ana Lima: Ahoj
23.03.22 13:32 - Ben Ode: <Média vynechány>
23.03.22 13:33 - Ben Ode: \u200eIMG-20220323-WA0002.jpg (soubor byl přiložen)
popisek
23.03.22 13:34 - Ana Lima: Tato zpráva byla odstraněna
23.03.22 13:35 - Ben Ode: Zmeškaný hovor
23.03.22 13:36 - Ana Lima: poloha: https://maps.google.com/?q=50.1,14.4
"""

ANDROID_RU = """\
23.03.2022, 13:31 - Ana Lima: Привет
23.03.2022, 13:32 - Ben Ode: <Без медиафайлов>
23.03.2022, 13:33 - Ben Ode: \u200eIMG-20220323-WA0003.jpg (файл добавлен)
23.03.2022, 13:34 - Ana Lima: Данное сообщение удалено
23.03.2022, 13:35 - Ben Ode: Пропущенный аудиозвонок
"""

ANDROID_NL = """\
23-03-2022 13:31 - Ana Lima: Hoi
23-03-2022 13:32 - Ben Ode: <Media weggelaten>
23-03-2022 13:33 - Ben Ode: \u200eIMG-20220323-WA0004.jpg (bestand bijgevoegd)
23-03-2022 13:34 - Ana Lima: Dit bericht is verwijderd
23-03-2022 13:35 - Ben Ode: Gemiste spraakoproep
"""

ANDROID_YMD = """\
2019/01/30, 20:49 - Ana Lima: year first
2019/01/31, 08:00 - Ben Ode: still year first
"""

# iOS en, CRLF; system lines under the contact's name with U+200E; a phone number as a name (U+202A, NBSPs,
# U+202C); one line with the closing U+202C dropped; media attached and omitted; a venue share with ": "
IOS_EN = (
    "[3/18/22, 14:56:01] Ben Ode: \u200eMessages and calls are end-to-end encrypted. No one outside of this chat, "
    "not even WhatsApp, can read or listen to them.\r\n"
    "[3/27/22, 21:41:35] Ana Lima: Hello World\r\n"
    "\u200e[3/27/22, 21:41:55] Ana Lima: \u200e<attached: 00000035-PHOTO-2022-03-27-21-41-55.jpg>\r\n"
    "[3/27/22, 21:43:56] Ana Lima: \u200eimage omitted\r\n"
    "[3/27/22, 21:46:03] Ana Lima: Pimlico Gardens (London, United Kingdom): https://foursquare.com/v/4e89af95\r\n"
    "[3/27/22, 21:50:25] Ana Lima: Resume-Ana-Lima.pdf \u2022 \u200e2 pages \u200edocument omitted\r\n"
    "\u200e[3/27/22, 21:50:43] Ana Lima: Template.docx \u200e<attached: 00000048-Template.docx>\r\n"
    "[3/27/22, 21:50:54] Ana Lima: \u200eYou deleted this message.\r\n"
    "[3/27/22, 21:54:45] Ben Ode: \u200eThis message was deleted.\r\n"
    "[3/27/22, 21:56:45] Ana Lima: \u200eLocation: https://maps.google.com/?q=51.5021456,-0.127397\r\n"
    "[3/27/22, 21:57:00] Ben Ode: edited one \u200e<This message was edited>\r\n"
    f"[3/28/22, 09:00:00] \u202a+40{NBSP}521{NBSP}028{NBSP}62{NBSP}18\u202c: from a number\r\n"
    f"[3/28/22, 09:01:00] \u202a+40{NBSP}521{NBSP}028{NBSP}62{NBSP}18: closing mark dropped\r\n"
    "[4/28/22, 20:17:30] Ben Ode: \u200eYour security code with Ben changed. Tap to learn more.\r\n"
)

IOS_DE = """\
[3/18/22, 14:56:00] Ben Ode: \u200eNachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt.
[3/27/22, 21:41:55] Ana Lima: \u200eBild weggelassen
[3/27/22, 21:47:54] Ana Lima: \u200eKontaktkarte ausgelassen
[3/27/22, 21:48:00] Ana Lima: Hallo
[3/27/22, 21:50:54] Ana Lima: \u200eDu hast diese Nachricht gelöscht.
[3/27/22, 21:54:45] Ben Ode: \u200eDiese Nachricht wurde gelöscht.
[3/27/22, 21:56:45] Ana Lima: \u200eStandort: https://maps.google.com/?q=51.5,-0.12
[3/27/22, 21:58:00] Ben Ode: Tschüss
"""

IOS_FR_NO_COMMA = """\
[3/18/22 14:56:00] Ben Ode: \u200eLes messages et les appels sont chiffrés de bout en bout.
[3/27/22 21:41:35] Ana Lima: Bonjour
[3/27/22 21:41:55] Ana Lima: \u200eimage absente
[3/27/22 21:50:09] Ana Lima: Some file.txt \u200edocument manquant
[3/27/22 21:54:45] Ben Ode: \u200eCe message a été supprimé.
[3/27/22 21:55:00] Ben Ode: Salut
"""

IOS_ID_DOTS = """\
[3/18/22 14.56.01] Ana Lima: Halo
[3/18/22 14.57.02] Ben Ode: \u200egambar tidak disertakan
[3/18/22 14.58.03] Ben Ode: \u200ePesan ini dihapus.
[3/18/22 14.59.04] Ana Lima: \u200eLokasi: https://maps.google.com/?q=1,2
"""

IOS_VI_TIME_FIRST = """\
[14:56:01, 3/18/22] Ben Ode: \u200eTin nhắn và cuộc gọi được mã hóa đầu cuối.
[21:41:35, 3/27/22] Ana Lima: Xin chào
[21:41:55, 3/27/22] Ana Lima: \u200eđã bỏ qua hình ảnh
[21:54:45, 3/27/22] Ben Ode: \u200eTin nhắn này đã bị xóa.
[21:55:00, 3/27/22] Ben Ode: Chào
"""

IOS_AR = (
    f"{RLM}[{RLM}18{RLM}/3{RLM}/2022\u060c 2:56:01{NBSP}م] Ana Lima: مرحبا\n"
    f"{RLM}[{RLM}19{RLM}/3{RLM}/2022\u060c 9:00:00{NBSP}ص] Ben Ode: {RLM}لم يتم إدراج الصورة\n"
    f"{RLM}[{RLM}19{RLM}/3{RLM}/2022\u060c 9:01:00{NBSP}ص] Ben Ode: {RLM}تم حذف الملصقات\n"
    f"{RLM}[{RLM}19{RLM}/3{RLM}/2022\u060c 9:02:00{NBSP}ص] Ana Lima: تم حذف هذه الرسالة.\n"
    f"[{RLM}٢٠{RLM}/٣{RLM}/٢٠٢٢\u060c ١٠:٠٠:٠٠{NBSP}م] Ana Lima: أرقام عربية\n"
)

# iOS en-GB 12-hour clock in a group: a system line without an author, a third speaker
IOS_GB_GROUP = """\
[16/03/2022, 03:10:17 PM] Messages and calls are end-to-end encrypted. No one outside of this chat can read them.
[16/03/2022, 03:10:18 PM] Trip group: \u200eAna Lima created group "Trip group"
[16/03/2022, 03:11:00 PM] Ana Lima: hi all
[16/03/2022, 03:12:00 PM] Ben Ode: hey
[16/03/2022, 12:05:00 AM] Cleo Park: early bird
[17/03/2022, 12:30:00 PM] Cleo Park: lunch?
"""

ERAS = """\
[3/18/2565 BE, 14:56:01] Ana Lima: Buddhist era
[3/18/R4, 14:57:01] Ben Ode: Reiwa 4
"""

AMBIGUOUS = """\
[12/9/20 11:23:00] Ana Lima: one
[11/01/20 11:24:00] Ben Ode: two
"""


def convert(tmp_path: Path, text: str | bytes, *args: str, name: str = "chat.txt"):
    source = tmp_path / name
    if isinstance(text, bytes):
        source.write_bytes(text)
    else:
        source.write_bytes(text.encode("utf-8"))
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["convert", str(source), "-o", str(out), "--json", *args])
    return result, out


def load(out: Path) -> tuple[dict, list[dict]]:
    obj = json.loads(out.read_text(encoding="utf-8"))
    messages = [m for k, v in obj.items() if k.startswith("session_") and isinstance(v, list) for m in v]
    return obj, messages


def summary(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["files"][0]


@pytest.mark.parametrize(
    "text,speakers,messages,media,first,last",
    [
        (ANDROID_EN_GB, ["Ana Lima", "Ben Ode"], 8, 3, "23.03.2022, 13:31:00", "24.03.2022, 00:02:00"),
        (ANDROID_EN_US, ["Ana Lima", "Ben Ode"], 3, 0, "04.01.2023, 19:02:00", "13.01.2023, 12:30:00"),
        (ANDROID_ES, ["Ana Lima", "Ben Ode"], 3, 0, "20.06.2017, 20:28:00", "30.01.2019, 20:49:00"),
        (ANDROID_CS, ["Ana Lima", "Ben Ode"], 4, 2, "23.03.2022, 13:31:00", "23.03.2022, 13:36:00"),
        (ANDROID_RU, ["Ana Lima", "Ben Ode"], 3, 2, "23.03.2022, 13:31:00", "23.03.2022, 13:33:00"),
        (ANDROID_NL, ["Ana Lima", "Ben Ode"], 3, 2, "23.03.2022, 13:31:00", "23.03.2022, 13:33:00"),
        (ANDROID_YMD, ["Ana Lima", "Ben Ode"], 2, 0, "30.01.2019, 20:49:00", "31.01.2019, 08:00:00"),
        (IOS_EN, ["Ana Lima", "Ben Ode", "+40 521 028 62 18"], 10, 4, "27.03.2022, 21:41:35", "28.03.2022, 09:01:00"),
        (IOS_DE, ["Ana Lima", "Ben Ode"], 5, 2, "27.03.2022, 21:41:55", "27.03.2022, 21:58:00"),
        (IOS_FR_NO_COMMA, ["Ana Lima", "Ben Ode"], 4, 2, "27.03.2022, 21:41:35", "27.03.2022, 21:55:00"),
        (IOS_ID_DOTS, ["Ana Lima", "Ben Ode"], 3, 1, "18.03.2022, 14:56:01", "18.03.2022, 14:59:04"),
        (IOS_VI_TIME_FIRST, ["Ana Lima", "Ben Ode"], 3, 1, "27.03.2022, 21:41:35", "27.03.2022, 21:55:00"),
        (IOS_AR, ["Ana Lima", "Ben Ode"], 4, 2, "18.03.2022, 14:56:01", "20.03.2022, 22:00:00"),
        (IOS_GB_GROUP, ["Cleo Park", "Ana Lima", "Ben Ode"], 4, 0, "16.03.2022, 00:05:00", "17.03.2022, 12:30:00"),
        (ERAS, ["Ana Lima", "Ben Ode"], 2, 0, "18.03.2022, 14:56:01", "18.03.2022, 14:57:01"),
    ],
    ids=["android-en-gb", "android-en-us-202f", "android-es-pm", "android-cs", "android-ru", "android-nl",
         "android-ymd", "ios-en-crlf", "ios-de", "ios-fr-no-comma", "ios-id-dots", "ios-vi-time-first", "ios-ar",
         "ios-en-gb-12h-group", "ios-eras"],
)  # fmt: skip
def test_whatsapp_locales_give_the_chat_as_people_see_it(tmp_path, text, speakers, messages, media, first, last):
    result, out = convert(tmp_path, text)
    report = summary(result)
    obj, rows = load(out)
    assert report["format"] == "whatsapp"
    assert list(obj["name"].values()) == speakers
    assert len(rows) == messages and report["messages"] == messages
    assert sum(1 for m in rows if m["img_file"]) == media
    assert rows[0]["date_time"] == first and rows[-1]["date_time"] == last
    assert "qa" not in obj
    days = {m["date_time"][:10] for m in rows}
    assert len([k for k in obj if k.endswith("_date_time")]) == len(days)  # a session per calendar day
    for key, session in obj.items():
        if key.startswith("session_") and isinstance(session, list):
            n = key.split("_")[1]
            assert {m["date_time"][:10] for m in session} == {obj[f"session_{n}_date_time"][:10]}
            assert [m["dia_id"] for m in session] == [f"D{n}:{i}" for i in range(1, len(session) + 1)]
            assert obj[f"events_session_{n}"] == {"agent_a": [], "agent_b": []}
    assert report["unparsed_lines"] == 0


def test_android_en_gb_texts_captions_and_counts(tmp_path):
    result, out = convert(tmp_path, ANDROID_EN_GB)
    report = summary(result)
    _, rows = load(out)
    texts = [m["clean_text"] for m in rows]
    assert texts[0] == "Hi Ben!\nHow was the trip?"  # continuation line kept
    assert rows[1]["img_file"] == ["<Media omitted>"] and texts[1] == "the view from the hotel"
    assert texts[2] == "Lorem ipsum : dolor: sit amet"  # the author ends at the first ": "
    assert texts[3] == "location: https://maps.google.com/?q=51.5,-0.12"  # a location is text
    assert rows[3]["img_url"] == ["https://maps.google.com/?q=51.5,-0.12"]
    assert texts[4] == "see you tomorrow"  # the edited marker is no text
    assert texts[5] == "Hi \n\nshiva!"  # blank lines inside a message stay
    assert rows[6]["img_file"] == ["IMG-20220324-WA0002.jpg"] and texts[6] == "caption of the picture"
    assert rows[7]["img_file"] == ["AUD-20220324-WA0000."]  # uploaded audio without its extension
    assert report["system_skipped"] == 2  # the encryption notice and the subject change (its ": " inside quotes)
    assert report["placeholders_dropped"] == {"deleted": 1, "call": 1, "view_once": 1}
    assert [r["dia_id"] for r in rows] == ["D1:1", "D1:2", "D1:3", "D1:4", "D1:5", "D2:1", "D2:2", "D2:3"]


def test_ios_system_lines_under_the_contacts_name_are_not_messages(tmp_path):
    result, out = convert(tmp_path, IOS_EN)
    report = summary(result)
    _, rows = load(out)
    assert all("\r" not in m["clean_text"] for m in rows)
    assert not any("encrypted" in m["clean_text"] or "security code" in m["clean_text"] for m in rows)
    assert report["system_skipped"] == 2 and report["placeholders_dropped"] == {"deleted": 2}
    by_text = {m["clean_text"]: m for m in rows}
    assert (
        by_text["Pimlico Gardens (London, United Kingdom): https://foursquare.com/v/4e89af95"]["speaker"] == "Ana Lima"
    )
    assert "Location: https://maps.google.com/?q=51.5021456,-0.127397" in by_text  # the mark is gone
    assert [m["img_file"] for m in rows if m["img_file"]] == [
        ["00000035-PHOTO-2022-03-27-21-41-55.jpg"],
        ["image omitted"],
        ["Resume-Ana-Lima.pdf \u2022 2 pages document omitted"],
        ["00000048-Template.docx"],
    ]
    phone = [m for m in rows if m["speaker"].startswith("+40")]
    assert len(phone) == 2 and {m["speaker"] for m in phone} == {"+40 521 028 62 18"}  # one person


def test_arabic_stickers_deleted_is_a_sticker_not_a_deleted_message(tmp_path):
    result, out = convert(tmp_path, IOS_AR)
    report = summary(result)
    _, rows = load(out)
    assert [m["img_file"] for m in rows if m["img_file"]] == [["لم يتم إدراج الصورة"], ["تم حذف الملصقات"]]
    assert report["placeholders_dropped"] == {"deleted": 1}
    assert rows[-1]["clean_text"] == "أرقام عربية" and rows[-1]["date_time"] == "20.03.2022, 22:00:00"


def test_a_file_whose_every_date_reads_both_ways_needs_date_order(tmp_path):
    result, out = convert(tmp_path, AMBIGUOUS)
    assert result.exit_code == 2 and not out.exists()
    assert "every date reads both as day/month and month/day" in result.output
    assert "--date-order" in result.output and "Traceback" not in result.output
    result, out = convert(tmp_path, AMBIGUOUS, "--date-order", "mdy")
    _, rows = load(out)
    assert sorted(m["date_time"] for m in rows) == ["01.11.2020, 11:24:00", "09.12.2020, 11:23:00"]
    result, out = convert(tmp_path, AMBIGUOUS, "--date-order", "dmy", "--force")
    _, rows = load(out)
    assert [m["date_time"] for m in rows] == ["12.09.2020, 11:23:00", "11.01.2020, 11:24:00"][::-1]


def test_messages_out_of_order_are_sorted_and_sessions_are_days(tmp_path):
    text = (
        "23/03/2022, 12:03 - Ana Lima: second\n"
        "23/03/2022, 12:02 - Ben Ode: first\n"
        "23/03/2022, 23:59 - Ana Lima: late\n"
        "24/03/2022, 00:00 - Ben Ode: midnight\n"
        "01/01/2020, 10:00 - Ana Lima: a stray old line\n"
    )
    result, out = convert(tmp_path, text)
    obj, rows = load(out)
    assert [m["clean_text"] for m in rows] == ["a stray old line", "first", "second", "late", "midnight"]
    assert [obj[f"session_{n}_date_time"] for n in (1, 2, 3)] == [
        "01.01.2020, 10:00:00",
        "23.03.2022, 12:02:00",
        "24.03.2022, 00:00:00",
    ]
    result, out = convert(tmp_path, text, "--session-gap", "12", "--force")
    obj, rows = load(out)
    assert len(obj["session_2"]) == 4  # 12:03 -> 23:59 is less than 12 hours of silence


def test_lines_before_the_first_message_are_reported_with_line_numbers(tmp_path):
    text = "some header a tool added\n\n" + ANDROID_NL
    result, out = convert(tmp_path, text)
    report = summary(result)
    assert report["unparsed_lines"] == 1 and report["unparsed"] == [
        {"where": "line 1", "text": "some header a tool added"}
    ]
    plain = runner.invoke(app, ["convert", str(tmp_path / "chat.txt"), "-o", str(tmp_path / "o2.json")])
    assert "line 1: some header a tool added" in plain.output


def test_impossible_dates_are_reported_not_dropped(tmp_path):
    text = "23/03/2022, 13:31 - Ana Lima: hi\n31/02/2022, 13:32 - Ben Ode: ghost day\n23/03/2022, 13:33 - Ben Ode: yo\n"
    report = summary(convert(tmp_path, text)[0])
    assert report["messages"] == 2 and report["unparsed_lines"] == 1
    assert report["unparsed"][0]["where"] == "line 2" and "ghost day" in report["unparsed"][0]["text"]


def test_zip_from_android_copies_its_media_to_images_dir(tmp_path):
    archive = tmp_path / "WhatsApp Chat with Ben Ode.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("WhatsApp Chat with Ben Ode.txt", ANDROID_EN_GB)
        z.writestr("IMG-20220324-WA0002.jpg", b"\xff\xd8jpeg")
        z.writestr("notes.txt", "a document that is also a .txt")
    out, images = tmp_path / "out.json", tmp_path / "images"
    result = runner.invoke(app, ["convert", str(archive), "-o", str(out), "--images-dir", str(images), "--json"])
    report = summary(result)
    assert report["media_copied"] == 1 and (images / "IMG-20220324-WA0002.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert report["messages"] == 8


def test_zip_from_ios_reads_chat_txt_beside_numbered_media(tmp_path):
    archive = tmp_path / "WhatsApp Chat - Ben Ode.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("00000048-Template.docx", b"docx")
        z.writestr("_chat.txt", IOS_EN)
        z.writestr("00000035-PHOTO-2022-03-27-21-41-55.jpg", b"jpg")
    out, images = tmp_path / "out.json", tmp_path / "images"
    report = summary(
        runner.invoke(app, ["convert", str(archive), "-o", str(out), "--images-dir", str(images), "--json"])
    )
    assert report["media_copied"] == 2
    assert sorted(p.name for p in images.iterdir()) == [
        "00000035-PHOTO-2022-03-27-21-41-55.jpg",
        "00000048-Template.docx",
    ]


def test_a_zip_whose_chat_txt_is_in_the_android_layout_is_read_by_its_lines(tmp_path):
    archive = tmp_path / "chat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("_chat.txt", ANDROID_RU)
    out = tmp_path / "out.json"
    report = summary(runner.invoke(app, ["convert", str(archive), "-o", str(out), "--json"]))
    assert report["messages"] == 3


def test_u2028_and_form_feeds_inside_a_message_do_not_split_it(tmp_path):
    text = "23/03/2022, 13:31 - Ana Lima: one\u2028two\x0cthree\n23/03/2022, 13:32 - Ben Ode: ok\n"
    _, rows = load(convert(tmp_path, text)[1])
    assert rows[0]["clean_text"] == "one\u2028two\x0cthree"


def test_bidi_marks_and_narrow_spaces_leave_names(tmp_path):
    text = f"23/03/2022, 13:31 - \u2068Ana{NBSP}Lima\u2069: hi\n23/03/2022, 13:32 - Ben{NNBSP}Ode{LRM}: ok\n"
    obj, _ = load(convert(tmp_path, text)[1])
    assert obj["name"] == {"speaker_1": "Ana Lima", "speaker_2": "Ben Ode"}


def test_a_mark_before_an_android_text_keeps_it_a_message(tmp_path):
    text = "23/03/2022, 13:31 - Ana Lima: \u200ehello\n23/03/2022, 13:32 - Ben Ode: hi\n"
    _, rows = load(convert(tmp_path, text)[1])
    assert [m["clean_text"] for m in rows] == ["hello", "hi"]
