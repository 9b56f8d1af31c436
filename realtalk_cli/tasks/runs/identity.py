"""A run's identity and manifest: everything that changes its answers (a run folder resumes only a run with
the same identity) and its provenance (version, git commit, dataset hashes, parameters, command).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from realtalk_cli import __version__
from realtalk_cli.data.formats import chat_files
from realtalk_cli.llm.providers import Endpoint

# Options that change how a run goes, never what it answers: they may differ between a run and its resume.
# The API-key variable is not one of them: it says whose account a run is billed to and where the key goes.
RUN_ONLY = {
    "out", "concurrency", "limit", "category", "max_cost", "use_cache", "force", "timeout", "memory_timeout",
    "judge_model", "judge_protocol", "price_in", "price_out", "bertscore", "fail_under", "errata",
}  # fmt: skip


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


def dataset_hashes(files: list[Path]) -> dict[str, str]:
    """The run's chat files (each content once) and their sha256."""
    return {str(c.path): c.sha256 for c in chat_files(files)[0]}


def run_identity(options: Any, endpoint: Endpoint, files: list[Path], prompts: dict, sampling: dict) -> dict:
    """Everything that changes a run's answers; a run folder resumes only a run with the same identity.

    Every option counts unless it is listed in RUN_ONLY, so an option added later is part of it by default.
    Chats are named by file name (a moved folder still resumes; with the id's folder or hash where two names
    collide, see data.formats.ChatFile) and pinned by sha256.
    """
    params = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items() if k not in RUN_ONLY}
    params.pop("model", None)
    params.pop("base_url", None)
    return {
        "model": endpoint.label,
        "endpoint": endpoint.base_url or None,
        **params,
        "prompts": prompts,
        "sampling": sampling,
        "chats": {c.key: c.sha256 for c in chat_files(files)[0]},
    }


def manifest(options: Any, files: list[Path], **fields: Any) -> dict:
    """Provenance of a run: version, git commit, dataset hashes, parameters, command; plus the run's own fields."""
    return {
        "realtalk_version": __version__,
        "git_commit": _git_commit(),
        **fields,
        "datasets": dataset_hashes(files),
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "command": command_line(),
    }
