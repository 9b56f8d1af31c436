"""Memory probing: a model answers questions about a whole chat; scored by token F1 and an LLM judge.

Pipeline: QA items -> prompts -> completions (LLM client) -> predictions.jsonl (one line each, appended
as they finish) -> scores -> report.json / report.md. A re-run skips questions already answered.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from .cache import ResponseCache, default_cache_path
from .errors import RealtalkError
from .fileio import read_jsonl, read_toml, write_jsonl
from .formats import chat_paths, load_chat, read_json
from .llm import Completion, LLMClient, Prices, StopRun, dry_run_plan, resolve_model, run_jobs
from .model import Chat, Message, QAItem
from .retrieval import BM25
from .runs import command_line, fill, manifest, prompt_text, text_hash, write_reports
from .scoring import answer_f1, stemmer
from .tokens import count_tokens

ContextMode = Literal["full", "retrieval", "events"]
ANSWER_MAX_TOKENS = 32  # as the paper's script: answers are short phrases
JUDGE_MAX_TOKENS = 200


@dataclass
class ProbeOptions:
    model: str
    out: Path
    judge_model: str | None = None
    context: ContextMode = "full"
    top_k: int = 10
    concurrency: int = 8
    limit: int | None = None
    skip_adversarial: bool = False
    max_context_tokens: int = 120_000
    max_cost: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    use_cache: bool = True
    compat: str | None = None  # "official": the paper's prompt layout


@dataclass
class Item:
    chat: Chat
    chat_file: Path
    qa_index: int
    qa: QAItem
    messages: list[dict]
    retrieved: list[str] = field(default_factory=list)
    dropped_sessions: int = 0
    options: dict[str, str] | None = None  # LoCoMo adversarial two-choice question


TEMPORAL_HINT = " Use DATE of CONVERSATION to answer with an approximate date."
NOT_MENTIONED = "Not mentioned in the conversation"


def render_message(m: Message) -> str:
    """One turn as the LoCoMo/REALTALK evaluation scripts write it."""
    line = f'{m.speaker} said, "{m.clean_text}"'
    if m.blip_caption and (m.img_file or m.img_url):
        line += f"\n[shares {m.blip_caption}]"
    return line


def render_session(chat: Chat, number: int, mode: ContextMode) -> str:
    s = next(s for s in chat.sessions if s.number == number)
    if mode == "events":
        lines = [
            f"{speaker}: {e.sub_event}"
            for speaker, agent in zip(chat.speakers, ("agent_a", "agent_b"), strict=True)
            for e in s.events.get(agent, [])
            if e.sub_event
        ]
        return f"DATE: {s.date_time}\nEVENTS:\n" + "\n".join(lines)
    return f"DATE: {s.date_time}\nCONVERSATION:\n" + "\n".join(render_message(m) for m in s.messages)


def render_sessions(chat: Chat, mode: ContextMode, numbers: list[int], official: bool = False) -> str:
    """Sessions oldest first, each once; `official` mimics the paper's script instead.

    The paper's script (not published; behaviour as recorded in shared/FORMAT.md) takes every key that
    contains "session", so session N comes once for `session_N` and again for `events_session_N`, and
    it lists the sessions newest first.
    """
    if official:
        return "\n\n".join(render_session(chat, n, mode) for n in reversed(numbers) for _ in range(2))
    return "\n\n".join(render_session(chat, n, mode) for n in numbers)


def fit_sessions(chat: Chat, mode: ContextMode, model: str, budget: int, official: bool = False) -> tuple[str, int]:
    """The context, keeping the most recent sessions when the whole chat exceeds `budget` tokens."""
    numbers = [s.number for s in chat.sessions if s.messages or mode == "events"]
    text = render_sessions(chat, mode, numbers, official)
    dropped = 0
    while len(numbers) > 1 and count_tokens(text, model)[0] > budget:
        numbers = numbers[1:]
        dropped += 1
        text = render_sessions(chat, mode, numbers, official)
    return text, dropped


def retrieval_context(chat: Chat, question: str, k: int, index: BM25) -> tuple[str, list[str]]:
    messages = list(chat.messages())
    top = sorted(index.top(question, k))  # chronological order
    dates = {s.number: s.date_time for s in chat.sessions}
    lines = [f"{dates[messages[i].session]}: {render_message(messages[i])}" for i in top]
    return "\n".join(lines), [messages[i].dia_id for i in top]


def adversarial_options(qa: QAItem) -> dict[str, str]:
    """LoCoMo's two-choice question; the order is drawn from the question's hash, so runs repeat."""
    first = int(hashlib.sha256(qa.question.encode()).hexdigest(), 16) % 2 == 0
    return {"a": NOT_MENTIONED, "b": qa.gold} if first else {"a": qa.gold, "b": NOT_MENTIONED}


def pick_option(reply: str, options: dict[str, str]) -> str:
    """LoCoMo's reading of a two-choice reply: 'a', '(a)' ... map to the option's text."""
    text = reply.strip().lower()
    if len(text) == 1:
        return options["a"] if "a" in text else options["b"]
    if len(text) == 3:
        return options["a"] if "(a)" in text else options["b"]
    return text


@dataclass
class Templates:
    answer: str
    adversarial: str
    judge: str

    @classmethod
    def load(cls) -> Templates:
        return cls(
            prompt_text("probe_answer.txt"), prompt_text("probe_adversarial.txt"), prompt_text("probe_judge.txt")
        )

    def hashes(self) -> dict[str, str]:
        return {
            "probe_answer.txt": text_hash(self.answer),
            "probe_adversarial.txt": text_hash(self.adversarial),
            "probe_judge.txt": text_hash(self.judge),
        }


def build_items(files: list[Path], opts: ProbeOptions, templates: Templates, model_name: str) -> list[Item]:
    items: list[Item] = []
    for path in chat_paths(files):
        chat = load_chat(path)
        full_context, dropped = ("", 0)
        if opts.context in ("full", "events"):
            full_context, dropped = fit_sessions(
                chat, opts.context, model_name, opts.max_context_tokens, official=opts.compat == "official"
            )
        index = None
        if opts.context == "retrieval":
            index = BM25([m.clean_text + " " + (m.blip_caption or "") for m in chat.messages()])
        for i, qa in enumerate(chat.qa):
            adversarial = chat.dataset == "locomo" and qa.category == 5
            if adversarial and opts.skip_adversarial:
                continue
            retrieved: list[str] = []
            context = full_context
            if index is not None:
                context, retrieved = retrieval_context(chat, qa.question, opts.top_k, index)
            values = {"speaker_1": chat.speaker_1, "speaker_2": chat.speaker_2, "context": context}
            options = None
            if adversarial:
                options = adversarial_options(qa)
                prompt = fill(
                    templates.adversarial, **values, question=qa.question, option_a=options["a"], option_b=options["b"]
                )
            else:
                question = qa.question + (TEMPORAL_HINT if qa.category == 2 else "")
                prompt = fill(templates.answer, **values, question=question)
            items.append(Item(chat, path, i, qa, [{"role": "user", "content": prompt}], retrieved, dropped, options))
            if opts.limit is not None and len(items) >= opts.limit:
                return items
    return items


# --- predictions file --------------------------------------------------------------------------


def _key(chat: str, qa_index: int) -> tuple[str, int]:
    return (chat, qa_index)


def parse_judge_score(text: str) -> float | None:
    """A score in [0, 1] from the judge's reply, tolerating code fences, trailing commas and prose."""
    match = re.search(r"\{.*\}", text, re.S)
    if match:
        blob = re.sub(r",\s*([}\]])", r"\1", match.group(0))
        try:
            value = json.loads(blob).get("score")
            if isinstance(value, (int, float)):
                return min(1.0, max(0.0, float(value)))
        except (json.JSONDecodeError, AttributeError):
            pass
        number = re.search(r'"?score"?\s*[:=]\s*([0-9.]+)', match.group(0))
        if number:
            return min(1.0, max(0.0, float(number.group(1))))
    number = re.fullmatch(r"\s*([01](?:\.\d+)?)\s*", text)
    return float(number.group(1)) if number else None


# --- the run -----------------------------------------------------------------------------------


def load_run_config(path: Path) -> dict:
    """A probe run written down as TOML: `chats = [...]` plus any ProbeOptions field."""
    conf = read_toml(path)
    known = set(ProbeOptions.__dataclass_fields__) | {"chats", "fail_under"}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise RealtalkError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    return conf


def probe_settings(config: Path | None, given: dict) -> tuple[list[Path], ProbeOptions, float | None]:
    """Options from the --config file, overridden by the flags given (None = not given)."""
    settings = load_run_config(config) if config else {}
    settings.update({k: v for k, v in given.items() if v is not None})
    files = [Path(p) for p in settings.pop("chats", None) or []]
    fail_under = settings.pop("fail_under", None)
    if not files:
        raise RealtalkError("no chats given (as arguments or `chats = [...]` in --config)")
    for required in ("model", "out"):
        if not settings.get(required):
            raise RealtalkError(f"--{required} is required (or `{required} = ...` in --config)")
    if settings.get("context", "full") not in ("full", "retrieval", "events"):
        raise RealtalkError(f"--context {settings['context']!r}: choose full, retrieval or events")
    if settings.get("compat") not in (None, "official"):
        raise RealtalkError(f"--compat {settings['compat']!r}: the only layout is 'official'")
    return files, ProbeOptions(**{**settings, "out": Path(settings["out"])}), fail_under


def judge_messages(template: str, row: dict) -> list[dict]:
    prompt = fill(template, question=row["question"], gold=row["answer"], prediction=row["prediction"])
    return [{"role": "user", "content": prompt}]


def apply_judgement(row: dict, c: Completion, judge: LLMClient) -> None:
    """The judge's score (None when its reply holds none), cost and model on a predictions row."""
    row["judge_score"] = parse_judge_score(c.text) if c.error is None else None
    row["judge_cost_usd"] = c.usage.cost_usd
    row["judge_model"] = judge.endpoint.label


def run_probe(files: list[Path], opts: ProbeOptions, dry_run: bool = False, progress=None) -> dict:
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    judge_endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env) if opts.judge_model else None
    templates = Templates.load()
    items = build_items(files, opts, templates, endpoint.model)
    prices = Prices.load()
    pred_path = opts.out / "predictions.jsonl"
    done = {_key(r["chat"], r["qa_index"]) for r in read_jsonl(pred_path) if r.get("error") is None}
    todo = [it for it in items if _key(it.chat.name, it.qa_index) not in done]

    if dry_run:
        requests = [it.messages for it in todo]
        return dry_run_plan(endpoint, prices, requests, len(items) - len(todo), "question", ANSWER_MAX_TOKENS)

    opts.out.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(default_cache_path()) if opts.use_cache else None
    client = LLMClient(endpoint, concurrency=opts.concurrency, cache=cache, prices=prices)
    judge = (
        LLMClient(judge_endpoint, concurrency=opts.concurrency, cache=cache, prices=prices) if judge_endpoint else None
    )
    stemmer()  # import NLTK now: inside the event loop its ~2 s import would stall every request in flight
    started = time.perf_counter()
    with open(pred_path, "ab") as sink:

        async def finish(item: Item, c: Completion) -> None:
            row = prediction_row(item, c, endpoint.label)
            if judge is not None and c.error is None:
                verdict = await judge.complete(judge_messages(templates.judge, row), max_tokens=JUDGE_MAX_TOKENS)
                apply_judgement(row, verdict, judge)
            sink.write(orjson.dumps(row) + b"\n")
            sink.flush()
            if progress:
                progress(row, client.totals)
            spent = client.totals.cost_usd + (judge.totals.cost_usd if judge else 0.0)
            if opts.max_cost is not None and spent >= opts.max_cost:
                raise StopRun()

        jobs = [(it, it.messages) for it in todo]
        stopped_for_cost = run_jobs(client, jobs, finish, max_tokens=ANSWER_MAX_TOKENS, also_close=[judge])
    rows = read_jsonl(pred_path)
    report = build_report(rows, probe_manifest(opts, endpoint.label, files, templates.hashes()))
    report["run"] = {
        "wall_time_s": round(time.perf_counter() - started, 3),
        "requests": client.totals.requests,
        "cached": client.totals.cached,
        "retries": client.totals.retries + (judge.totals.retries if judge else 0),
        "errors": client.totals.errors,
        "stopped_for_max_cost": stopped_for_cost,
        "dropped_sessions": max((it.dropped_sessions for it in items), default=0),
    }
    write_reports(opts.out, report, report_markdown(report))
    return report


def rescore(
    run_dir: Path,
    judge_model: str | None,
    concurrency: int = 8,
    base_url: str | None = None,
    api_key_env: str | None = None,
    use_cache: bool = True,
    progress=None,
) -> dict:
    """Score saved predictions again (F1, and the judge when given) without asking the answering model."""
    pred_path = run_dir / "predictions.jsonl"
    if not pred_path.exists():
        raise RealtalkError(f"{pred_path}: no such file (is {run_dir} a probe run directory?)")
    report_path = run_dir / "report.json"
    old_report = read_json(report_path) if report_path.exists() else {}
    rows = read_jsonl(pred_path)
    templates = Templates.load()
    judge = None
    if judge_model:
        cache = ResponseCache(default_cache_path()) if use_cache else None
        endpoint = resolve_model(judge_model, base_url, api_key_env)
        judge = LLMClient(endpoint, concurrency=concurrency, cache=cache, prices=Prices.load())

    answered = [r for r in rows if r.get("error") is None]
    for r in answered:
        r["f1"] = score_prediction(r)
    if judge is not None:
        jobs = [(r, judge_messages(templates.judge, r)) for r in answered]

        def judged(row: dict, c: Completion) -> None:
            apply_judgement(row, c, judge)
            if progress:
                progress(row, judge.totals)

        run_jobs(judge, jobs, judged, max_tokens=JUDGE_MAX_TOKENS)
    write_jsonl(pred_path, rows)
    m = old_report.get("manifest", {})
    m["judge_model"] = judge.endpoint.label if judge else m.get("judge_model")
    m["prompts"] = {**m.get("prompts", {}), "probe_judge.txt": text_hash(templates.judge)}
    m["rescored_with"] = command_line()
    report = build_report(rows, m)
    report["run"] = old_report.get("run", {})
    write_reports(run_dir, report, report_markdown(report))
    return report


def score_prediction(row: dict) -> float:
    return answer_f1(row["prediction"], row["answer"], row["category"], row["dataset"])


def prediction_row(item: Item, c: Completion, model: str) -> dict:
    qa = item.qa
    prediction = pick_option(c.text, item.options) if item.options else c.text.strip()
    row = {
        "chat": item.chat.name,
        "dataset": item.chat.dataset,
        "qa_index": item.qa_index,
        "question": qa.question,
        "answer": qa.gold,
        "category": qa.category,
        "category_name": qa.category_name,
        "evidence": qa.evidence,
        "prediction": prediction,
        "raw_prediction": c.text,
        "f1": None,
        "judge_score": None,
        "judge_model": None,
        "model": model,
        **c.usage.as_row(),
        "error": c.error,
    }
    if c.error is None:
        row["f1"] = score_prediction(row)
    if item.retrieved:
        evidence = [e.strip() for e in qa.evidence if e.strip()]
        row["retrieved"] = item.retrieved
        row["recall_at_k"] = sum(e in item.retrieved for e in evidence) / len(evidence) if evidence else None
    return row


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _stats(rows: list[dict]) -> dict:
    out = {"count": len(rows), "f1": _mean([r["f1"] for r in rows]), "judge": _mean([r["judge_score"] for r in rows])}
    if any("recall_at_k" in r for r in rows):
        out["recall_at_k"] = _mean([r.get("recall_at_k") for r in rows])
    return out


def _summary(rows: list[dict]) -> dict:
    by_category: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["category"]):
        by_category.setdefault(f"{r['category']} {r['category_name']}", []).append(r)
    # LoCoMo's adversarial items are scored by their own rule and reported apart from the overall mean.
    answered = [r for r in rows if not (r["dataset"] == "locomo" and r["category"] == 5)]
    return {
        "overall": _stats(answered),
        "categories": {k: _stats(v) for k, v in by_category.items()},
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cost_usd": round(sum(r["cost_usd"] + (r.get("judge_cost_usd") or 0.0) for r in rows), 6),
    }


def build_report(rows: list[dict], manifest: dict) -> dict:
    ok = [r for r in rows if r.get("error") is None]
    return {
        "overall": _summary(ok),
        "chats": {c: _summary([r for r in ok if r["chat"] == c]) for c in sorted({r["chat"] for r in ok})},
        "failed_questions": len(rows) - len(ok),
        "manifest": manifest,
    }


def probe_manifest(opts: ProbeOptions, model: str, files: list[Path], prompts: dict) -> dict:
    judge = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env).label if opts.judge_model else None
    return manifest(opts, files, model=model, judge_model=judge, prompts=prompts)


def report_markdown(report: dict) -> str:
    m = report["manifest"]
    lines = [
        "# realtalk probe report",
        "",
        f"- model: `{m.get('model')}`",
        f"- judge: `{m.get('judge_model') or 'none'}`",
        f"- context: {m.get('parameters', {}).get('context')}",
        f"- prompts: {m.get('prompts')}",
        "",
        "| chat | category | count | F1 | judge |",
        "|---|---|---:|---:|---:|",
    ]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for name, summary in [("all", report["overall"]), *report["chats"].items()]:
        for category, st in summary["categories"].items():
            lines.append(f"| {name} | {category} | {st['count']} | {fmt(st['f1'])} | {fmt(st['judge'])} |")
        o = summary["overall"]
        lines.append(f"| **{name}** | **overall** | {o['count']} | {fmt(o['f1'])} | {fmt(o['judge'])} |")
    o = report["overall"]
    lines += [
        "",
        f"Tokens: {o['prompt_tokens']} prompt, {o['completion_tokens']} completion; cost ${o['cost_usd']:.4f}.",
    ]
    if report.get("run"):
        r = report["run"]
        lines.append(
            f"Wall time {r['wall_time_s']} s, {r['requests']} requests ({r['cached']} cached), {r['retries']} retries."
        )
    if report["failed_questions"]:
        lines.append(f"{report['failed_questions']} questions failed; running the same command again retries them.")
    return "\n".join(lines) + "\n"
