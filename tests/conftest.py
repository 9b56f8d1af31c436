from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests set their own terminal width (CliRunner's env): a COLUMNS or LINES exported in the developer's shell
# would fix the width of realtalk's consoles, made at import, whatever a test asks for.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE = ROOT / "data" / "sample"
SAMPLE_JSON = SAMPLE / "Chat_S_Ana_Ben.json"
SAMPLE_XLSX = SAMPLE / "raw" / "Chat_S_Ana_Ben.xlsx"


def shared_files(pattern: str) -> list[Path]:
    return sorted(SHARED.glob(pattern))


REALTALK_JSON = shared_files("realtalk/*.json")
REALTALK_RAW = shared_files("realtalk/raw/*.xlsx")
LOCOMO_JSON = shared_files("locomo/*.json")

needs_shared = pytest.mark.skipif(not REALTALK_JSON, reason=f"shared data not found at {SHARED}")


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="session")
def tiny_hf_models(tmp_path_factory) -> dict[str, str]:
    """Small random classifiers in place of the cardiffnlp models (see tests/tiny_models.py)."""
    pytest.importorskip("transformers")
    from .tiny_models import build_hf_models

    return build_hf_models(tmp_path_factory.mktemp("hf"))


@pytest.fixture
def llm_env(monkeypatch, tmp_path):
    """The loopback server's key in TEST_LLM_KEY and a response cache of the test's own."""
    from .llm_server import API_KEY

    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))


def model_run_args(command: str, url: str, out: Path, *extra: str) -> list[str]:
    """`realtalk probe|simulate` on the sample chat against the loopback server."""
    return [
        command,
        str(SAMPLE_JSON),
        "--model",
        "gpt-4o-mini",
        "--out",
        str(out),
        "--base-url",
        url,
        "--api-key-env",
        "TEST_LLM_KEY",
        *extra,
    ]
