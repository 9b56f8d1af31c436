"""What every model run (probe, simulate) shares: prompt files, the manifest, and writing the reports."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from realtalk_cli import __version__
from realtalk_cli.data.formats import chat_paths
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import write_atomic
from realtalk_cli.llm.providers import config_dir


def prompt_text(name: str) -> str:
    path = config_dir() / "prompts" / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such prompt file") from None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def fill(template: str, **values: str) -> str:
    # str.format would choke on braces in chat text and in the judge's JSON example.
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def command_line() -> str:
    return " ".join(["realtalk", *sys.argv[1:]]) if sys.argv else ""


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def manifest(options: Any, files: list[Path], **fields: Any) -> dict:
    """Provenance of a run: version, git commit, dataset hashes, parameters, command; plus the run's own fields."""
    return {
        "realtalk_version": __version__,
        "git_commit": _git_commit(),
        **fields,
        "datasets": {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in chat_paths(files)},
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "command": command_line(),
    }


def write_reports(run_dir: Path, report: dict, markdown: str) -> None:
    write_atomic(run_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    write_atomic(run_dir / "report.md", markdown)
