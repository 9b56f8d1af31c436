"""Reading the raw REALTALK export (one xlsx sheet) and its embedded pictures.

Only the workbook is touched here; how rows become a chat lives in `convert.py`.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from realtalk_cli.errors import RealtalkError

# A raw sheet is a few MB; anything this large inside the zip is not a chat export.
MAX_ENTRY_BYTES = 200 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024

HEADER = {"E": "Date, Time", "H": "Question", "I": "Answer", "J": "Evidence", "K": "Category"}
COLUMNS = "ABCDEFGHIJK"

_NS = {
    "xdr": "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
}
_PHOTO_TIME = re.compile(r"PHOTO-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})")


@dataclass
class Row:
    number: int  # Excel row number, 1-based
    cells: dict[str, Any]  # column letter -> value, only non-empty cells

    def get(self, column: str) -> Any:
        return self.cells.get(column)


@dataclass
class Picture:
    row: int  # Excel row of the anchor's top-left cell, 1-based
    column: int  # 0-based
    name: str | None  # WhatsApp file name without "_opt.jpg", None when pasted by hand; always a plain name
    time: datetime | None  # from the file name
    media: str  # path inside the zip, e.g. xl/media/image3.jpg
    renamed_from: str | None = None  # the sheet's name when it was not a plain file name (e.g. "../x")


@dataclass
class RawSheet:
    path: Path
    rows: list[Row]
    pictures: list[Picture]

    def read_media(self, picture: Picture) -> bytes:
        with zipfile.ZipFile(self.path) as z:
            return z.read(picture.media)


def _check_zip(path: Path) -> None:
    if not path.exists():
        raise RealtalkError(f"{path}: no such file")
    if path.is_dir():
        raise RealtalkError(f"{path}: is a directory, expected an .xlsx file")
    if not zipfile.is_zipfile(path):
        raise RealtalkError(f"{path}: not an xlsx file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            # Sizes first: testzip would unpack a zip bomb.
            big = [i for i in infos if i.file_size > MAX_ENTRY_BYTES]
            if big or sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
                entry = big[0].filename if big else "archive"
                raise RealtalkError(f"{path}: {entry} unpacks to more than a chat export can hold; refusing to read it")
            if "xl/workbook.xml" not in {i.filename for i in infos}:
                raise RealtalkError(f"{path}: not an xlsx file (no xl/workbook.xml inside)")
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
        raise RealtalkError(f"{path}: corrupt xlsx file ({e})") from None
    if bad is not None:
        raise RealtalkError(f"{path}: corrupt xlsx file (bad entry {bad})")


def read_raw_sheet(path: Path) -> RawSheet:
    """Cells of the first sheet plus its pictures; raises RealtalkError on anything unreadable."""
    import openpyxl  # imported here: `realtalk --help` should not pay for it

    path = Path(path)
    _check_zip(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many types for broken workbooks
        raise RealtalkError(f"{path}: cannot open as xlsx ({type(e).__name__}: {e})") from None
    try:
        ws = wb.worksheets[0]
        # read-only mode trusts the sheet's declared <dimension>; a stale one would silently drop rows
        ws.reset_dimensions()
        rows = []
        for number, values in enumerate(ws.iter_rows(max_col=len(COLUMNS), values_only=True), start=1):
            cells = {COLUMNS[i]: v for i, v in enumerate(values) if v is not None and v != ""}
            rows.append(Row(number, cells))
    except Exception as e:
        raise RealtalkError(f"{path}: cannot read the sheet ({type(e).__name__}: {e})") from None
    finally:
        wb.close()
    _check_header(path, rows)
    return RawSheet(path, rows, _read_pictures(path))


def _check_header(path: Path, rows: list[Row]) -> None:
    if not rows:
        raise RealtalkError(f"{path}: the first sheet is empty, expected the REALTALK layout")
    first = rows[0]
    for column, expected in HEADER.items():
        found = first.get(column)
        if not isinstance(found, str) or found.strip() != expected:
            raise RealtalkError(
                f"{path}: row 1, cell {column}1: expected '{expected}', found {found!r} (not the REALTALK layout)"
            )
    for column in "BD":
        if not isinstance(first.get(column), str) or not first.get(column).strip():
            raise RealtalkError(f"{path}: row 1, cell {column}1: expected a speaker name, found {first.get(column)!r}")


def _read_pictures(path: Path) -> list[Picture]:
    """Every picture anchored in the first drawing, read straight from the XML (no Pillow needed)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        drawing = "xl/drawings/drawing1.xml"
        if drawing not in names:
            return []
        rels_name = "xl/drawings/_rels/drawing1.xml.rels"
        targets: dict[str, str] = {}
        try:
            if rels_name in names:
                for rel in ElementTree.fromstring(z.read(rels_name)).findall("rel:Relationship", _NS):
                    if not rel.get("Type", "").endswith("/image"):
                        continue  # hyperlinks and the like: nothing is read from them
                    target = _resolve("xl/drawings", rel.get("Target", ""))
                    if target is None or target not in names:
                        raise RealtalkError(
                            f"{path}: drawing relationship {rel.get('Id')!r} points to {rel.get('Target')!r}, "
                            "which is not in the archive"
                        )
                    targets[rel.get("Id", "")] = target
            root = ElementTree.fromstring(z.read(drawing))
        except ElementTree.ParseError as e:
            raise RealtalkError(f"{path}: corrupt drawing XML in the xlsx ({e})") from None
    pictures = []
    for n, anchor in enumerate(list(root), start=1):
        pic = anchor.find("xdr:pic", _NS)
        start = anchor.find("xdr:from", _NS)
        if pic is None or start is None:
            continue
        try:
            row = int(start.findtext("xdr:row", "0", _NS)) + 1
            column = int(start.findtext("xdr:col", "0", _NS))
        except ValueError:
            raise RealtalkError(f"{path}: drawing anchor {n}: row or column is not a number") from None
        props = pic.find("xdr:nvPicPr/xdr:cNvPr", _NS)
        blip = pic.find("xdr:blipFill/a:blip", _NS)
        embed = blip.get(f"{{{_NS['r']}}}embed", "") if blip is not None else ""
        descr = (props.get("descr") or "") if props is not None else ""
        match = _PHOTO_TIME.search(descr)
        name = re.sub(r"(_opt)?\.jpe?g$", "", descr) if match else None
        try:
            time = datetime.strptime(match.group(1), "%Y-%m-%d-%H-%M-%S") if match else None
        except ValueError:
            raise RealtalkError(f"{path}: drawing anchor {n}: picture {descr!r} names an impossible date") from None
        safe = plain_file_name(name) if name is not None else None
        renamed = name if safe != name else None
        pictures.append(Picture(row, column, safe, time, targets.get(embed, ""), renamed))
    return pictures


def picture_file_name(picture: Picture) -> str:
    """The name a picture is published under; pasted pictures only have their place in the xlsx."""
    return picture.name or Path(picture.media).stem


def plain_file_name(name: str) -> str:
    """A picture name from the sheet as a plain file name: no folders, no leading dot, nothing odd."""
    base = re.sub(r"[^\w.-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    return base or "picture"


def _resolve(base: str, target: str) -> str | None:
    """A relationship target inside the archive; None when it climbs out of it or is absolute."""
    if target.startswith("/") or "://" in target:
        return target.lstrip("/") if target.startswith("/xl/") else None
    parts = base.split("/")
    for piece in target.split("/"):
        if piece == "..":
            if not parts:
                return None
            parts.pop()
        elif piece and piece != ".":
            parts.append(piece)
    return "/".join(parts)


# --- writing (sample data and round-trip tests) ------------------------------------------------

# The smallest valid JPEG (1x1 pixel): stands in for photos in generated sheets.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010101004800480000ffdb004300ffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffc2000b080001000101011100ffc40014100100000000000000"
    "000000000000000000ffda0008010100013f10"
)


def write_raw_sheet(chat, path: Path) -> None:
    """Lay a Chat out as a raw REALTALK export: the inverse of `convert`, pictures included.

    Each picture named in a message's `img_file` is embedded once, anchored at that message's row.
    """
    import openpyxl

    from realtalk_cli.fileio import write_atomic

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append([None, chat.speaker_1, None, chat.speaker_2, HEADER["E"], None, None, *(HEADER[c] for c in "HIJK")])
    anchors: list[tuple[int, int, str]] = []  # (0-based row, 0-based col, picture name)
    for session in chat.sessions:
        ws.append([])
        ws.append([None, f"Session {session.number}", None, session.date_time])
        ws.append(["Events", _events_cell(session.events["agent_a"]), None, _events_cell(session.events["agent_b"])])
        for m in session.messages:
            first = m.speaker == chat.speaker_1
            ws.append(
                [m.dia_id, m.clean_text, None, None, m.date_time]
                if first
                else [None, None, m.dia_id, m.clean_text, m.date_time]
            )
            for name in dict.fromkeys(re.sub(r"(_opt)?\.jpe?g$", "", f) for f in m.img_file):
                anchors.append((ws.max_row - 1, 1 if first else 3, name))
    for i, q in enumerate(chat.qa):
        row = i + 2
        for column, value in zip("HIJK", (q.question, q.answer, ", ".join(q.evidence), q.category), strict=False):
            ws[f"{column}{row}"] = value
    for row in ws.iter_rows():
        for cell in row:
            if cell.data_type == "f":  # text that starts with '=' is text here, not a formula
                cell.data_type = "s"
    buffer = io.BytesIO()
    wb.save(buffer)
    write_atomic(path, _add_pictures(buffer.getvalue(), anchors))


def _events_cell(events) -> str | None:
    return "\n".join(f"{e.id}: {e.sub_event}" for e in events) if events else None


def _add_pictures(xlsx: bytes, anchors: list[tuple[int, int, str]]) -> bytes:
    if not anchors:
        return xlsx
    source = zipfile.ZipFile(io.BytesIO(xlsx))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Default Extension="jpg" ContentType="image/jpeg"/>'
                    b'<Override PartName="/xl/drawings/drawing1.xml" '
                    b'ContentType="application/vnd.openxmlformats-officedocument.drawing+xml"/></Types>',
                )
            elif item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</worksheet>", b'<drawing r:id="rIdDrawing1"/></worksheet>')
                if b'xmlns:r="' not in data:
                    data = data.replace(b"<worksheet ", f'<worksheet xmlns:r="{_NS["r"]}" '.encode(), 1)
            z.writestr(item, data)
        z.writestr(
            "xl/worksheets/_rels/sheet1.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{_NS["rel"]}">'
            f'<Relationship Id="rIdDrawing1" Type="{_NS["r"]}/drawing" Target="../drawings/drawing1.xml"/>'
            "</Relationships>",
        )
        rels, pics = [], []
        for i, (row, col, name) in enumerate(anchors, start=1):
            z.writestr(f"xl/media/image{i}.jpg", TINY_JPEG)
            rels.append(f'<Relationship Id="rId{i}" Type="{_NS["r"]}/image" Target="../media/image{i}.jpg"/>')
            pics.append(
                f"<xdr:oneCellAnchor><xdr:from><xdr:col>{col}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{row}</xdr:row>"
                '<xdr:rowOff>0</xdr:rowOff></xdr:from><xdr:ext cx="952500" cy="952500"/><xdr:pic><xdr:nvPicPr>'
                f'<xdr:cNvPr id="{i}" name="image{i}.jpg" descr="{name}_opt.jpg"/><xdr:cNvPicPr/></xdr:nvPicPr>'
                f'<xdr:blipFill><a:blip r:embed="rId{i}"/><a:stretch><a:fillRect/></a:stretch></xdr:blipFill>'
                '<xdr:spPr><a:prstGeom prst="rect"><a:avLst/></a:prstGeom></xdr:spPr></xdr:pic><xdr:clientData/>'
                "</xdr:oneCellAnchor>"
            )
        z.writestr(
            "xl/drawings/_rels/drawing1.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{_NS["rel"]}">'
            + "".join(rels)
            + "</Relationships>",
        )
        z.writestr(
            "xl/drawings/drawing1.xml",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><xdr:wsDr xmlns:xdr="{_NS["xdr"]}" '
            f'xmlns:a="{_NS["a"]}" xmlns:r="{_NS["r"]}">' + "".join(pics) + "</xdr:wsDr>",
        )
    return buffer.getvalue()
