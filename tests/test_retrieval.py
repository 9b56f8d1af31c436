"""Retrievers: windows, stemming, dates named in questions, fusion, the dense embedder and its cache."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import load_chat
from realtalk_cli.tasks.memory import retrieval as R

from .conftest import LOCOMO_JSON, SAMPLE_JSON, needs_shared

runner = CliRunner()


def test_windows_are_cut_at_session_borders():
    chat = load_chat(SAMPLE_JSON)
    messages = list(chat.messages())
    wins = R.windows(messages)
    assert len(wins) == len(messages)
    for w in wins:
        assert {messages[j].session for j in range(w.start, w.end)} == {w.session}
        assert w.start <= w.center < w.end and w.end - w.start <= 5
    first_of_session_2 = next(i for i, m in enumerate(messages) if m.session == chat.sessions[1].number)
    assert wins[first_of_session_2].start == first_of_session_2


def test_stemming_and_speaker_names_reach_the_index():
    assert R.stemmed_words("Visited visiting visits") == ["visit", "visit", "visit"]
    chat = load_chat(SAMPLE_JSON)
    messages = list(chat.messages())
    texts = R.window_texts(messages, R.windows(messages))
    assert all(f"{messages[i].speaker}: " in t for i, t in enumerate(texts))


@pytest.mark.parametrize(
    "question,first,last",
    [
        ("What kind of pasta did Kate make on 29 Dec 2023?", datetime(2023, 12, 29), datetime(2023, 12, 30)),
        ("What happened on December 30, 2023?", datetime(2023, 12, 30), datetime(2023, 12, 31)),
        ("Which hobby did Sam take up in May 2023?", datetime(2023, 5, 1), datetime(2023, 6, 1)),
        ("What did Ana do on 29.02.2024?", datetime(2024, 2, 29), datetime(2024, 3, 1)),
    ],
)
def test_dates_named_in_questions(question, first, last):
    assert R.question_dates(question) == [(first, last)]


def test_no_date_and_impossible_dates_name_nothing():
    assert R.question_dates("When did Kate start skiing?") == []
    assert R.question_dates("What happened on 31 February 2023?") == []


def test_windows_near_the_named_date_come_first():
    wins = [R.Window(i, i, i + 1, session) for i, session in enumerate([1, 2, 3])]
    times = {1: datetime(2023, 5, 1), 2: datetime(2023, 5, 20), 3: datetime(2023, 5, 22)}
    near = R.near_date(times, R.question_dates("What did she do on 19 May 2023?"))
    assert near == {2, 3}
    assert R.date_ranked([0, 2, 1], wins, near) == [2, 1, 0]


def test_reciprocal_rank_fusion_rewards_agreement():
    assert R.fuse([[1, 2, 3], [3, 2, 1], [2, 9]])[0] == 2


def test_dense_embeddings_are_cached_on_disk_by_text_and_reused(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    from realtalk_cli.tasks.memory.embeddings import Embedder, load_embedder

    embedder = load_embedder(None)
    texts = ["Ana: I took up pottery", "Ben: the Porto half marathon is in May", "Ana: Miso is a good boy"]
    first = embedder.encode_cached(texts)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    assert (tmp_path / "cache" / "embeddings.sqlite").is_file()
    encoded = []
    real = Embedder.encode

    def counting(self, texts, batch_size=64, advance=None):
        encoded.extend(texts)
        return real(self, texts, batch_size, advance)

    monkeypatch.setattr(Embedder, "encode", counting)
    assert np.array_equal(embedder.encode_cached(texts), first)
    assert encoded == []
    # another window setting: the texts seen before are read back, only the new one is encoded
    again = embedder.encode_cached([texts[2], "Ben: pizza tonight?", texts[0]])
    assert encoded == ["Ben: pizza tonight?"]
    assert np.array_equal(again[0], first[2]) and np.array_equal(again[2], first[0])


def test_encoding_shows_a_labelled_stage_with_its_total(tmp_path: Path, monkeypatch):
    import contextlib

    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    from realtalk_cli.tasks.memory.embeddings import load_embedder

    seen = []

    @contextlib.contextmanager
    def stage(label, total):
        seen.append((label, total))
        yield lambda n: seen.append(n)

    load_embedder(None).encode_cached(["a", "b", "a"], stage, "windows of Chat_X")
    assert seen == [("encoding 2 windows of Chat_X with minilm", 2), 2]


def test_dense_ranks_the_paraphrase_first(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    from realtalk_cli.tasks.memory.embeddings import DenseRetriever, load_embedder

    texts = ["Ben: I signed up for a half marathon", "Ana: my new puppy chewed the sofa", "Ben: pizza tonight?"]
    assert DenseRetriever(load_embedder(None), texts).rank("Which running race did Ben enter?")[0] == 0


def test_an_embedder_that_cannot_load_is_one_line_exit_2(tmp_path: Path, llm_env):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--context", "dense", "--embedder", str(tmp_path / "no-model")])
    assert result.exit_code == 2
    assert f"--embedder {tmp_path / 'no-model'}: cannot load the model" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r" / "predictions.jsonl").exists()


def test_retrieval_falls_back_to_bm25_with_a_note_when_no_embedder(tmp_path: Path, llm_env, monkeypatch):
    import realtalk_cli.tasks.memory.embeddings as embeddings

    monkeypatch.setattr(embeddings, "embedder_available", lambda: "torch not installed")
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "r"), "--json"]
    result = runner.invoke(app, [*args, "--context", "retrieval"])
    assert result.exit_code == 0, result.output
    memory = json.loads(result.output)["memory"]
    assert memory["spec"] == "bm25" and "torch not installed" in memory["note"]
    assert "note: retrieval used bm25 alone" in (tmp_path / "r" / "report.md").read_text()


def test_changed_memory_options_do_not_resume_another_run(tmp_path: Path, llm_env):
    args = ["probe", str(SAMPLE_JSON), "--model", "offline:bm25", "--out", str(tmp_path / "r"), "--context", "bm25"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--context-tokens", "500"])
    assert again.exit_code == 2 and "context_tokens" in again.output
    both = runner.invoke(app, [*args[:-2], "--memory", "bm25", "--context", "hybrid"])
    assert both.exit_code == 2 and "--memory replaces --context" in both.output


@needs_shared
def test_locomo_observations_memory_claims_the_messages_it_came_from(tmp_path: Path, llm_env):
    chat = LOCOMO_JSON[0]
    args = ["probe", str(chat), "--model", "offline:bm25", "--out", str(tmp_path / "r"), "--json", "--limit", "20"]
    result = runner.invoke(app, [*args, "--memory", "observations", "--context-tokens", "600"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["context_tokens"] <= 600 for r in rows)
    assert sum(r["recall"] is not None for r in rows) >= 15
    assert json.loads(result.output)["overall"]["overall"]["recall"] > 0.2


def _damage_rows(path: Path, blob) -> None:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("UPDATE vectors SET vector = ?", (blob,))


CORRUPT_CACHES = {
    "torn": lambda path, good: path.write_bytes(path.read_bytes()[:100]),
    "text": lambda path, good: path.write_text("garbage"),
    "short": lambda path, good: _damage_rows(path, good[0][:10].tobytes()),
    "nan": lambda path, good: _damage_rows(path, np.full_like(good[0], np.nan).tobytes()),
    "zeros": lambda path, good: _damage_rows(path, np.zeros_like(good[0]).tobytes()),
    "float64": lambda path, good: _damage_rows(path, good[0].astype(np.float64).tobytes()),
    "text_row": lambda path, good: _damage_rows(path, "x" * 1536),
}


@pytest.mark.parametrize("damage", sorted(CORRUPT_CACHES))
def test_a_damaged_embedding_cache_warns_and_is_computed_again(tmp_path: Path, monkeypatch, capsys, damage):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    from realtalk_cli.tasks.memory.embeddings import Embedder, load_embedder

    embedder = load_embedder(None)
    texts = ["Ana: I took up pottery", "Ben: the Porto half marathon is in May"]
    good = embedder.encode_cached(texts)
    path = tmp_path / "cache" / "embeddings.sqlite"
    CORRUPT_CACHES[damage](path, good)
    assert np.allclose(embedder.encode_cached(texts), good, atol=1e-5)
    assert "warning:" in capsys.readouterr().err

    def never(self, texts, batch_size=64, advance=None):
        raise AssertionError("encoded again")

    monkeypatch.setattr(Embedder, "encode", never)
    assert np.allclose(embedder.encode_cached(texts), good, atol=1e-5)  # replaced by the right vectors
    assert "warning:" not in capsys.readouterr().err


def test_an_unusable_embedding_cache_dir_warns_and_runs_without(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    from realtalk_cli.tasks.memory.embeddings import load_embedder

    vectors = load_embedder(None).encode_cached(["Ana: I took up pottery"])
    assert vectors.shape == (1, 384)
    assert "warning:" in capsys.readouterr().err


def _chat_of(lines: list[tuple[str, str]]):
    from realtalk_cli.data.model import Chat, Message, Session

    messages = [Message(f"D1:{i + 1}", speaker, text, session=1) for i, (speaker, text) in enumerate(lines)]
    return Chat("Chat_X", "realtalk", "Emi", "Paola", [Session(1, "01.01.2024, 10:00:00", messages)])


def test_names_a_speaker_greets_the_other_by_are_that_speakers_aliases():
    chat = _chat_of(
        [
            ("Paola", "Hey Bella! How was the trip?"),
            ("Emi", "Great! they loved the museum and they want more"),
            ("Paola", "thanks Bella, see you"),
            ("Emi", "Hi They said yes"),  # a capitalised word after a greeting, more often lower-case: no name
            ("Emi", "Hello They, they know"),
            ("Emi", "Bye Liza!"),  # once only: not enough
        ]
    )
    names = R.speaker_names(chat, list(chat.messages()))
    assert names == {"emi": "Emi", "paola": "Paola", "bella": "Emi"}


def test_dense_retrieval_is_asked_without_the_speakers_names():
    names = {"emi": "Emi", "bella": "Emi", "fahim": "Fahim Khan", "khan": "Fahim Khan", "akib": "Akib"}
    assert R.without_names("What are Bella's hobbies?", names) == "What are hobbies?"
    assert R.without_names("When did Aqib first say he plays video games?", names) == (
        "When did first say he plays video games?"
    )
    assert R.without_names("What did Fahim Khan and emi cook?", names) == "What did and cook?"
    assert R.without_names("Emi?", names) == "Emi?"  # nothing left: the question as it is
    assert R.without_names("Which album did Adele release?", names) == "Which album did Adele release?"


def test_hybrid_ranks_by_bm25_and_by_dense_similarity_of_windows_and_messages_without_names(monkeypatch, tmp_path):
    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    from realtalk_cli.tasks.memory.builtins import RetrieverMemory
    from realtalk_cli.tasks.memory.embeddings import DenseRetriever
    from realtalk_cli.tasks.memory.protocol import MemoryTools

    asked = []
    real = DenseRetriever.rank
    monkeypatch.setattr(DenseRetriever, "rank", lambda self, q: asked.append(q) or real(self, q))
    chat = load_chat(SAMPLE_JSON)
    memory = RetrieverMemory("hybrid")
    memory.ingest(chat, MemoryTools(None, len))
    assert len(memory.lexical) == 1 and len(memory.dense) == 2
    assert len(memory.dense[0].vectors) == len(memory.dense[1].vectors) == len(memory.messages)
    ids = memory.recall(f"What race did {chat.speaker_2} sign up for?", 500)
    assert asked == ["What race did sign up for?"] * 2 and len(ids) == len(memory.messages)


def test_the_speaker_a_question_names_by_name_part_alias_possessive_or_misspelling():
    names = {"emi": "Emi", "bella": "Emi", "fahim": "Fahim Khan", "khan": "Fahim Khan", "akib": "Akib"}
    assert R.named_speaker("What are Bella's hobbies?", names) == "Emi"
    assert R.named_speaker("When did Aqib first say he plays video games?", names) == "Akib"
    assert R.named_speaker("What did Fahim Khan cook?", names) == "Fahim Khan"
    assert R.named_speaker("What did Fahim Khan and emi cook?", names) is None  # both speakers
    assert R.named_speaker("Which album did Adele release?", names) is None  # neither


def test_a_message_takes_its_best_window_and_neighbours_come_after_the_next_windows_own_message():
    chat = _chat_of([(s, f"line {i + 1}") for i, s in enumerate("ABABAB")])
    messages = list(chat.messages())
    wins = R.windows(messages)
    # window of D1:2 first, then of D1:5: a window's score is 1/61 then 1/62, a neighbour's 0.8 or 0.64 of it
    assert R.message_ids(messages, wins, [1, 4]) == ["D1:2", "D1:5", "D1:1", "D1:3", "D1:4", "D1:6"]
    # the question names A: B's lines count 0.6 of their score, so A's come first, the top window's own included
    assert R.message_ids(messages, wins, [1, 4], "A") == ["D1:5", "D1:1", "D1:3", "D1:2", "D1:4", "D1:6"]


def test_a_retriever_shows_the_named_speakers_messages_before_the_other_speakers_neighbours(tmp_path: Path):
    from realtalk_cli.tasks.memory.builtins import RetrieverMemory
    from realtalk_cli.tasks.memory.protocol import MemoryTools

    chat = _chat_of(
        [
            ("Paola", "How was the weekend?"),
            ("Emi", "I baked sourdough bread with my sister"),
            ("Paola", "Yum, I love that"),
            ("Paola", "What else?"),
            ("Emi", "Then we went to a pottery class"),
            ("Paola", "Fun!"),
            ("Emi", "The bread came out a bit flat"),
        ]
    )
    memory = RetrieverMemory("bm25")
    memory.ingest(chat, MemoryTools(None, len))
    speaker = {m.dia_id: m.speaker for m in chat.messages()}
    ids = memory.recall("What bread did Emi bake?", 500)
    assert ids[0] == "D1:2" and [speaker[i] for i in ids[:3]] == ["Emi"] * 3  # Paola's lines around them after
    ids = memory.recall("What bread did Emi and Paola bake?", 500)  # both named: neighbours by place alone
    assert ids[0] == "D1:2" and [speaker[i] for i in ids[1:3]] == ["Paola"] * 2
