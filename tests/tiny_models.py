"""Tiny text classifiers built on the spot (random weights, a word-level vocabulary), standing in for the
cardiffnlp models so that the hf backend's real loading and labelling path runs offline."""

from __future__ import annotations

from pathlib import Path

WORDS = "i you the a love hate happy sad dog race pottery great thanks what how is my was".split()


def build_classifier(folder: Path, labels: list[str], seed: int = 0) -> str:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


def build_hf_models(root: Path) -> dict[str, str]:
    return {
        "sentiment": build_classifier(root / "sentiment", ["negative", "neutral", "positive"], 1),
        "emotion": build_classifier(root / "emotion", ["anger", "joy", "optimism", "sadness"], 2),
        "intimacy": build_classifier(root / "intimacy", ["LABEL_0"], 3),  # one output: a regressor
    }
