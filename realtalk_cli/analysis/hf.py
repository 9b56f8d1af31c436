"""Shared by every user of Hugging Face models (BERTScore, the hf EI backend)."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def local_only_without_a_hub(timeout_s: float = 3.0) -> None:
    """With the model hub out of reach, models load from the local cache alone: huggingface_hub would retry for
    about 50 s before failing the same way. Behind a proxy the hub may be reachable only through it: no check."""
    if any(os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *_PROXIES)):
        return
    hub = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        address = (hub.hostname, hub.port or (443 if hub.scheme == "https" else 80))
        socket.create_connection(address, timeout=timeout_s).close()
    except (OSError, ValueError):
        os.environ["HF_HUB_OFFLINE"] = "1"
        if "huggingface_hub" in sys.modules:  # it reads the variable when imported
            sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True


def quiet_transformers() -> None:
    """No weight-loading progress bars or warnings in our output (transformers 5 prints them)."""
    try:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
        disable_progress_bars()
    except Exception:  # noqa: BLE001 - silencing is best effort
        pass
