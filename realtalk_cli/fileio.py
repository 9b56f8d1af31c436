"""Files and folders: atomic writes (a crash never leaves half a file), JSONL and TOML reading, and run folders
that belong to one run (a recorded identity, a lock that a killed process does not leave stuck).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
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


def read_regular(path: Path) -> bytes:
    """A run file's bytes. A FIFO or a device in its place would block or never end: one line, exit 2."""
    if path.exists() and not path.is_file():
        raise RealtalkError(f"{path}: not a regular file")
    return path.read_bytes()


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSONL file written line by line; a torn last line (a killed run) is cut off,
    so that the next append starts on a fresh line."""
    if not path.exists():
        return []
    raw = read_regular(path)
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
    """A TOML file the user names (--config, --split, configs/): one line for a missing file, one that is no
    regular file (a FIFO would hang the read), bytes that are not UTF-8, or malformed TOML."""
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such file") from None
    except OSError as e:
        raise RealtalkError(f"{path}: cannot read: {e.strerror}") from None
    return parse_toml(raw, path)


def parse_toml(raw: bytes, path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RealtalkError(f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise RealtalkError(f"{path}: malformed TOML ({e})") from None


def refuse_overwrite(path: Path, force: bool, flag: str = "--force") -> None:
    """Nothing is overwritten unless the user said so."""
    if path.exists() and not force:
        kind = "folder" if path.is_dir() else "file"
        raise RealtalkError(f"{path}: {kind} exists; pass {flag} to overwrite it")


# --- run folders ----------------------------------------------------------------------------------

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"


def identity_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The settings (dotted names) whose values differ between two identities."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += identity_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}")
    return names


def check_run_identity(run_dir: Path, identity: dict, owned: list[str], force: bool = False) -> bool:
    """True when `run_dir` holds this run (resume) or nothing of a run; exit 2 for another run's folder.

    A run's identity is everything that changes its answers. With `force` the folder starts afresh: its run files
    are removed, whichever run they belong to (the caller holds the lock); False then.
    """
    try:
        recorded = orjson.loads(read_regular(run_dir / RUN_FILE)).get("identity")
    except FileNotFoundError:
        recorded = None
    except (OSError, orjson.JSONDecodeError, AttributeError):
        recorded = {}
    if recorded is not None and not isinstance(recorded, dict):
        recorded = {}  # a hand-edited identity (a list, a number) is as unreadable as torn JSON
    if recorded:  # a setting added to identities later reads as its default (None) in an older run.json
        recorded = {**{k: None for k, v in identity.items() if v is None}, **recorded}
    leftovers = [name for name in owned if (run_dir / name).exists()]
    if recorded is None and not leftovers:
        return True
    if recorded == identity and not force:
        return True
    if force:
        for name in [*owned, RUN_FILE]:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        return False
    if recorded is None:
        what = f"holds {leftovers[0]} from a run without a recorded identity"
    elif not recorded:
        what = f"has an unreadable {RUN_FILE}"
    else:
        differ = identity_diff(recorded, identity)
        shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
        what = f"holds a run with other settings ({shown or 'unreadable ' + RUN_FILE})"
    raise RealtalkError(f"{run_dir} {what}; use a new --out, or --force to start that folder afresh")


@contextlib.contextmanager
def run_folder(run_dir: Path, identity: dict | None, owned: list[str], force: bool = False) -> Iterator[Path]:
    """Claim `run_dir` for one run: create it, lock it, check or record the identity; the lock ends with the block.

    `identity=None` only locks (rescoring a finished run changes no answer).

    The lock is an flock on run.lock (released by the kernel when the process dies, even by kill -9);
    the file holds the PID of the holder, for the message another process gets.
    """
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held for the whole block)
    except (FileExistsError, NotADirectoryError):
        raise RealtalkError(f"--out {run_dir}: a file is in the way; a run needs a folder") from None
    except OSError as e:
        raise RealtalkError(f"--out {run_dir}: cannot write there ({e.strerror})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise RealtalkError(f"{run_dir}: run folder in use by PID {pid}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            if identity is not None:
                check_run_identity(run_dir, identity, owned, force)
                write_atomic(run_dir / RUN_FILE, orjson.dumps({"identity": identity}, option=orjson.OPT_INDENT_2))
            yield run_dir
        except BaseException:
            # a run that failed before writing anything of its own leaves no folder behind
            # (empty folders count as nothing: a memory plug-in makes its store's folders before it fails)
            if created and {p.name for p in run_dir.iterdir() if p.is_file()} <= {LOCK_FILE, RUN_FILE, *owned}:
                written = [p for p in run_dir.rglob("*") if p.is_file() and p.parent != run_dir]
                if not written and all((run_dir / n).stat().st_size == 0 for n in owned if (run_dir / n).is_file()):
                    shutil.rmtree(run_dir, ignore_errors=True)
            raise
        finally:
            handle.seek(0)
            handle.truncate()


UNFINISHED = (
    "the latest invocation of this run has not finished (interrupted, or a batch job pending): the figures are "
    "an earlier invocation's, over its items"
)


def mark_unfinished(run_dir: Path, report_name: str = "report.json", markdown_name: str | None = "report.md") -> None:
    """An invocation starts: the report of an earlier one (perhaps over fewer items: a smaller --limit) no longer
    says the run is complete, in case this one never finishes; a finished invocation writes its own."""
    path = run_dir / report_name
    try:
        report = json.loads(read_regular(path))
    except (OSError, ValueError):  # none yet, or unreadable: nothing claims completeness
        return
    if not isinstance(report, dict):
        return
    earlier = report.get("incomplete")
    report["complete"] = False
    report["incomplete"] = {**(earlier if isinstance(earlier, dict) else {}), "reason": UNFINISHED, "unfinished": True}
    write_atomic(path, json.dumps(report, indent=2, ensure_ascii=False))
    markdown = run_dir / markdown_name if markdown_name else None
    if markdown is not None and markdown.is_file():
        title, _, rest = markdown.read_text(encoding="utf-8", errors="replace").partition("\n")
        write_atomic(markdown, f"{title}\n\n> **INCOMPLETE RUN: {UNFINISHED}.**\n{rest}")
