"""Errata applied to a probe run's rows (`--errata FILE` on `probe run`, `probe rescore` and `report`).

Which question each entry names: a REALTALK fix names a chat by its file stem; a LoCoMo audit entry names the
sample's position in locomo10.json, found as the chat whose file says that `sample_id` (else, with no file to
read, by the name the split files carry: `conv-26`, or `Chat_1_...` for position 0), and its quoted question
must be that question's text. Each entry is then `applied` (a gold correction of a question this run asked),
`evidence-only` (WRONG_CITATION: the gold is kept), `not-asked` (the question exists, this run did not ask it:
`--limit`), `outside` (a chat this run does not hold) or `not-found` (it names no question: listed with why).

A row an applied entry names keeps its published gold and scores, and gains `erratum`: the corrected gold,
the scores against it (F1, date-normalised F1 and the protocol's own), and the judge's verdict against the
corrected gold (`judge_gold`: the corrected gold, then the other accepted answers) when a judge ran. The
report sets the two side by side, gives the ceiling (the share of asked questions whose published gold is
right, as the audit defines it: not corrected by a gold-changing entry) per category, and lists the changed
items and the entries that name no question.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from realtalk_cli.data.errata import AUDITED_LOCOMO_CATEGORIES, LOCOMO_SAMPLES, Errata, Erratum
from realtalk_cli.data.formats import chat_from_obj, chat_paths, read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.client import LLMClient
from realtalk_cli.tasks.probe.judge import judge_rows, verdict
from realtalk_cli.tasks.probe.protocol import JudgeProtocol, ProbeProtocol
from realtalk_cli.tasks.probe.rows import row_key, score_row

JUDGE_FIELDS = (
    "judge_score", "judge_error", "judge_model", "judge_prompt", "judge_prompt_tokens", "judge_completion_tokens",
    "judge_cost_usd",
)  # fmt: skip
STATUSES = ("applied", "evidence-only", "not-asked", "outside", "not-found")


@dataclass
class ChatQuestions:
    """What is known of a chat's questions: from its file (every one), or from a run's rows (those asked)."""

    dataset: str
    sample_id: str | None
    questions: dict[int, str]
    complete: bool


@dataclass
class Placement:
    erratum: Erratum
    status: str
    chat: str | None = None
    reason: str = ""


def catalog_from_files(paths: list[Path], quiet: bool = False) -> dict[str, ChatQuestions]:
    """Every question of the chat files (a LoCoMo file's `sample_id` with them); with `quiet`, files that are
    gone or unreadable are left out (a saved run's manifest may name files that moved)."""
    catalog: dict[str, ChatQuestions] = {}
    for path in chat_paths([p for p in paths if not quiet or p.is_file()]):  # never a FIFO or /dev/zero
        try:
            obj = read_json(path)
            chat = chat_from_obj(obj, path)
        except RealtalkError:
            if quiet:
                continue
            raise
        sample = obj.get("sample_id") if isinstance(obj, dict) else None
        questions = {i: q.question for i, q in enumerate(chat.qa)}
        sample_id = sample if isinstance(sample, str) else None
        catalog.setdefault(chat.name, ChatQuestions(chat.dataset, sample_id, questions, True))
    return catalog


def add_rows(catalog: dict[str, ChatQuestions], rows: list[dict]) -> dict[str, ChatQuestions]:
    """The questions of chats known only from rows (their files not found)."""
    for r in rows:
        known = catalog.get(r["chat"])
        if known is None:
            known = catalog[r["chat"]] = ChatQuestions(str(r.get("dataset")), None, {}, False)
        if not known.complete:
            known.questions.setdefault(r["qa_index"], r["question"])
    return catalog


def _locomo_chat(sample: int, catalog: dict[str, ChatQuestions]) -> str | None:
    wanted = LOCOMO_SAMPLES[sample]
    locomo = {n: c for n, c in catalog.items() if c.dataset == "locomo"}
    by_id = [n for n, c in locomo.items() if c.sample_id == wanted]
    by_name = [
        n
        for n, c in locomo.items()
        if c.sample_id is None and (n == wanted or n == f"Chat_{sample + 1}" or n.startswith(f"Chat_{sample + 1}_"))
    ]
    return (by_id or by_name or [None])[0]


def unplaceable(catalog: dict[str, ChatQuestions]) -> list[str]:
    """LoCoMo chats no audit entry can name: no file says their `sample_id` and their name is none of locomo10's."""
    known = {_locomo_chat(i, catalog) for i in range(len(LOCOMO_SAMPLES))}
    return sorted(n for n, c in catalog.items() if c.dataset == "locomo" and n not in known)


def place(errata: Errata, catalog: dict[str, ChatQuestions], asked: set[tuple[str, int]]) -> list[Placement]:
    """Which question each entry names, and whether this run asked it."""
    placed = []
    for e in errata.entries:
        placed.append(_place(e, catalog, asked))
    return placed


def _place(e: Erratum, catalog: dict[str, ChatQuestions], asked: set[tuple[str, int]]) -> Placement:
    if e.dataset is None:
        return Placement(e, "not-found", None, "the id is neither locomo_<i>_qa<j> nor realtalk_<chat>_qa<j>")
    if e.dataset == "locomo":
        if not 0 <= (e.sample or 0) < len(LOCOMO_SAMPLES):
            return Placement(e, "not-found", None, f"locomo10.json has samples 0-{len(LOCOMO_SAMPLES) - 1}")
        chat = _locomo_chat(e.sample or 0, catalog)
        if chat is None:
            return Placement(e, "outside", None, f"sample {LOCOMO_SAMPLES[e.sample or 0]} is not among these chats")
    else:
        chat = e.chat
        if chat not in catalog:
            return Placement(e, "outside", None, f"chat {chat} is not among these chats")
        if catalog[chat].dataset != "realtalk":
            return Placement(e, "not-found", chat, f"{chat} is a {catalog[chat].dataset} chat, not a REALTALK one")
    known = catalog[chat]
    j = e.qa_index if e.qa_index is not None else -1
    if j not in known.questions:
        if known.complete:
            n = len(known.questions)
            return Placement(e, "not-found", chat, f"{chat} has {n} questions (qa0-qa{n - 1})")
        return Placement(e, "not-asked", chat, "not among this run's questions (chat file not found to check it)")
    if e.question is not None and known.questions[j].strip() != e.question.strip():
        asks = known.questions[j][:60]
        return Placement(e, "not-found", chat, f"{chat} qa{j} asks {asks!r}, not {e.question[:60]!r}")
    if (chat, j) not in asked:
        return Placement(e, "not-asked", chat, "this run did not ask it")
    return Placement(e, "applied" if e.changes_gold else "evidence-only", chat)


def _gold_field(row: dict) -> str:
    return "answer" if "answer" in row or "adversarial_answer" not in row else "adversarial_answer"


def apply_errata(rows: list[dict], placements: list[Placement], protocol: ProbeProtocol | None) -> None:
    """Each row an applied entry names gains `erratum` (corrected gold and its scores; an earlier verdict against
    the same corrected gold is kept); every other row loses a stale one."""
    fixes = {(p.chat, p.erratum.qa_index): p.erratum for p in placements if p.status == "applied"}
    for row in rows:
        e = fixes.get(row_key(row))
        if e is None or row.get("error") is not None:
            row.pop("erratum", None)
            continue
        field = _gold_field(row)
        shadow = {**row, field: e.gold}
        score_row(shadow, protocol)
        scores = {"f1": shadow["f1"], "f1_date_normalised": shadow["f1_date_normalised"]}
        if protocol is not None:
            scores.update(protocol.scores(shadow))
        old = row.get("erratum") if isinstance(row.get("erratum"), dict) else {}
        fix = {
            "id": e.question_id,
            "type": e.kind,
            "published": row.get(field),
            "gold": e.gold,
            "judge_gold": e.judge_gold,
            **scores,
        }
        same = old.get("id") == e.question_id and old.get("judge_gold") == e.judge_gold
        fix.update({k: old.get(k) if same else None for k in JUDGE_FIELDS})
        row["erratum"] = fix


def verdict_valid(row: dict, judge_label: str | None, judge_hash: str | None) -> bool:
    """Whether a changed row holds a verdict against its corrected gold from this judge and judge prompt."""
    fix = row.get("erratum") if isinstance(row.get("erratum"), dict) else {}
    score = fix.get("judge_score")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 1:
        return False  # none, or not a score (a hand-edited file)
    return (fix.get("judge_model"), fix.get("judge_prompt")) == (judge_label, judge_hash)


def needs_verdict(row: dict, judge_label: str, judge_hash: str) -> bool:
    return bool(row.get("erratum")) and row.get("error") is None and not verdict_valid(row, judge_label, judge_hash)


def judge_errata(
    rows: list[dict], client: LLMClient, judge: JudgeProtocol, over_budget, everything: bool = False
) -> bool:
    """Ask the judge about every changed row against its corrected gold (those lacking this judge's verdict, or
    all with `everything`); True when --max-cost stopped it. The published-gold verdict is left as it is."""
    wanted = [
        r
        for r in rows
        if r.get("erratum") and r.get("error") is None
        and (everything or needs_verdict(r, client.endpoint.label, judge.prompt_hash))
    ]  # fmt: skip
    shadows = []
    for r in wanted:
        # a copy without any verdict (nor a `judges` table a judge might write into, nor the key of the row's first
        # judge, which would keep another judge's verdict out of the fields read here): the row's own stay as they are
        shadow = {k: v for k, v in r.items() if k not in JUDGE_FIELDS and k not in ("erratum", "judges", "judge_key")}
        shadow["answer"] = r["erratum"]["judge_gold"]
        shadows.append(shadow)
    stopped = judge_rows(shadows, client, judge, None, over_budget, everything=True) if shadows else False
    for r, s in zip(wanted, shadows, strict=True):
        r["erratum"].update({k: s.get(k) for k in JUDGE_FIELDS})
    return stopped


def planned_requests(
    placements: list[Placement], rows: list[dict], judge: JudgeProtocol, judge_label: str
) -> list[list[dict]]:
    """The judge requests a run would send for corrected golds (a dry run's count): one per applied entry whose
    row lacks this judge's verdict against that gold."""
    by_key = {row_key(r): r for r in rows}
    requests = []
    for p in placements:
        if p.status != "applied":
            continue
        row = by_key.get((p.chat, p.erratum.qa_index)) or {}
        fix = row.get("erratum") or {}
        if fix.get("judge_gold") == p.erratum.judge_gold and verdict_valid(row, judge_label, judge.prompt_hash):
            continue
        gold = p.erratum.judge_gold or ""
        question = row.get("question") or p.erratum.question or ""
        requests.append(judge.messages({"question": question, "answer": gold, "prediction": gold}))
    return requests


def unjudged(rows: list[dict], judge_label: str | None, judge_hash: str) -> int:
    """Changed rows still without this judge's verdict against the corrected gold."""
    return 0 if judge_label is None else sum(needs_verdict(r, judge_label, judge_hash) for r in rows)


def judge_cost(row: dict, key: str = "judge_cost_usd") -> float:
    """What the judge's verdict against the corrected gold cost (or its `judge_prompt_tokens`...), beside the
    row's own judge figures."""
    fix = row.get("erratum")
    value = fix.get(key) if isinstance(fix, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


# --- the report's section -------------------------------------------------------------------------


def _category(row: dict) -> str:
    return f"{row['category']} {row.get('category_name') or ''}".strip()


def _in_overall(row: dict) -> bool:
    return not (row.get("dataset") == "locomo" and row.get("category") == 5)


def _audited(row: dict, datasets: set[str], unplaced: set[str]) -> bool:
    """Whether the errata file speaks for this row's question: its dataset has entries, its chat can be named by
    them, and for LoCoMo the audit covered the category."""
    if row.get("dataset") not in datasets or row["chat"] in unplaced:
        return False
    return row.get("dataset") != "locomo" or row.get("category") in AUDITED_LOCOMO_CATEGORIES


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None  # exact: rounded once, where shown


def _side_by_side(
    rows: list[dict], metrics: list[str], judge_label: str | None, judge_hash: str | None, judge_protocol: str
) -> dict:
    answered = [r for r in rows if r.get("error") is None]
    out: dict = {"count": len(answered)}
    for m in metrics:
        out[m] = _mean([r.get(m) for r in answered])
        out[f"{m}_corrected"] = _mean([(r.get("erratum") or r).get(m) for r in answered])
    if judge_label is not None:
        published = [verdict(r, judge_label, judge_hash or "", judge_protocol) for r in answered]
        out["judge"] = _mean(published)
        missing = [r for r in answered if r.get("erratum") and not verdict_valid(r, judge_label, judge_hash)]
        corrected = [
            r["erratum"]["judge_score"] if r.get("erratum") else p for r, p in zip(answered, published, strict=True)
        ]
        out["judge_corrected"] = None if missing else _mean(corrected)
    return out


def errata_section(
    errata: Errata,
    placements: list[Placement],
    rows: list[dict],
    judge_label: str | None,
    judge_hash: str | None,
    catalog: dict[str, ChatQuestions],
    judge_protocol: str = "",
) -> dict:
    """report.json's `errata`: the file, what became of each entry, scores against both golds side by side, the
    ceiling per category (over the questions the file can name) and the changed items. The published gold's
    verdicts are those of the run's judge (`judge_protocol`/`judge_label` under prompt `judge_hash`), as its
    verdicts against the corrected golds are."""
    counts = Counter(p.status for p in placements)
    unplaced = [n for n in unplaceable(catalog) if any(r["chat"] == n for r in rows)]
    datasets = {e.dataset for e in errata.entries if e.dataset}
    corrected_keys = {(p.chat, p.erratum.qa_index) for p in placements if p.status == "applied"}
    metrics = ["f1", "f1_date_normalised"]
    metrics += sorted({k for r in rows for k in (r.get("erratum") or {}) if k.startswith("f1_") and k not in metrics})
    by_category: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["category"]):
        by_category.setdefault(_category(r), []).append(r)
    judged = (judge_label, judge_hash, judge_protocol)
    scores = {c: _side_by_side(rs, metrics, *judged) for c, rs in by_category.items()}
    scores["overall"] = _side_by_side([r for r in rows if _in_overall(r)], metrics, *judged)
    ceiling = {}
    for c, rs in [*by_category.items(), ("overall", [r for r in rows if _in_overall(r)])]:
        covered = [r for r in rs if _audited(r, datasets, set(unplaced))]
        if covered:
            wrong = sum(row_key(r) in corrected_keys for r in covered)
            ceiling[c] = {"asked": len(covered), "corrected": wrong, "ceiling": round(1 - wrong / len(covered), 4)}
    changed = []
    for r in sorted((r for r in rows if r.get("erratum")), key=row_key):
        fix = r["erratum"]
        changed.append(
            {
                "id": fix["id"],
                "type": fix["type"],
                "chat": r["chat"],
                "qa_index": r["qa_index"],
                "category": _category(r),
                "question": r["question"],
                "published": fix["published"],
                "corrected": fix["gold"],
                "prediction": r.get("prediction"),
                "f1": r.get("f1"),
                "f1_corrected": fix.get("f1"),
                "judge": verdict(r, judge_label, judge_hash or "", judge_protocol) if judge_label else None,
                "judge_corrected": fix.get("judge_score") if verdict_valid(r, judge_label, judge_hash) else None,
            }
        )
    return {
        "file": str(errata.path),
        "sha256": errata.sha256,
        "entries": len(errata.entries),
        "counts": {s: counts.get(s, 0) for s in STATUSES},
        "judge": judge_label,
        "judge_note": (
            "judge: the published-gold column is the run's verdict against the published gold; the corrected column "
            "takes, for each changed item, a verdict against the corrected gold (REALTALK fixes: with the other "
            "accepted answers after it), the same verdict elsewhere; '-' while a changed item lacks one"
            if judge_label
            else "no judge: F1 only"
        ),
        "scores": scores,
        "ceiling": ceiling,
        "warnings": [
            f"LoCoMo chat {n}: no sample_id known (its file not found) and not named as a locomo10 sample (conv-26, "
            "Chat_1_...): no audit entry can name its questions, left out of the ceiling; give its file (--chats)"
            for n in unplaced
            if "locomo" in datasets
        ],
        "changed": changed,
        "not_found": [
            {"id": p.erratum.question_id, "entry": p.erratum.position, "reason": p.reason}
            for p in placements
            if p.status == "not-found"
        ],
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def errata_markdown(section: dict) -> list[str]:
    """report.md's errata section."""
    c = section["counts"]
    judge = section.get("judge") is not None
    lines = [
        "",
        f"## Errata: `{_md(section['file'])}` (sha256 {section['sha256'][:12]})",
        "",
        f"{section['entries']} entries: {c['applied']} applied (gold corrected), {c['evidence-only']} evidence-only "
        f"(WRONG_CITATION: gold kept), {c['not-asked']} not asked by this run, {c['outside']} outside these chats, "
        f"{c['not-found']} naming no question" + (" (listed below)." if c["not-found"] else "."),
        "Ceiling: the share of asked questions whose published gold is right (not corrected by a gold-changing "
        "entry), the best score reachable against the published gold; LoCoMo's category 5 was not audited.",
        f"{section['judge_note']}.",
        *(f"- {_md(w)}" for w in section.get("warnings", [])),
        "",
        "| category | asked | corrected | ceiling | F1 published | F1 corrected |"
        + (" judge published | judge corrected |" if judge else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if judge else ""),
    ]
    for cat, s in section["scores"].items():
        ceil = section["ceiling"].get(cat)
        cells = [
            str(ceil["asked"]) if ceil else str(s["count"]),
            str(ceil["corrected"]) if ceil else "-",
            _fmt(ceil["ceiling"]) if ceil else "-",
            _fmt(s["f1"]),
            _fmt(s["f1_corrected"]),
        ]
        if judge:
            cells += [_fmt(s.get("judge")), _fmt(s.get("judge_corrected"))]
        name = f"**{cat}**" if cat == "overall" else _md(cat)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if section["changed"]:
        lines += [
            "",
            "Changed items:",
            "",
            "| id | chat | qa | category | published gold | corrected gold | prediction | F1 | F1 corrected |"
            + (" judge | judge corrected |" if judge else ""),
            "|---|---|---:|---|---|---|---|---:|---:|" + ("---:|---:|" if judge else ""),
        ]
        for ch in section["changed"]:
            cells = [
                _md(ch["id"]), _md(ch["chat"]), str(ch["qa_index"]), _md(ch["category"]), _md(ch["published"]),
                _md(ch["corrected"]), _md(ch["prediction"]), _fmt(ch["f1"]), _fmt(ch["f1_corrected"]),
            ]  # fmt: skip
            if judge:
                cells += [_fmt(ch["judge"]), _fmt(ch["judge_corrected"])]
            lines.append("| " + " | ".join(cells) + " |")
    if section["not_found"]:
        lines += ["", "Entries naming no question:", ""]
        lines += [f"- `{_md(n['id'])}` (entry [{n['entry']}]): {_md(n['reason'])}" for n in section["not_found"]]
    return lines
