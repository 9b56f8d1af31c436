"""Build the synthetic LongMemEval files in data/sample/ (no line of the real files is copied: invented people and
facts, written from the format facts of shared/LITERATURE_PROTOCOLS.md §2.1).

    python data/make_longmemeval_sample.py            # data/sample/longmemeval_{s,oracle}_sample.json
    python data/make_longmemeval_sample.py --bench OUT.json --instances 500   # an S-sized file for bench/

Seven questions: every question type, two integer answers, one abstention question (`_abs`) that still marks a
`has_answer` turn (as 9 of the 30 real ones do). Like the real files: in oracle every turn carries `has_answer`
and one instance lists its sessions out of date order; in S only the evidence sessions' turns carry it, filler
sessions (`sharegpt_...`, `ultrachat_...` or bare ids) do not, and sessions are sorted by date; one temporal
question is asked on the day of its latest session, before it (the real files' same-day timestamps).
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent / "sample"
DATE = "%Y/%m/%d (%a) %H:%M"

# question_id, type, question, answer, question date, evidence sessions [(id, date, [(role, text, has_answer)])]
QUESTIONS = [
    (
        "5a1c0e01",
        "single-session-user",
        "What is the name of the cat I adopted?",
        "Pixel",
        "2023/05/30 (Tue) 20:00",
        [
            (
                "answer_5a1c0e01_1",
                "2023/05/21 (Sun) 10:12",
                [
                    ("user", "I finally adopted a cat from the shelter — she's called Pixel!", True),
                    ("assistant", "Congratulations on adopting Pixel! Here are tips for her first week.", False),
                ],
            )
        ],
    ),
    (
        "5a1c0e02",
        "single-session-assistant",
        "Which novel did you recommend for my train trip?",
        "The Overstory by Richard Powers",
        "2023/06/12 (Mon) 08:30",
        [
            (
                "answer_5a1c0e02_1",
                "2023/06/02 (Fri) 19:45",
                [
                    ("user", "I have a nine-hour train ride next week. Any novel to suggest?", False),
                    ("assistant", "For a long ride I'd recommend The Overstory by Richard Powers.", True),
                ],
            )
        ],
    ),
    (
        "5a1c0e03",
        "single-session-preference",
        "Can you suggest something to cook for dinner tonight?",
        "The user would prefer vegetarian dishes with a lot of heat; suggestions should avoid meat and fish.",
        "2023/07/04 (Tue) 18:00",
        [
            (
                "answer_5a1c0e03_1",
                "2023/06/28 (Wed) 12:05",
                [
                    ("user", "I've been vegetarian for years and I love really spicy food 🌶️.", True),
                    ("assistant", "Great, I'll keep that in mind for recipe ideas.", False),
                ],
            )
        ],
    ),
    (
        "gpt4_5a1c0e04",
        "multi-session",
        "How many houseplants did I buy in total?",
        5,
        "2023/08/20 (Sun) 09:00",
        [
            (
                "answer_5a1c0e04_2",
                "2023/08/15 (Tue) 17:20",
                [
                    ("user", "Today I bought three more plants: a pothos, a fern and a snake plant.", True),
                    ("assistant", "Nice additions! Ferns like humidity.", False),
                ],
            ),
            (
                "answer_5a1c0e04_1",
                "2023/08/01 (Tue) 11:00",
                [
                    ("user", "I bought two houseplants at the market, a monstera and a calathea.", True),
                    ("assistant", "Monsteras are easy to care for.", False),
                ],
            ),
        ],
    ),
    (
        "5a1c0e05",
        "temporal-reasoning",
        "How many days had passed between my first guitar lesson and my first gig?",
        12,
        "2023/09/20 (Wed) 08:00",
        [
            (
                "answer_5a1c0e05_1",
                "2023/09/03 (Sun) 15:00",
                [("user", "I had my very first guitar lesson today!", True), ("assistant", "How exciting!", False)],
            ),
            (
                "answer_5a1c0e05_2",
                "2023/09/15 (Fri) 23:10",
                [("user", "Played my first gig tonight at the café.", True), ("assistant", "Well done!", False)],
            ),
            (
                "answer_5a1c0e05_3",
                "2023/09/20 (Wed) 21:30",
                [("user", "Booked a second gig for October.", False), ("assistant", "Great news.", False)],
            ),
        ],
    ),
    (
        "5a1c0e06",
        "knowledge-update",
        "Which city do I live in now?",
        "Porto",
        "2023/11/02 (Thu) 10:00",
        [
            (
                "answer_5a1c0e06_1",
                "2023/03/10 (Fri) 09:00",
                [("user", "I live in Lyon and work at a bakery.", True), ("assistant", "Lyon is lovely.", False)],
            ),
            (
                "answer_5a1c0e06_2",
                "2023/10/18 (Wed) 20:00",
                [("user", "Big news: I moved to Porto last week!", True), ("assistant", "Welcome to Porto!", False)],
            ),
        ],
    ),
    (
        "5a1c0e07_abs",
        "multi-session",
        "How many concerts did I attend with my brother?",
        "The user mentioned concerts with a friend, never with a brother.",
        "2023/12/01 (Fri) 12:00",
        [
            (
                "answer_5a1c0e07_1",
                "2023/11/11 (Sat) 22:00",
                [("user", "Went to a jazz concert with my friend Noor.", True), ("assistant", "Sounds fun!", False)],
            )
        ],
    ),
]

OUT_OF_ORDER = "gpt4_5a1c0e04"  # its oracle instance lists the later session first
FILLER_WORDS = (
    "travel budget recipe garden history python code weather museum recommend schedule exercise playlist "
    "translate summary email draft coffee mountain river bicycle chapter theory planet market ticket"
).split()


def filler_session(rng: random.Random, words_per_turn: int, turns: int) -> list[dict]:
    out = []
    for t in range(turns):
        text = " ".join(rng.choice(FILLER_WORDS) for _ in range(words_per_turn))
        out.append({"role": "user" if t % 2 == 0 else "assistant", "content": text.capitalize() + "."})
    return out


def filler_id(rng: random.Random, k: int) -> str:
    kind = k % 3
    tag = f"{rng.getrandbits(32):08x}"
    return f"sharegpt_{tag}_{k}" if kind == 0 else f"ultrachat_{tag}" if kind == 1 else tag


def instance(question: tuple, oracle: bool, rng: random.Random, fillers: int, words: int, turns: int) -> dict:
    qid, qtype, text, answer, asked, evidence = question
    sessions = []  # (id, date, turns)
    for sid, date, evidence_turns in evidence:
        turns_out = [{"role": r, "content": c, "has_answer": h} for r, c, h in evidence_turns]
        sessions.append((sid, date, turns_out))
    if not oracle:
        dates = [datetime.strptime(d, DATE) for _, d, _ in evidence]
        first, step = min(dates) - timedelta(days=40), (max(dates) - min(dates) + timedelta(days=40)) / fillers
        for k in range(fillers):  # spread over the 40 days before the evidence and between its sessions
            when = first + step * k + timedelta(minutes=rng.randrange(300))
            sessions.append((filler_id(rng, k), when.strftime(DATE), filler_session(rng, words, turns)))
        sessions.sort(key=lambda s: s[1])
    elif qid == OUT_OF_ORDER:
        sessions.sort(key=lambda s: s[1], reverse=True)
    return {
        "question_id": qid,
        "question_type": qtype,
        "question": text,
        "answer": answer,
        "question_date": asked,
        "haystack_session_ids": [s[0] for s in sessions],
        "haystack_dates": [s[1] for s in sessions],
        "haystack_sessions": [s[2] for s in sessions],
        "answer_session_ids": [sid for sid, _, _ in reversed(evidence)] if oracle else [sid for sid, _, _ in evidence],
    }


def sample(oracle: bool) -> list[dict]:
    rng = random.Random(20)
    return [instance(q, oracle, rng, fillers=4, words=12, turns=4) for q in QUESTIONS]


def bench_file(path: Path, instances: int = 500, fillers: int = 48, words: int = 235, turns: int = 10) -> Path:
    """An S-sized synthetic file (about 115k o200k tokens per instance with the defaults), written one instance
    at a time; question ids get a running suffix so that they stay unique."""
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i in range(instances):
            q = QUESTIONS[i % len(QUESTIONS)]
            qid = q[0].replace("5a1c0e", f"{i:06x}"[:6], 1)
            obj = instance((qid, *q[1:]), False, rng, fillers, words, turns)
            f.write((", " if i else "") + json.dumps(obj, ensure_ascii=False))
        f.write("]")
    return path


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--bench":
        count = int(sys.argv[sys.argv.index("--instances") + 1]) if "--instances" in sys.argv else 500
        print(bench_file(Path(sys.argv[2]), count))
        return
    for name, oracle in (("longmemeval_s_sample.json", False), ("longmemeval_oracle_sample.json", True)):
        path = HERE / name
        path.write_text(json.dumps(sample(oracle), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
