"""The ported Porter stemmer gives NLTK's stems: every word of every answer, question and message in the
shared data, a 29,000-word English word list, and generated words that stress the y and double-consonant
rules. F1 through the port equals F1 through NLTK on every shared question."""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtalk_cli.data.formats import load_chat
from realtalk_cli.scoring import porter
from realtalk_cli.scoring.f1 import answer_f1, normalize_answer

from .conftest import LOCOMO_JSON, REALTALK_JSON, SAMPLE_JSON, needs_shared

nltk_stem = pytest.importorskip("nltk.stem")
NLTK = nltk_stem.PorterStemmer()  # NLTK_EXTENSIONS, as LoCoMo's evaluation.py constructs it


def _shared_texts() -> list[str]:
    texts = []
    for path in [*REALTALK_JSON, *LOCOMO_JSON, SAMPLE_JSON]:
        chat = load_chat(path)
        for qa in chat.qa:
            texts += [qa.question, str(qa.gold)]
        texts += [m.clean_text for m in chat.messages()]
    return texts


def _word_list() -> set[str]:
    spelling = importlib.resources.files("textblob") / "en" / "en-spelling.txt"
    words = {line.split()[0] for line in spelling.read_text(encoding="utf-8").splitlines() if line[:1].isalpha()}
    assert len(words) > 25_000
    return words


def _mismatches(words) -> list[tuple[str, str, str]]:
    return [(w, porter.stem(w), NLTK.stem(w)) for w in words if porter.stem(w) != NLTK.stem(w)]


@needs_shared
def test_same_stems_on_every_word_of_the_shared_data():
    words = Counter(w for text in _shared_texts() for w in normalize_answer(text).split())
    raw = {w for text in _shared_texts() for w in re.findall(r"\S+", text)}  # before normalisation too
    assert len(words) > 10_000
    assert _mismatches([*words, *raw]) == []


def test_same_stems_on_a_word_list():
    pytest.importorskip("textblob")
    assert _mismatches(_word_list()) == []


def test_irregular_forms_and_short_words():
    words = ["skies", "dying", "lying", "tying", "news", "innings", "outings", "cannings", "howe", "proceed"]
    words += ["a", "is", "as", "ties", "pies", "died", "cried", "spied", "happy", "enjoy", "sky", "fly", "Going"]
    words += ["generalization", "relational", "conditionally", "hopefulness", "analogi", "apologi", "controlling"]
    assert _mismatches(words) == []


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="aeiouyblstzdgnmcrwx", min_size=1, max_size=14))
def test_same_stems_on_generated_words(word):
    assert porter.stem(word) == NLTK.stem(word)


@needs_shared
def test_f1_equals_the_paper_scorer_on_every_shared_question():
    """LoCoMo's f1_score with NLTK's stemmer, written out as the paper's code has it."""
    import string

    def paper_normalize(s):
        s = s.replace(",", "")
        s = re.sub(r"\b(a|an|the|and)\b", " ", "".join(ch for ch in s.lower() if ch not in set(string.punctuation)))
        return " ".join(s.split())

    def paper_f1(prediction, ground_truth):
        p = [NLTK.stem(w) for w in paper_normalize(prediction).split()]
        g = [NLTK.stem(w) for w in paper_normalize(ground_truth).split()]
        same = sum((Counter(p) & Counter(g)).values())
        if same == 0:
            return 0
        precision, recall = same / len(p), same / len(g)
        return 2 * precision * recall / (precision + recall)

    checked = 0
    for path in REALTALK_JSON:
        chat = load_chat(path)
        questions = [qa for qa in chat.qa if qa.category not in (1, 3)]
        for qa, other in zip(questions, questions[1:] + questions[:1], strict=True):
            # the gold against itself, and against another question's gold and the question's own text
            for prediction in (str(qa.gold), str(other.gold), qa.question):
                assert answer_f1(prediction, str(qa.gold), qa.category, chat.dataset) == pytest.approx(
                    paper_f1(prediction, str(qa.gold)), abs=0
                )
                checked += 1
    assert checked > 600
