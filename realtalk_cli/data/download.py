"""Fetching the published REALTALK files, verified against sha256 sums kept in the package.

Each file is downloaded to `<name>.part` (resumed with an HTTP Range request when a part exists),
checked, then renamed into place; a file already present with the right hash is skipped. Every file has
a total deadline (not only a gap between bytes) and a size: the one the server announces, at most
MAX_FILE_BYTES; a transfer that breaks either, or ends short, or fails its hash leaves no `.part` behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from realtalk_cli.errors import RealtalkError

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/danny911kr/REALTALK/main/data/"
CHUNK = 1 << 16
TIMEOUT_S = 30
DEADLINE_S = 600.0
MAX_FILE_BYTES = 200 * 1024 * 1024  # the published files are a few MB; the largest raw sheet is under 50 MB


class _Broken(Exception):
    """This attempt's bytes cannot be trusted: the part file goes."""


@dataclass
class FileResult:
    path: str  # relative, as in the sums file
    status: str  # "downloaded", "resumed", "present", "failed"
    detail: str = ""


def published_sums() -> dict[str, str]:
    """Relative path -> sha256 for the 10 published JSON files and the 10 raw sheets."""
    text = resources.files("realtalk_cli").joinpath("resources/realtalk.sha256").read_text()
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def select_files(chats: list[str], raw: bool) -> dict[str, str]:
    sums = published_sums()
    chosen = {p: d for p, d in sums.items() if raw or not p.startswith("raw/")}
    if chats:
        unknown = [c for c in chats if not any(Path(p).stem == c or Path(p).stem.startswith(c + "_") for p in sums)]
        if unknown:
            names = ", ".join(sorted(Path(p).stem for p in sums if p.endswith(".json")))
            raise RealtalkError(f"unknown chat {unknown[0]!r}; known chats: {names}")
        chosen = {
            p: d for p, d in chosen.items() if any(Path(p).stem == c or Path(p).stem.startswith(c + "_") for c in chats)
        }
    return chosen


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    dest: Path,
    files: dict[str, str],
    base_url: str = DEFAULT_BASE_URL,
    force: bool = False,
    on_file: Callable[[FileResult], None] | None = None,
    deadline_s: float = DEADLINE_S,
) -> list[FileResult]:
    results = []
    for rel, digest in files.items():
        result = _fetch_one(dest, rel, digest, base_url.rstrip("/") + "/", force, deadline_s)
        results.append(result)
        if on_file:
            on_file(result)
    return results


def _stream(response, part: Path, resumed: bool, start: int, deadline: float, deadline_s: float) -> None:
    """Append the body to `part`, checking the announced size and the deadline as the bytes arrive."""
    expected = _announced_size(response, start)
    if expected is not None and expected > MAX_FILE_BYTES:
        raise _Broken(f"announces {expected} bytes, more than any published file ({MAX_FILE_BYTES})")
    limit = expected if expected is not None else MAX_FILE_BYTES
    size = start
    with open(part, "ab" if resumed else "wb") as out:
        while chunk := response.read1(CHUNK):  # whatever has arrived: a trickle must not block the deadline
            size += len(chunk)
            if size > limit:
                raise _Broken(f"sends more than the {limit} bytes {'announced' if expected else 'allowed'}")
            if time.monotonic() > deadline:
                raise _Broken(f"not complete within --timeout {deadline_s:g} s")
            out.write(chunk)
    if expected is not None and size < expected:
        raise _Broken(f"the connection closed after {size} of {expected} bytes")


def _announced_size(response, start: int) -> int | None:
    """The whole file's size: Content-Range's total on a resumed transfer, else start + Content-Length."""
    total = (response.headers.get("Content-Range") or "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = response.headers.get("Content-Length") or ""
    return start + int(length) if length.isdigit() else None


def _fetch_one(dest: Path, rel: str, digest: str, base_url: str, force: bool, deadline_s: float) -> FileResult:
    target = dest / rel
    if target.exists():
        if sha256_of(target) == digest:
            return FileResult(rel, "present")
        if not force:
            return FileResult(rel, "failed", f"{target} exists with a different sha256 (use --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(base_url + rel, headers={"User-Agent": "realtalk-cli"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    url = base_url + rel
    try:
        with urllib.request.urlopen(request, timeout=min(TIMEOUT_S, deadline_s)) as response:
            resumed = offset > 0 and response.status == 206
            _stream(response, part, resumed, offset if resumed else 0, time.monotonic() + deadline_s, deadline_s)
    except _Broken as e:
        part.unlink(missing_ok=True)
        return FileResult(rel, "failed", f"{url}: {e}")
    except http.client.IncompleteRead as e:
        part.unlink(missing_ok=True)
        return FileResult(rel, "failed", f"{url}: the connection closed after {len(e.partial)} more bytes")
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the part is already complete
            resumed = True
        else:
            return FileResult(rel, "failed", f"{base_url + rel}: HTTP {e.code} {e.reason}")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return FileResult(rel, "failed", f"{base_url + rel}: {reason}")
    got = sha256_of(part)
    if got != digest:
        part.unlink()
        return FileResult(rel, "failed", f"{rel}: sha256 {got[:12]}... does not match the published {digest[:12]}...")
    os.replace(part, target)
    return FileResult(rel, "resumed" if resumed else "downloaded")
