"""Shared by every user of Hugging Face models (BERTScore, the hf EI backend)."""

from __future__ import annotations


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
