"""Writing files so that a crash never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import orjson

from realtalk_cli.errors import RealtalkError


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are meant to be shared like any file
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSONL file written line by line; a torn last line (a killed run) is cut off,
    so that the next append starts on a fresh line."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    if good_end < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    rows = []
    for n, line in enumerate(raw[:good_end].splitlines(), start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise RealtalkError(f"{path}: line {n}: not valid JSON") from None
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Replace a JSONL file at once (e.g. after scores were added to its lines)."""
    write_atomic(path, b"".join(orjson.dumps(r) + b"\n" for r in rows))


def read_toml(path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise RealtalkError(f"{path}: malformed TOML ({e})") from None
