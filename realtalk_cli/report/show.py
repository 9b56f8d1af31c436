"""`probe show`: the questions of one run, selected (wrong, category, chat, question), with their evidence."""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.data.model import matches_category
from realtalk_cli.errors import RealtalkError
from realtalk_cli.report.explorer import evidence_ids, find_chats, message_date
from realtalk_cli.report.runs import category_of, load_run


def _category_matches(row: dict, wanted: str) -> bool:
    return matches_category(row.get("category"), row.get("category_name"), wanted)


def show_questions(
    run_dir: Path,
    wrong: bool = False,
    category: str | None = None,
    chat: str | None = None,
    question: int | None = None,
    threshold: float = 0.5,
    chat_files: list[Path] | None = None,
) -> tuple[list[dict], list[str]]:
    """The selected questions with everything needed to judge an answer; plus warnings (chat files missing)."""
    run = load_run(run_dir)
    if run.kind != "probe":
        raise RealtalkError(f"{run_dir}: a simulate run; `probe show` reads probe runs")
    answered = list(run.answered_rows())  # one run's questions, selected below: small enough to hold
    rows = sorted(answered, key=lambda r: (r["chat"], r["qa_index"]))
    if chat is not None:
        names = sorted({r["chat"] for r in rows})
        if chat not in names:
            raise RealtalkError(f"--chat {chat}: not in this run (chats: {', '.join(names)})")
        rows = [r for r in rows if r["chat"] == chat]
    if category is not None:
        known = sorted({category_of(r) for r in answered})
        rows = [r for r in rows if _category_matches(r, category)]
        if not rows and not any(_category_matches(r, category) for r in answered):
            raise RealtalkError(f"--category {category}: no such category in this run ({', '.join(known)})")
    if question is not None:
        indexes = sorted({r["qa_index"] for r in rows})
        if question not in indexes:
            known = f"{indexes[0]}..{indexes[-1]}" if indexes else "none"
            raise RealtalkError(f"--question {question}: no such question in this run (questions {known})")
        rows = [r for r in rows if r["qa_index"] == question]
    if wrong:
        rows = [r for r in rows if isinstance(r.get("f1"), (int, float)) and r["f1"] < threshold]
    chats, warnings = find_chats([run], chat_files or [])
    items = []
    for r in rows:
        index = chats[r["chat"]].message_index() if r["chat"] in chats else None
        retrieved = r.get("retrieved") if isinstance(r.get("retrieved"), list) else None
        evidence = []
        for i in evidence_ids(r):
            m = index.get(i) if index is not None else None
            entry = {"id": i, "found": m is not None}
            if m is not None:
                entry.update(speaker=m.speaker, date=message_date(chats[r["chat"]], m), text=m.clean_text)
            if retrieved is not None:
                entry["retrieved"] = i in retrieved
            evidence.append(entry)
        items.append(
            {
                "chat": r["chat"],
                "qa_index": r["qa_index"],
                "category": category_of(r),
                "question": r["question"],
                "gold": r.get("answer", r.get("adversarial_answer")),  # LoCoMo's category 5 keeps its own name
                "prediction": r.get("prediction"),
                "f1": r.get("f1"),
                "f1_date_normalised": r.get("f1_date_normalised"),
                "judge_score": r.get("judge_score"),
                "evidence": evidence,
                "chat_file_found": index is not None,
            }
        )
    return items, warnings
