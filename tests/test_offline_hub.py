"""A hub model with the hub out of reach fails at once with the clear message (huggingface_hub alone retried
for about 50 s), and a local model never looks for the hub."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from realtalk_cli.analysis import hf

PROBE = """
import os, sys
from realtalk_cli.analysis.bertscore import BertScorer
from realtalk_cli.errors import RealtalkError
try:
    BertScorer("roberta-large", 17)  # named: no fallback to the packaged MiniLM (the default has one)
except RealtalkError as e:
    print(e)
print("offline:", os.environ.get("HF_HUB_OFFLINE"))
"""


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *hf._PROXIES)}
    # nothing listens on port 1: the hub is out of reach without any network traffic; an empty model cache
    return {**env, "HF_ENDPOINT": "http://127.0.0.1:1", "HF_HOME": str(tmp_path / "hf")}


def test_a_hub_model_without_the_hub_fails_with_the_clear_message(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert "BERTScore model 'roberta-large' cannot be loaded" in result.stdout, result.stdout + result.stderr
    assert "offline: 1" in result.stdout


@pytest.fixture
def environ(monkeypatch) -> dict:
    """A private copy of the environment (and of huggingface_hub's offline flag) that the test may change."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *hf._PROXIES)}
    monkeypatch.setattr(os, "environ", env)
    if "huggingface_hub" in sys.modules:
        constants = sys.modules["huggingface_hub"].constants
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    return env


@pytest.mark.parametrize("variable, value", [("HTTPS_PROXY", "http://proxy.invalid:3128"), ("HF_HUB_OFFLINE", "0")])
def test_no_check_behind_a_proxy_or_when_offline_is_chosen(environ, variable, value):
    environ.update({"HF_ENDPOINT": "http://127.0.0.1:1", variable: value})
    hf.local_only_without_a_hub()
    assert environ.get("HF_HUB_OFFLINE") in (None, "0")


def test_the_check_decides_offline_only_when_the_hub_is_out_of_reach(environ):
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        environ["HF_ENDPOINT"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
        hf.local_only_without_a_hub()
        assert "HF_HUB_OFFLINE" not in environ  # a hub that answers: the normal loading path
    finally:
        listener.close()
    environ["HF_ENDPOINT"] = "http://127.0.0.1:1"
    hf.local_only_without_a_hub()
    assert environ["HF_HUB_OFFLINE"] == "1"
