"""Fetching the published REALTALK files, verified against sha256 sums kept in the package.

Each file is downloaded to `<name>.part` (resumed with an HTTP Range request when a part exists),
checked, then renamed into place; a file already present with the right hash is skipped.
"""

from __future__ import annotations

import hashlib
import os
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
) -> list[FileResult]:
    results = []
    for rel, digest in files.items():
        result = _fetch_one(dest, rel, digest, base_url.rstrip("/") + "/", force)
        results.append(result)
        if on_file:
            on_file(result)
    return results


def _fetch_one(dest: Path, rel: str, digest: str, base_url: str, force: bool) -> FileResult:
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
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            resumed = offset > 0 and response.status == 206
            with open(part, "ab" if resumed else "wb") as out:
                out.writelines(iter(lambda: response.read(CHUNK), b""))
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
