"""`realtalk probe judge-audit`: how lenient is a judge? It grades answers whose correctness is known.

For every question of the data (LoCoMo's category 5 left out: its right answer is "not mentioned"), five
answers are built from the gold alone, deterministically (the same data gives the same answers):

- `gold`: the gold itself.
- `paraphrase`: the same answer written otherwise: a date in the gold written another way (`07 March, 2024` ->
  `March 7, 2024`), else in lower case (or, already lower case, capitalised) with the final full stop added or
  dropped.
- `specific-wrong`: another question's gold of the same type (a date for a date, a person for a person, a
  place, a number; no for yes), sharing no word with this gold (token F1 0, dates normalised too): from the
  same chat when one fits, else from the same dataset, else any; among the five closest in length, chosen by a
  hash of the question.
- `vague-on-topic`: the question's own content words without the fact (every word the gold holds removed),
  in a fixed sentence: on topic, nothing checkable.
- `abstention`: "Not mentioned in the conversation".

A verdict with a score of at least 0.5 counts as accepted (realtalk's judge gives 0, 0.5 or 1; mem0's and
the paper's 0 or 1). The report gives the accept rate per kind, the false-accept rate (the three wrong kinds
pooled over their items) and the true-accept rate (gold and paraphrase pooled), each with a 95% percentile
bootstrap interval over the graded answers. A question without a usable wrong answer of its type gets no
`specific-wrong` row (counted). The audit is a run folder like any run: its identity is the judge (protocol,
model, endpoint, prompt), the chats and the answer builders' version; verdicts are appended as they come, a
rerun asks only what lacks a verdict, and requests go through the response cache.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from realtalk_cli.data.formats import chat_paths, load_chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, read_regular, run_folder, write_atomic, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import LLMClient
from realtalk_cli.llm.jobs import dry_run_plan
from realtalk_cli.llm.providers import resolve_model
from realtalk_cli.scoring.dates import MONTHS, normalise_dates
from realtalk_cli.scoring.f1 import normalize_answer, stem
from realtalk_cli.scoring.stats import bootstrap_ci
from realtalk_cli.tasks.probe.items import NOT_MENTIONED
from realtalk_cli.tasks.probe.judge import judge_rows, needs_judging
from realtalk_cli.tasks.probe.judges import judge_protocol
from realtalk_cli.tasks.runs.identity import dataset_hashes, manifest
from realtalk_cli.tasks.runs.results import completeness, final_rows, read_predictions, status_lines
from realtalk_cli.tasks.runs.settings import check_settings, load_prices

KINDS = ("gold", "paraphrase", "specific-wrong", "vague-on-topic", "abstention")
RIGHT = ("gold", "paraphrase")
WRONG = ("specific-wrong", "vague-on-topic", "abstention")
ACCEPTED = 0.5  # a score at least this counts as accepted
ANSWERS_VERSION = "1"  # of the answer builders below: part of the run's identity
AUDIT_FILES = ["predictions.jsonl", "report.json", "report.md"]
AUDIT_FIELDS = {"qa_index": int, "question": str, "kind": str, "prediction": str, "answer": str}
TASK = "judge-audit"
VAGUE = "It was something to do with {}, as came up in their conversations."  # the vague answer's fixed words


@dataclass
class AuditOptions:
    judge_model: str
    out: Path
    judge_protocol: str = "realtalk"
    concurrency: int = 8
    limit: int | None = None  # the first N questions (each graded five times)
    max_cost: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    use_cache: bool = True
    timeout: float = 120.0
    force: bool = False
    price_in: float | None = None
    price_out: float | None = None


def is_audit(path: Path) -> bool:
    """Whether a folder holds a judge audit (its run.json identity or its report.json says so)."""
    for name, keys in (("run.json", ("identity", "task")), ("report.json", ("task",))):
        file = path / name
        if not file.is_file():
            continue
        try:
            value = orjson.loads(read_regular(file))
        except (OSError, orjson.JSONDecodeError):
            continue
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value == TASK:
            return True
    return False


# --- the answers ----------------------------------------------------------------------------------

_STOP = set(
    "a an the and or of to in on at for with by from about as is are was were be been do does did has have had what "
    "when where who whom whose which why how many much long ago would could should might may can will this that "
    "these those it its their there they he she his her him them i you we our your my me any some than then so "
    "if not no yes ever kind type sort".split()
)
_YES_NO = re.compile(r"((probably|likely|most likely|maybe|possibly)[ ,]+)?(yes|no|not)\b", re.I)
_WHEN = re.compile(r"^when\b|\bwhat (date|day|month|year|time)\b|\bwhich (year|month|day)\b|\bhow long ago\b", re.I)


def answer_type(question: str, gold: str) -> str:
    """The kind of fact a gold is, for picking a wrong answer of the same kind: yes-no, date (a when-question, or
    a gold holding a date), person (who), place (where), number (how many/much/long/old/far), else other."""
    q = question.strip().lower()
    if _YES_NO.match(gold.strip()):
        return "yes-no"
    if _WHEN.search(q) or normalise_dates(gold) != gold:
        return "date"
    if q.startswith(("who ", "whom ", "whose ")):
        return "person"
    if q.startswith("where"):
        return "place"
    if q.startswith(("how many", "how much", "how long", "how old", "how far")):
        return "number"
    return "other"


def _pick(key: str, options: list) -> object:
    return options[int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % len(options)]


def paraphrase(gold: str) -> str:
    """The gold written otherwise: a date another way, else case and final punctuation changed."""
    text = gold.strip()
    dated = _rewrite_dates(text)
    if dated is not None and dated.lower() != text.lower():
        return dated
    cased = text.lower() if text != text.lower() else text[:1].upper() + text[1:]
    return cased[:-1] if cased.endswith((".", "!")) else cased + "."


_CANONICAL = re.compile(rf"\b(\d{{1,2}}) ({'|'.join(MONTHS)}) ((?:19|20)\d\d)\b")


def _rewrite_dates(text: str) -> str | None:
    """`07 March, 2024` -> `March 7, 2024`; `December 29, 2023` -> `29 December 2023`; None without a full date."""
    canonical = normalise_dates(text)
    if not _CANONICAL.search(canonical):
        return None
    month_first = _CANONICAL.sub(lambda m: f"{m.group(2).capitalize()} {m.group(1)}, {m.group(3)}", canonical)
    if normalize_answer(month_first) != normalize_answer(text):
        return month_first
    return _CANONICAL.sub(lambda m: f"{m.group(1)} {m.group(2).capitalize()} {m.group(3)}", canonical)


def _words(text: str) -> set[str]:
    return {stem(w) for w in normalize_answer(text).split()}


def vague(question: str, gold: str) -> str:
    """The question's topic without the fact: its content words, less every word of the gold."""
    fact = _words(gold) | _words(normalise_dates(gold))
    topic = []
    for word in re.findall(r"[A-Za-z][A-Za-z'-]*", question):
        plain = word.lower().removesuffix("'s")
        if plain in _STOP or stem(plain) in fact or plain in topic:
            continue
        topic.append(plain)
    return VAGUE.format(" ".join(topic[:8]) or "that")


def _gold_words(gold: str) -> frozenset[str]:
    """The gold's words as token F1 counts them (stemmed), and again with its dates written one way: a wrong answer
    sharing none of them scores token F1 0 against the gold, dates normalised or not."""
    return frozenset(_words(gold) | _words(normalise_dates(gold)))


@dataclass
class Question:
    chat: str
    dataset: str
    qa_index: int
    question: str
    gold: str
    category: int
    category_name: str

    @property
    def key(self) -> str:
        return f"{self.chat}/{self.qa_index}/{self.question}"


class Pool:
    """The questions whose golds stand in as specific wrong answers, with each gold's type and words computed once
    (a pool of thousands of questions is searched once per question)."""

    def __init__(self, questions: list[Question]):
        self.by_type: dict[str, list[tuple[Question, frozenset[str]]]] = {}
        for q in questions:
            self.by_type.setdefault(answer_type(q.question, q.gold), []).append((q, _gold_words(q.gold)))

    def specific_wrong(self, q: Question) -> str | None:
        """Another question's gold of the same type that shares no word with this gold; None when there is none."""
        kind = answer_type(q.question, q.gold)
        if kind == "yes-no":
            return "No" if re.search(r"\byes\b", q.gold, re.I) else "Yes"
        words = _gold_words(q.gold)
        fits = [o for o, other in self.by_type.get(kind, []) if o is not q and not words & other]
        size = len(q.gold.split())
        for scope in (
            [o for o in fits if o.chat == q.chat],
            [o for o in fits if o.dataset == q.dataset],
            fits,
        ):
            golds = sorted({o.gold for o in scope}, key=lambda g: (abs(len(g.split()) - size), g))
            if golds:
                return str(_pick(q.key, golds[:5]))
        return None


def audit_questions(files: list[Path]) -> list[Question]:
    """Every question of the chats, but LoCoMo's category 5 and golds that are empty."""
    out = []
    for path in chat_paths(files):
        chat = load_chat(path)
        for i, qa in enumerate(chat.qa):
            if (chat.dataset == "locomo" and qa.category == 5) or not (qa.answer or "").strip():
                continue
            out.append(Question(chat.name, chat.dataset, i, qa.question, qa.answer, qa.category, qa.category_name))
    return out


def audit_rows(questions: list[Question], pool: list[Question], model: str) -> list[dict]:
    """The answers to grade: five per question (four when no specific wrong answer fits)."""
    rows = []
    wrong = Pool(pool)
    for q in questions:
        answers = {
            "gold": q.gold,
            "paraphrase": paraphrase(q.gold),
            "specific-wrong": wrong.specific_wrong(q),
            "vague-on-topic": vague(q.question, q.gold),
            "abstention": NOT_MENTIONED,
        }
        for kind, text in answers.items():
            if text is None:
                continue
            rows.append(
                {
                    "chat": q.chat,
                    "dataset": q.dataset,
                    "qa_index": q.qa_index,
                    "question": q.question,
                    "answer": q.gold,
                    "category": q.category,
                    "category_name": q.category_name,
                    "kind": kind,
                    "prediction": text,
                    "model": model,
                    "error": None,
                    "judge_score": None,
                    "judge_model": None,
                }
            )
    return rows


def _key(row: dict) -> tuple:
    return (row["chat"], row["qa_index"], row["kind"])


# --- the run --------------------------------------------------------------------------------------


def run_audit(files: list[Path], opts: AuditOptions, dry_run: bool = False, progress=None) -> dict:
    """Grade the built answers with the judge; report.json's content (or the dry run's plan)."""
    check_settings(asdict(opts), AuditOptions, "options")
    judge = judge_protocol(opts.judge_protocol)
    endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env)
    prices = load_prices([endpoint], opts.max_cost, opts.price_in, opts.price_out)
    pool = audit_questions(files)
    if not pool:
        raise RealtalkError(f"{', '.join(map(str, files))}: no question with a gold answer to grade answers against")
    questions = pool[: opts.limit] if opts.limit else pool
    rows = audit_rows(questions, pool, endpoint.label)
    sampling = {k: v for k, v in judge.params.items() if not callable(v)}
    identity = {
        "task": TASK,
        "judge_protocol": judge.name,
        "model": endpoint.label,
        "endpoint": endpoint.base_url or None,
        "prompts": judge.prompt_hashes(),
        "sampling": sampling,
        "answers_version": ANSWERS_VERSION,
        "chats": {Path(k).name: v for k, v in dataset_hashes(files).items()},
    }
    predictions = opts.out / "predictions.jsonl"
    if dry_run:
        if opts.out.is_dir():
            check_run_identity(opts.out, identity, AUDIT_FILES)
        _carry_verdicts(rows, final_rows(read_predictions(predictions, AUDIT_FIELDS), _key))
        todo = [r for r in rows if needs_judging(r, endpoint.label, judge.prompt_hash)]
        plan = dry_run_plan(
            endpoint, prices, [judge.messages(r) for r in todo], len(rows) - len(todo), "answer", judge.max_tokens
        )
        return plan
    with run_folder(opts.out, identity, AUDIT_FILES, opts.force):
        started = time.perf_counter()
        _carry_verdicts(rows, final_rows(read_predictions(predictions, AUDIT_FIELDS), _key))
        cache = open_cache(opts.use_cache) if judge.cached else None
        client = LLMClient(endpoint, concurrency=opts.concurrency, cache=cache, prices=prices, timeout_s=opts.timeout)
        if progress and hasattr(progress, "start"):
            todo = sum(needs_judging(r, endpoint.label, judge.prompt_hash) for r in rows)
            progress.start(todo, len(rows) - todo, "graded")
        with open(predictions, "ab") as sink:

            def judged(row: dict, totals) -> None:
                sink.write(orjson.dumps(row) + b"\n")
                sink.flush()
                if progress:
                    progress(row, totals)

            def over_budget() -> bool:
                return opts.max_cost is not None and client.totals.cost_usd >= opts.max_cost

            stopped = judge_rows(rows, client, judge, judged, over_budget)
        write_jsonl(predictions, rows)
        report = audit_report(rows, judge.name, endpoint.label, judge.prompt_hash)
        report.update(completeness(0, 0, stopped, report["unscored"], "answers"))
        m = manifest(opts, files, model=endpoint.label, judge_model=endpoint.label, prompts=judge.prompt_hashes())
        report["manifest"] = {**m, "answers_version": ANSWERS_VERSION}
        t = client.totals
        report["run"] = {
            "wall_time_s": round(time.perf_counter() - started, 3),
            "requests": t.requests,
            "cached": t.cached,
            "retries": t.retries,
            "errors": t.errors,
            "stopped_for_max_cost": stopped,
            "prompt_tokens": sum(r.get("judge_prompt_tokens") or 0 for r in rows),
            "completion_tokens": sum(r.get("judge_completion_tokens") or 0 for r in rows),
            "cost_usd": round(sum(r.get("judge_cost_usd") or 0.0 for r in rows), 6),
        }
        write_atomic(opts.out / "report.json", orjson.dumps(report, option=orjson.OPT_INDENT_2))
        write_atomic(opts.out / "report.md", audit_markdown(report))
    return report


def _carry_verdicts(rows: list[dict], earlier: list[dict]) -> None:
    """Verdicts of an earlier invocation on the same answer are kept (the judge fields of its row)."""
    by_key = {_key(r): r for r in earlier}
    for row in rows:
        old = by_key.get(_key(row))
        if old is not None and old.get("prediction") == row["prediction"] and old.get("answer") == row["answer"]:
            row.update({k: v for k, v in old.items() if k.startswith("judge_")})


# --- the report -----------------------------------------------------------------------------------


def _rate(rows: list[dict], judge_label: str, judge_hash: str) -> dict:
    """Graded answers, accepted ones, the share and its 95% bootstrap interval."""
    graded = [r for r in rows if not needs_judging(r, judge_label, judge_hash)]
    hits = [1.0 if r["judge_score"] >= ACCEPTED else 0.0 for r in graded]
    ci = bootstrap_ci(hits, 1000, 0)
    rate = None if ci["mean"] is None else round(ci["mean"], 4)
    low = None if ci["low"] is None else round(ci["low"], 4)
    high = None if ci["high"] is None else round(ci["high"], 4)
    return {"n": len(graded), "accepted": int(sum(hits)), "rate": rate, "low": low, "high": high}


def audit_report(rows: list[dict], protocol: str, judge_label: str, judge_hash: str) -> dict:
    kinds = {k: _rate([r for r in rows if r["kind"] == k], judge_label, judge_hash) for k in KINDS}
    wrong = _rate([r for r in rows if r["kind"] in WRONG], judge_label, judge_hash)
    right = _rate([r for r in rows if r["kind"] in RIGHT], judge_label, judge_hash)
    categories: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["category"]):
        categories.setdefault(f"{r['category']} {r['category_name']}", []).append(r)  # type: ignore[arg-type]
    questions = {(r["chat"], r["qa_index"]) for r in rows}
    examples = {}
    for k in KINDS:
        shown = [r for r in rows if r["kind"] == k and r.get("judge_score") is not None][:3]
        examples[k] = [
            {"question": r["question"], "gold": r["answer"], "answer": r["prediction"], "score": r["judge_score"]}
            for r in shown
        ]
    return {
        "task": TASK,
        "protocol": protocol,
        "model": judge_label,
        "accepted_at": ACCEPTED,
        "questions": len(questions),
        "without_specific_wrong": len(questions) - sum(1 for r in rows if r["kind"] == "specific-wrong"),
        "kinds": kinds,
        "false_accept_rate": wrong["rate"],
        "false_accept": wrong,
        "true_accept_rate": right["rate"],
        "true_accept": right,
        "categories": {
            c: {k: _rate([r for r in rs if r["kind"] == k], judge_label, judge_hash) for k in KINDS}
            | {"false_accept": _rate([r for r in rs if r["kind"] in WRONG], judge_label, judge_hash)}
            for c, rs in categories.items()
        },
        "unscored": sum(needs_judging(r, judge_label, judge_hash) for r in rows),
        "examples": examples,
    }


def rate_text(s: dict) -> str:
    if s["rate"] is None:
        return "-"
    interval = "" if s["low"] is None else f" [{s['low']:.3f}, {s['high']:.3f}]"
    return f"{s['rate']:.3f}{interval}"


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def audit_markdown(report: dict) -> str:
    lines = [
        "# realtalk judge audit",
        "",
        *(f"> **{line}**\n" for line in status_lines(report)),
        f"- judge: `{report['protocol']}/{report['model']}`",
        f"- questions: {report['questions']} (LoCoMo category 5 left out); {report['without_specific_wrong']} without "
        "a specific wrong answer of their type",
        f"- accepted: a score of at least {report['accepted_at']}",
        "",
        "**False-accept rate** (specific-wrong, vague-on-topic and abstention pooled): "
        f"{rate_text(report['false_accept'])} over {report['false_accept']['n']} answers.",
        f"**True-accept rate** (gold and paraphrase pooled): {rate_text(report['true_accept'])} over "
        f"{report['true_accept']['n']} answers.",
        "",
        "| kind | answers | accepted | accept rate [95% CI] |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {s['n']} | {s['accepted']} | {rate_text(s)} |" for k, s in report["kinds"].items()),
        "",
        "| category | " + " | ".join(KINDS) + " | false-accept |",
        "|---|" + "---:|" * (len(KINDS) + 1),
    ]
    for c, per in report["categories"].items():
        cells = [per[k]["rate"] for k in (*KINDS, "false_accept")]
        lines.append(f"| {_md(c)} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
    lines += ["", "Examples (question · gold · answer graded · score):", ""]
    for k, shown in report["examples"].items():
        for e in shown:
            lines.append(f"- {k}: {_md(e['question'])} · {_md(e['gold'])} · {_md(e['answer'])} · {e['score']}")
    run = report.get("run") or {}
    if run:
        lines += [
            "",
            f"Judge: {run['requests']} requests ({run['cached']} cached), {run['prompt_tokens']} prompt + "
            f"{run['completion_tokens']} completion tokens, ${run['cost_usd']:.4f}, {run['wall_time_s']} s.",
        ]
    return "\n".join(lines) + "\n"
