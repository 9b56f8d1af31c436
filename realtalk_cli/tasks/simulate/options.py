"""What a simulate run is: its options (flags, or a batch run's saved record)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SimulateOptions:
    model: str
    out: Path
    speaker: str | None = None
    sessions: int = 3
    targets: str = "messages"  # or "turns"
    split: str = "all"  # "paper" or a split file: which chat and sessions each person is tested on (split.py)
    limit: int | None = None
    concurrency: int = 8
    max_cost: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    use_cache: bool = True
    bertscore: bool = True
    bertscore_model: str | None = None
    bertscore_layers: int | None = None
    ei_backend: str = "lexicon"
    ei_model: str | None = None
    hf_models: dict[str, str] | None = None
    timeout: float = 120.0
    force: bool = False
    price_in: float | None = None
    price_out: float | None = None
