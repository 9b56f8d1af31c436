"""WhatsApp "Export chat" (a .txt, or the .zip as shared, with its media) -> Export.

The rules follow the facts in shared/CHAT_EXPORTS.md (Android and iOS, 15+ locales):
- A line that begins with a timestamp starts a record; every other line (blank ones included) continues the
  record before it. Lines are split on "\\n" only (CRLF -> LF first): U+2028 and form feeds stay in the text.
- Android: `DATE TIME - AUTHOR: TEXT`; iOS: `[DATE TIME] AUTHOR: TEXT` (also time first, RLM-laced Arabic).
  The author ends at the first ": "; a record without one is a system line.
- iOS writes its system lines under the contact's name with U+200E as the first character of the text; so
  does it write media placeholders, deleted notices and locations, which are told apart by their wording.
- Day/month order comes from the whole file (a field above 12 decides), else from `--date-order`.
"""

from __future__ import annotations

import functools
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from realtalk_cli.data.exports import Export, Media, Post
from realtalk_cli.errors import RealtalkError

MAX_TEXT_BYTES = 1024 * 1024 * 1024  # a chat text above this inside a zip is refused before unpacking
MAX_MEDIA_BYTES = 2 * 1024 * 1024 * 1024  # a media file above this inside a zip is refused (a zip bomb)

# --- line grammar ---------------------------------------------------------------------------------

BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c\ufeff"
_M = f"[{BIDI}]*"
_SP = "[ \u00a0\u202f]"
_DIG = "[0-9\u0660-\u0669\u06f0-\u06f9]"
_DATE = (
    rf"(?P<a>{_DIG}{{1,4}}){_M}(?P<sep>[/.\-]){_M}(?P<b>{_DIG}{{1,2}}){_M}(?P=sep){_M}"
    rf"(?P<c>{_DIG}{{2,4}}(?:{_SP}?BE)?|[RHS]{_DIG}{{1,2}})"
)
_TIME = (
    rf"(?P<h>{_DIG}{{1,2}})[:.](?P<mi>{_DIG}{{2}})(?:[:.](?P<s>{_DIG}{{2}}))?"
    rf"(?:{_SP}*(?P<ampm>[aApP]\.?{_SP}?[mM]\.?|ص|م|in the (?:morning|afternoon|evening)|at night|noon))?"
)
PLATFORMS = {
    "ios": re.compile(rf"^{_M}\[{_M}{_DATE}{_M}[,،]?{_SP}*{_M}{_TIME}{_M}\]{_SP}?"),
    "ios-time-first": re.compile(rf"^{_M}\[{_M}{_TIME}{_M}[,،]?{_SP}*{_M}{_DATE}{_M}\]{_SP}?"),
    "android": re.compile(rf"^{_M}{_DATE}{_M}[,،]?{_SP}*{_M}{_TIME}{_M}{_SP}*[-–]{_SP}"),
}
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_INVISIBLE = str.maketrans({**dict.fromkeys(map(ord, BIDI)), 0xA0: " ", 0x202F: " ", 0x2007: " "})

# --- what texts mean (compared casefolded, marks removed, spaces collapsed, a final full stop dropped) ----

_DELETED = """this message was deleted|you deleted this message|this message was deleted by an admin|
you deleted this message as admin|diese nachricht wurde gelöscht|du hast diese nachricht gelöscht|
tato zpráva byla odstraněna|tato zpráva byla smazána|tuto zprávu jste smazal/a|tuto zprávu jste odstranil/a|
данное сообщение удалено|это сообщение удалено|вы удалили данное сообщение|вы удалили это сообщение|
dit bericht is verwijderd|u hebt dit bericht verwijderd|je hebt dit bericht verwijderd|pesan ini dihapus|
pesan ini telah dihapus|anda menghapus pesan ini|anda telah menghapus pesan ini|tin nhắn này đã bị xóa|
tin nhắn này đã bị xoá|bạn đã xóa tin nhắn này|bạn đã xoá tin nhắn này|تم حذف هذه الرسالة|لقد حذفت هذه الرسالة|
لقد حذَفت هذه الرسالة|أنت حذفت هذه الرسالة|ce message a été supprimé|vous avez supprimé ce message|
se eliminó este mensaje|eliminaste este mensaje|este mensaje fue eliminado|esta mensagem foi apagada|
apagou esta mensagem|mensagem apagada|você apagou esta mensagem|questo messaggio è stato eliminato|
hai eliminato questo messaggio|це повідомлення було видалено|ви видалили це повідомлення|ข้อความนี้ถูกลบแล้ว|
คุณได้ลบข้อความนี้|คุณลบข้อความนี้|このメッセージは削除されました|このメッセージを削除しました|bu mesaj silindi|
bu mesajı sildiniz|ta wiadomość została usunięta|यह मैसेज डिलीट कर दिया गया है|आपने यह मैसेज डिलीट किया"""
_CALLS = """missed voice call|missed video call|missed group voice call|missed group video call|voice call|
video call|silenced voice call|silenced video call|zmeškaný hovor|zmeškaný hlasový hovor|zmeškaný videohovor|
пропущенный аудиозвонок|пропущенный видеозвонок|gemiste spraakoproep|gemiste video-oproep|
gemist spraakgesprek|gemist videogesprek|verpasster sprachanruf|verpasster videoanruf|appel vocal manqué|
appel vidéo manqué|llamada perdida|llamada de voz perdida|videollamada perdida|chamada de voz perdida|
chamada de vídeo perdida|videochamada perdida|chiamata vocale persa|videochiamata persa|
пропущений аудіодзвінок|пропущений відеодзвінок|panggilan suara tak terjawab|panggilan video tak terjawab|
cuộc gọi nhỡ|cuộc gọi nhỡ video|مكالمة صوتية فائتة|مكالمة فيديو فائتة|cevapsız sesli arama|
cevapsız görüntülü arama|สายที่ไม่ได้รับ|मिस्ड वॉइस कॉल|मिस्ड वीडियो कॉल"""
# iOS "<kind> omitted" in the locales of the samples (documents carry their name before the phrase)
_OMITTED = """image omitted|video omitted|audio omitted|sticker omitted|gif omitted|contact card omitted|
document omitted|bild weggelassen|video weggelassen|audio weggelassen|sticker weggelassen|gif weggelassen|
kontaktkarte ausgelassen|dokument weggelassen|image absente|vidéo absente|audio omis|sticker omis|gif retiré|
fiche contact manquante|document manquant|imagen omitida|video omitido|audio omitido|sticker omitido|
gif omitido|tarjeta de contacto omitida|documento omitido|immagine omessa|video omesso|audio omesso|
sticker non incluso|gif esclusa|scheda contatto omessa|documento omesso|imagem não revelada|vídeo não revelado|
ficheiro de áudio não revelado|sticker não revelado|gif não revelada|contacto não revelado|
documento não revelado|imagem ocultada|vídeo omitido|áudio ocultado|figurinha omitida|cartão do contato omitido|
изображение отсутствует|видео отсутствует|аудиофайл отсутствует|аудио отсутствует|стикер не добавлен|
стикер отсутствует|gif отсутствует|карточка контакта отсутствует|документ отсутствует|зображення відсутнє|
відео відсутнє|аудіо відсутнє|наклейку не додано|gif-анімацію пропущено|картка контакту відсутня|
документ пропущено|obrázek vynechán|video vynecháno|zvukový soubor vynechán|nálepka vynechána|gif vynechán|
vizitka vynechána|dokument vynechán|afbeelding weggelaten|video weggelaten|audio weggelaten|
sticker weggelaten|gif weggelaten|visitekaartje weggelaten|document weggelaten|gambar tidak disertakan|
video tidak disertakan|audio tidak disertakan|stiker tidak disertakan|gif tidak disertakan|
kartu kontak tidak disertakan|dokumen tidak disertakan|đã bỏ qua hình ảnh|đã bỏ video|bỏ qua tệp âm thanh|
đã bỏ sticker|đã bỏ qua ảnh gif|bỏ qua thẻ liên lạc|đã bỏ qua tài liệu|لم يتم إدراج الصورة|
لم يتم إدراج الفيديوهات|لم يتم إدراج الفيديو|لم يتم إدراج المقاطع الصوتية|تم حذف الملصقات|لم يتم إدراج صورة gif|
لم يتم إدراج بطاقة جهة اتصال|لم يتم إدراج المستند|ไม่มีรูปภาพ|วิดีโอถูกลบ|ไม่มีไฟล์เสียง|ไม่มีสติกเกอร์|ละเว้น gif|
บัตรรายชื่อที่ละเว้น|ละเว้นเอกสาร|画像は含まれていません|ビデオは含まれていません|音声は含まれていません|
スタンプは含まれていません|gifは含まれていません|連絡先カードを省略|ドキュメントは含まれていません|
görüntü dahil edilmedi|video dahil edilmedi|ses dahil edilmedi|çıkartma dahil edilmedi|gif dahil edilmedi|
kişi kartı dahil edilmedi|belge dahil edilmedi|obraz pominięty|wideo pominięte|audio pominięte|
pominięto naklejkę|plik gif pominięty|pominięta wizytówka kontaktu|dokument pominięty|फ़ोटो हटाई गई|
वीडियो छोड़ा गया|ऑडियो हटाई गयी|स्टिकर छोड़ा गया|gif छोड़ा गया|कॉन्टैक्ट कार्ड छोड़ा गया|डॉक्यूमेंट छोड़ा गया"""
# Android "<file> (file attached)"
_ATTACHED = """file attached|soubor byl přiložen|файл добавлен|bestand bijgevoegd|datei angehängt|fichier joint|
archivo adjunto|archivo adjuntado|file allegato|arquivo anexado|ficheiro anexado|file terlampir|dosya ekli|
tệp đính kèm|załączony plik|الملف مرفق|ไฟล์ที่แนบ|添付ファイル有り|файл додано|συνημμένο αρχείο"""
_EDITED = """this message was edited|diese nachricht wurde bearbeitet|se editó este mensaje|ce message a été modifié|
esta mensagem foi editada|mensagem editada|questo messaggio è stato modificato|сообщение изменено|
это сообщение было изменено|dit bericht is bewerkt|tato zpráva byla upravena|pesan ini telah diedit|
bu mesaj düzenlendi|повідомлення змінено|tin nhắn đã được chỉnh sửa|تم تعديل هذه الرسالة"""
# tails of the security-code and disappearing-message notices, for exports whose U+200E marks were lost
_LEARN_MORE = """tap to learn more|tap to change|click to change|tippe, um mehr zu erfahren|
appuyez pour en savoir plus|toque para saber mais|торкніться, щоб дізнатися більше|подробнее|
nhấn để tìm hiểu thêm|แตะเพื่อเรียนรู้เพิ่มเติม|tocca per saperne di più|pulsa para obtener más información|
ketuk untuk info selengkapnya|tik voor meer informatie|další informace zobrazíte klepnutím|انقر هنا لمعرفة المزيد"""


def _phrases(block: str) -> frozenset[str]:
    return frozenset(p.strip() for p in block.replace("\n", "").split("|") if p.strip())


DELETED, CALLS, OMITTED, ATTACHED = map(_phrases, (_DELETED, _CALLS, _OMITTED, _ATTACHED))
LEARN_MORE = _phrases(_LEARN_MORE)
_EDITED_TAIL = re.compile(
    rf"{_SP}*[\u200e\u200f]?<(?:{'|'.join(map(re.escape, _phrases(_EDITED)))})\.?>$", re.IGNORECASE
)
_IOS_ATTACHED = re.compile(r"^(?P<pre>.*?)\s?[\u200e\u200f]*<[^<>:\n]{1,40}: (?P<file>[^<>\n]+)>$")
_ANDROID_ATTACHED = re.compile(r"^[\u200e\u200f]*(?P<file>[^\n]+?)[ \u00a0]\((?P<word>[^()\n]+)\)$")
_WA_FILE = re.compile(r"^(IMG|VID|AUD|PTT|STK|DOC|PHOTO)-\d{8}-WA\d+", re.IGNORECASE)
_ANDROID_OMITTED = re.compile(r"^<[^\W\d_][^<>\n]{2,60}>$")
_LOCATION = re.compile(r"^[^\s:][^\n]{0,80}?: https?://")
_ENCRYPTED = re.compile(
    r"end-to-end|ende-zu-ende|de bout en bout|ponto a ponto|extremo a extremo|сквозн|наскрізн|"
    r"đầu cuối|uçtan uca|end-to-end|ต้นทางถึงปลายทาง|مشفرة",
    re.IGNORECASE,
)


_OMITTED_SUFFIXES = tuple(" " + p for p in OMITTED)
_LEARN_MORE_SUFFIXES = tuple(LEARN_MORE)


def _omitted(key: str) -> bool:
    """An iOS "<kind> omitted" placeholder (a document's name may stand before it)."""
    return key in OMITTED or key.endswith(_OMITTED_SUFFIXES)


@functools.lru_cache(maxsize=4096)
def clean_name(name: str) -> str:
    """A name as people see it: no direction marks, NBSP and narrow spaces as spaces."""
    return name.translate(_INVISIBLE).strip()


def _key(text: str) -> str:
    if not text.isascii():
        text = text.translate(_INVISIBLE)
    return " ".join(text.split()).casefold().rstrip(".").strip()


# --- reading --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Record:
    line: int
    a: str
    b: str
    c: str
    h: str
    mi: str
    s: str | None
    ampm: str | None
    rest: str
    more: list[str] | None = None


def looks_like_whatsapp(text: str) -> bool:
    """A timestamped WhatsApp line among the first lines of a text."""
    lines = [ln for ln in text.split("\n")[:200] if ln.strip()][:60]
    return any(rx.match(ln) for ln in lines for rx in PLATFORMS.values())


def read_whatsapp(path: Path, date_order: str | None = None) -> Export:
    """A WhatsApp .txt, or a .zip holding one (its media files become readable attachments)."""
    files: dict[str, str] = {}
    if zipfile.is_zipfile(path):
        text, files = _read_zip(path)
    else:
        text = _decode(path.read_bytes(), path)
    return parse_whatsapp(text, path, date_order, files)


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 as WhatsApp writes it (UTF-16 with its BOM, as some editors save a file, is read too)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if "\x00" in text[:4096]:
        raise RealtalkError(f"{path}: not a text file (binary data); a WhatsApp export is UTF-8 text")
    return text


def _read_zip(path: Path) -> tuple[str, dict[str, str]]:
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            texts = sorted(
                (i for i in infos if i.filename.lower().endswith(".txt")),
                key=lambda i: (Path(i.filename).name != "_chat.txt", "whatsapp" not in i.filename.lower()),
            )
            for info in texts:
                if info.file_size > MAX_TEXT_BYTES:
                    raise RealtalkError(f"{path}: {info.filename} unpacks to more than a chat export can hold")
                text = _decode(z.read(info), path)
                if looks_like_whatsapp(text):
                    media = {Path(i.filename).name: i.filename for i in infos if i is not info}
                    return text, media
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zipfile.LargeZipFile) as e:
        raise RealtalkError(f"{path}: corrupt or truncated zip archive ({e})") from None
    raise RealtalkError(f"{path}: a zip archive without a WhatsApp chat (.txt) inside")


def parse_whatsapp(text: str, path: Path, date_order: str | None = None, files: dict[str, str] | None = None) -> Export:
    files = files or {}
    export = Export("whatsapp")
    lines = text.replace("\r\n", "\n").split("\n")
    platform = _platform(lines)
    if platform is None:
        raise RealtalkError(f"{path}: no WhatsApp message line found (expected e.g. '23/03/2022, 13:31 - Name: text')")
    head = PLATFORMS[platform]
    records: list[_Record] = []
    current: _Record | None = None
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        m = head.match(line)
        if m:
            g = m.groupdict()
            current = _Record(number, g["a"], g["b"], g["c"], g["h"], g["mi"], g["s"], g["ampm"], line[m.end() :])
            records.append(current)
        elif current is not None:
            if current.more is None:
                current.more = []
            current.more.append(line)
        elif line.strip():
            export.unparsed.append((f"line {number}", line[:200]))
    order = _date_order(records, path, date_order)
    parsed = []
    for r in records:
        when = _datetime(r, order)
        if when is None:
            after = f" (and the {len(r.more)} lines after it)" if r.more else ""
            export.unparsed.append((f"line {r.line}", f"impossible date or time {_stamp(r)}{after}: {r.rest[:120]}"))
            continue
        parsed.append((when, r))
    _classify_all(parsed, export, path, files, android=platform == "android")
    return export


def _platform(lines: list[str]) -> str | None:
    sample = [ln for ln in lines[:400] if ln.strip()][:100]
    counts = {name: sum(1 for ln in sample if rx.match(ln)) for name, rx in PLATFORMS.items()}
    best = max(counts, key=counts.get)
    if counts[best]:
        return best
    # a long preamble: look further
    for ln in lines:
        for name, rx in PLATFORMS.items():
            if rx.match(ln):
                return name
    return None


def _stamp(r: _Record) -> str:
    return f"{r.a}/{r.b}/{r.c} {r.h}:{r.mi}" + (f":{r.s}" if r.s else "") + (f" {r.ampm}" if r.ampm else "")


def _date_order(records: list[_Record], path: Path, given: str | None) -> str:
    if given is not None:
        return given
    day_first = month_first = None
    undecided = None
    for r in records:
        a, b = r.a.translate(_DIGITS), r.b.translate(_DIGITS)
        if len(a) == 4:
            continue
        if int(a) > 12 and day_first is None:
            day_first = r
        elif int(b) > 12 and month_first is None:
            month_first = r
        elif a != b and undecided is None:
            undecided = r
    if day_first and month_first:
        raise RealtalkError(
            f"{path}: dates read day first (line {day_first.line}: {_stamp(day_first)}) and month first "
            f"(line {month_first.line}: {_stamp(month_first)}); say which with --date-order dmy or mdy"
        )
    if day_first:
        return "dmy"
    if month_first:
        return "mdy"
    if records and all(len(r.a) == 4 for r in records[:50]):
        return "ymd"
    if undecided is not None:
        raise RealtalkError(
            f"{path}: every date reads both as day/month and month/day (e.g. line {undecided.line}: "
            f"{_stamp(undecided)}); say which with --date-order dmy or mdy"
        )
    return "dmy"


@functools.lru_cache(maxsize=256)
def _year(c: str) -> int:
    c = c.translate(_DIGITS).replace("\u00a0", " ").strip()
    if c[0] in "RHS":  # Japanese eras: Reiwa, Heisei, Showa
        return {"R": 2018, "H": 1988, "S": 1925}[c[0]] + int(c[1:])
    year = int(c.removesuffix("BE").strip())
    if year < 100:
        return 2000 + year
    return year - 543 if year > 2400 else year  # Buddhist era


def _datetime(r: _Record, order: str) -> datetime | None:
    day = _date(r.a, r.b, r.c, order)
    if day is None:
        return None
    try:
        hour = _int(r.h)
        if r.ampm:
            if hour > 12:
                return None
            hour = hour % 12 + (12 if _is_pm(r.ampm) else 0)
        return datetime(day[0], day[1], day[2], hour, _int(r.mi), _int(r.s) if r.s else 0)
    except ValueError:
        return None


def _int(digits: str) -> int:
    return int(digits if digits.isascii() else digits.translate(_DIGITS))


@functools.lru_cache(maxsize=4096)
def _date(a: str, b: str, c: str, order: str) -> tuple[int, int, int] | None:
    """(year, month, day) of a date's three fields, or None for an impossible date."""
    try:
        if len(a) == 4 or order == "ymd":
            year, month, day = _int(a), _int(b), _int(c[:2])
        elif order == "mdy":
            year, month, day = _year(c), _int(a), _int(b)
        else:
            year, month, day = _year(c), _int(b), _int(a)
        datetime(year, month, day)
    except (ValueError, IndexError, KeyError):
        return None
    return year, month, day


@functools.lru_cache(maxsize=64)
def _is_pm(marker: str) -> bool:
    key = _key(marker).replace(".", "").replace(" ", "")
    return key in ("pm", "م") or key.startswith(("inthea", "inthee", "atnight", "noon"))


def _classify_all(
    parsed: list[tuple[datetime, _Record]], export: Export, path: Path, files: dict[str, str], android: bool
) -> None:
    authored = []
    for when, r in parsed:
        i = r.rest.find(": ")
        author_raw, text = (r.rest[:i], r.rest[i + 2 :]) if i > 0 else (None, r.rest)
        if author_raw is not None and author_raw.startswith("\u200e"):
            author_raw = None  # iOS: a system line whose text holds ": "
        authored.append((when, r, author_raw, text))
    counts = Counter(clean_name(a) for _, _, a, _ in authored if a is not None)
    for n, (when, r, author_raw, text) in enumerate(authored):
        more = r.more or []
        if author_raw is None:
            bare = r.rest.rstrip()
            # `Name:` alone on its line, the text on the following lines
            if bare.endswith(":") and counts.get(clean_name(bare[:-1]), 0) and more:
                author_raw, text = bare[:-1], ""
            else:
                export.system += 1
                continue
        author = clean_name(author_raw)
        if counts[author] == 1 and re.search('["“”„«»]', author):
            export.system += 1  # `X changed the subject to "Re: y"`: the ": " is inside the subject
            continue
        if not author:
            export.system += 1
            continue
        post = _post(when, r, author, text, more, files, path, android, first=n < 3)
        if isinstance(post, str):
            if post == "system":
                export.system += 1
            else:
                export.dropped[post] += 1
            continue
        export.posts.append(post)


def _post(
    when: datetime,
    r: _Record,
    author: str,
    text: str,
    more: list[str],
    files: dict[str, str],
    path: Path,
    android: bool,
    first: bool,
) -> Post | str:
    """The record as a Post, or the name of what it is instead ("system", "deleted", "call", "view_once")."""
    lrm = text[:1] in ("\u200e", "\u200f")
    body = "\n".join([text, *more]) if more else text
    body = body.rstrip()
    if body.endswith(">"):
        body = _EDITED_TAIL.sub("", body)
    body = body.strip("\n")
    first_line, _, caption = body.partition("\n")
    head = first_line.lstrip(BIDI + " ")
    key = _key(head) if len(head) < 300 else ""  # placeholders and notices are short
    where = f"line {r.line}"
    if key in DELETED:
        return "deleted"
    if key in CALLS or key.split(",")[0] in CALLS or key.split(". ")[0] in CALLS:
        return "call"
    if android and head == "null" and not caption:
        return "view_once"
    if head.endswith(">") and (m := _IOS_ATTACHED.match(head)):
        return Post(when, author, author, caption.strip(), [_media(m["file"], files, path)], where)
    m = _ANDROID_ATTACHED.match(head) if head.endswith(")") else None
    if m and (_key(m["word"]) in ATTACHED or _WA_FILE.match(clean_name(m["file"]))):
        return Post(when, author, author, caption.strip(), [_media(m["file"], files, path)], where)
    if _ANDROID_OMITTED.match(head) or _omitted(key):
        return Post(when, author, author, caption.strip(), [Media(clean_name(head))], where)
    if lrm and not android and not _LOCATION.match(head) and not key.startswith("poll:"):
        return "system"  # iOS: the contact's or group's name over a notice
    if key.endswith(_LEARN_MORE_SUFFIXES) or (first and "whatsapp" in key and _ENCRYPTED.search(key)):
        return "system"  # the same notices in an export whose U+200E marks were lost
    return Post(when, author, author, body.lstrip(BIDI) if lrm else body, [], where)


def _media(name: str, files: dict[str, str], path: Path) -> Media:
    name = clean_name(name)
    member = files.get(name)
    if member is None:
        return Media(name)

    def read() -> bytes:
        with zipfile.ZipFile(path) as z:
            if z.getinfo(member).file_size > MAX_MEDIA_BYTES:
                raise RealtalkError(f"{path}: {member} unpacks to more than a chat's media file can hold")
            return z.read(member)

    return Media(name, read)
