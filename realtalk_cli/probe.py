"""Memory probing: a model answers questions about a whole chat; scored by token F1 and an LLM judge.

Pipeline: QA items -> prompts -> completions (LLM client) -> predictions.jsonl (one line each, appended
as they finish) -> scores -> report.json / report.md. A re-run skips questions already answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from . import __version__
from .cache import ResponseCache, default_cache_path
from .errors import RealtalkError
from .fileio import write_atomic
from .formats import chat_paths, load_chat
from .llm import Completion, LLMClient, Prices, config_dir, resolve_model, run_all
from .model import Chat, Message, QAItem
from .retrieval import BM25
from .scoring import answer_f1
from .tokens import count_tokens

ContextMode = Literal["full", "retrieval", "events"]


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


@dataclass
class Item:
    chat: Chat
    chat_file: Path
    qa_index: int
    qa: QAItem
    messages: list[dict]
    retrieved: list[str] = field(default_factory=list)
    dropped_sessions: int = 0


def prompt_text(name: str) -> str:
    path = config_dir() / "prompts" / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such prompt file") from None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def fill(template: str, **values: str) -> str:
    # str.format would choke on braces in chat text and in the judge's JSON example.
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def render_message(m: Message) -> str:
    line = f'{m.speaker} said, "{m.clean_text}"'
    if m.blip_caption:
        line += f" and shared {m.blip_caption}."
    return line


def render_sessions(chat: Chat, mode: ContextMode, numbers: list[int]) -> str:
    parts = []
    for s in chat.sessions:
        if s.number not in numbers:
            continue
        if mode == "events":
            lines = [
                f"{speaker}: {e.sub_event}"
                for speaker, agent in zip(chat.speakers, ("agent_a", "agent_b"), strict=False)
                for e in s.events.get(agent, [])
                if e.sub_event
            ]
            parts.append(f"DATE: {s.date_time}\nEVENTS:\n" + "\n".join(lines))
        else:
            parts.append(f"DATE: {s.date_time}\nCONVERSATION:\n" + "\n".join(render_message(m) for m in s.messages))
    return "\n\n".join(parts)


def fit_sessions(chat: Chat, mode: ContextMode, model: str, budget: int) -> tuple[str, int]:
    """The context, keeping the most recent sessions when the whole chat exceeds `budget` tokens."""
    numbers = [s.number for s in chat.sessions]
    text = render_sessions(chat, mode, numbers)
    dropped = 0
    while len(numbers) > 1 and count_tokens(text, model)[0] > budget:
        numbers = numbers[1:]
        dropped += 1
        text = render_sessions(chat, mode, numbers)
    return text, dropped


def retrieval_context(chat: Chat, question: str, k: int, index: BM25) -> tuple[str, list[str]]:
    messages = list(chat.messages())
    top = sorted(index.top(question, k))  # chronological order
    dates = {s.number: s.date_time for s in chat.sessions}
    lines = [f"[{dates[messages[i].session]}] {render_message(messages[i])}" for i in top]
    return "\n".join(lines), [messages[i].dia_id for i in top]


def build_items(files: list[Path], opts: ProbeOptions, template: str, model_name: str) -> list[Item]:
    items: list[Item] = []
    for path in chat_paths(files):
        chat = load_chat(path)
        full_context, dropped = ("", 0)
        if opts.context in ("full", "events"):
            full_context, dropped = fit_sessions(chat, opts.context, model_name, opts.max_context_tokens)
        index = (
            BM25([m.clean_text + " " + (m.blip_caption or "") for m in chat.messages()])
            if opts.context == "retrieval"
            else None
        )
        for i, qa in enumerate(chat.qa):
            if opts.skip_adversarial and chat.dataset == "locomo" and qa.category == 5:
                continue
            retrieved: list[str] = []
            context = full_context
            if index is not None:
                context, retrieved = retrieval_context(chat, qa.question, opts.top_k, index)
            prompt = fill(
                template, speaker_1=chat.speaker_1, speaker_2=chat.speaker_2, context=context, question=qa.question
            )
            items.append(Item(chat, path, i, qa, [{"role": "user", "content": prompt}], retrieved, dropped))
            if opts.limit is not None and len(items) >= opts.limit:
                return items
    return items


# --- predictions file --------------------------------------------------------------------------


def read_predictions(path: Path) -> list[dict]:
    """Complete lines only: a torn last line (a killed run) is ignored and cut off before appending."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    if good_end < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    rows = []
    for n, line in enumerate(raw[:good_end].splitlines(), start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise RealtalkError(f"{path}: line {n}: not valid JSON") from None
    return rows


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


def run_probe(files: list[Path], opts: ProbeOptions, dry_run: bool = False, progress=None) -> dict:
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    judge_endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env) if opts.judge_model else None
    template, judge_template = prompt_text("probe_answer.txt"), prompt_text("probe_judge.txt")
    items = build_items(files, opts, template, endpoint.model)
    prices = Prices.load()
    pred_path = opts.out / "predictions.jsonl"
    done = {_key(r["chat"], r["qa_index"]): r for r in read_predictions(pred_path) if r.get("error") is None}
    todo = [it for it in items if _key(it.chat.name, it.qa_index) not in done]

    estimate_tokens = sum(count_tokens(it.messages[0]["content"], endpoint.model)[0] for it in todo)
    estimate_cost = prices.cost(endpoint.model, estimate_tokens, 32 * len(todo))
    if dry_run:
        return {
            "requests": len(todo),
            "already_done": len(items) - len(todo),
            "prompt_tokens": estimate_tokens,
            "estimated_cost_usd": round(estimate_cost, 4),
            "priced": prices.known(endpoint.model),
            "model": endpoint.label,
        }

    opts.out.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(default_cache_path()) if opts.use_cache else None
    client = LLMClient(endpoint, concurrency=opts.concurrency, cache=cache, prices=prices)
    judge = (
        LLMClient(judge_endpoint, concurrency=opts.concurrency, cache=cache, prices=prices) if judge_endpoint else None
    )
    started = time.perf_counter()
    stopped_for_cost = False

    with open(pred_path, "ab") as sink:

        async def finish(item: Item, c: Completion) -> None:
            nonlocal stopped_for_cost
            judge_score, judge_usage = None, None
            if judge is not None and c.error is None:
                jc = await judge.complete(
                    [
                        {
                            "role": "user",
                            "content": fill(
                                judge_template, question=item.qa.question, gold=item.qa.gold, prediction=c.text
                            ),
                        }
                    ],
                    max_tokens=200,
                )
                judge_score, judge_usage = parse_judge_score(jc.text), jc.usage
            row = prediction_row(item, c, endpoint.label, judge_score, judge_endpoint.label if judge_endpoint else None)
            if judge_usage is not None:
                row["judge_cost_usd"] = judge_usage.cost_usd
            sink.write(orjson.dumps(row) + b"\n")
            sink.flush()
            if progress:
                progress(row, client.totals)
            spent = client.totals.cost_usd + (judge.totals.cost_usd if judge else 0.0)
            if opts.max_cost is not None and spent >= opts.max_cost:
                stopped_for_cost = True
                raise _StopRun()

        async def main() -> None:
            try:
                await run_all(client, [(it, it.messages) for it in todo], finish, max_tokens=64)
            except _StopRun:
                pass
            finally:
                await client.aclose()
                if judge:
                    await judge.aclose()

        asyncio.run(main())
    wall = time.perf_counter() - started
    rows = read_predictions(pred_path)
    report = build_report(
        rows,
        opts,
        endpoint.label,
        judge_endpoint.label if judge_endpoint else None,
        files,
        {"probe_answer.txt": text_hash(template), "probe_judge.txt": text_hash(judge_template)},
    )
    report["run"] = {
        "wall_time_s": round(wall, 3),
        "requests": client.totals.requests,
        "cached": client.totals.cached,
        "retries": client.totals.retries + (judge.totals.retries if judge else 0),
        "errors": client.totals.errors,
        "stopped_for_max_cost": stopped_for_cost,
        "dropped_sessions": max((it.dropped_sessions for it in items), default=0),
    }
    write_atomic(opts.out / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    write_atomic(opts.out / "report.md", report_markdown(report))
    if cache:
        cache.close()
    return report


class _StopRun(Exception):
    pass


def prediction_row(item: Item, c: Completion, model: str, judge_score: float | None, judge_model: str | None) -> dict:
    qa = item.qa
    f1 = answer_f1(c.text, qa.gold, qa.category, item.chat.dataset) if c.error is None else None
    row = {
        "chat": item.chat.name,
        "dataset": item.chat.dataset,
        "qa_index": item.qa_index,
        "question": qa.question,
        "answer": qa.gold,
        "category": qa.category,
        "category_name": qa.category_name,
        "evidence": qa.evidence,
        "prediction": c.text,
        "f1": f1,
        "judge_score": judge_score,
        "judge_model": judge_model,
        "model": model,
        "prompt_tokens": c.usage.prompt_tokens,
        "completion_tokens": c.usage.completion_tokens,
        "cost_usd": c.usage.cost_usd,
        "latency_s": round(c.usage.latency_s, 4),
        "retries": c.usage.retries,
        "cached": c.usage.cached,
        "error": c.error,
    }
    if item.retrieved:
        evidence = [e for e in qa.evidence if e.strip()]
        hit = sum(e.strip() in item.retrieved for e in evidence)
        row["retrieved"] = item.retrieved
        row["recall_at_k"] = hit / len(evidence) if evidence else None
    return row


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _summary(rows: list[dict]) -> dict:
    by_cat: dict[str, list[dict]] = {}
    for r in rows:
        by_cat.setdefault(f"{r['category']} {r['category_name']}", []).append(r)

    def stats(rs: list[dict]) -> dict:
        out = {"count": len(rs), "f1": _mean([r["f1"] for r in rs]), "judge": _mean([r["judge_score"] for r in rs])}
        if any("recall_at_k" in r for r in rs):
            out["recall_at_k"] = _mean([r.get("recall_at_k") for r in rs])
        return out

    answered = [r for r in rows if not (r["dataset"] == "locomo" and r["category"] == 5)]
    return {
        "overall": stats(answered),
        "categories": {k: stats(v) for k, v in sorted(by_cat.items())},
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cost_usd": round(sum(r["cost_usd"] + r.get("judge_cost_usd", 0.0) for r in rows), 6),
    }


def build_report(
    rows: list[dict], opts: ProbeOptions, model: str, judge: str | None, files: list[Path], prompts: dict
) -> dict:
    ok = [r for r in rows if r.get("error") is None]
    chats = sorted({r["chat"] for r in ok})
    return {
        "overall": _summary(ok),
        "chats": {c: _summary([r for r in ok if r["chat"] == c]) for c in chats},
        "failed_questions": len(rows) - len(ok),
        "manifest": manifest(opts, model, judge, files, prompts),
    }


def manifest(opts: ProbeOptions, model: str, judge: str | None, files: list[Path], prompts: dict) -> dict:
    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "realtalk_version": __version__,
        "git_commit": commit,
        "model": model,
        "judge_model": judge,
        "prompts": prompts,
        "datasets": {str(p): sha(p) for p in chat_paths(files)},
        "parameters": {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items() if k not in ("api_key_env",)
        },
        "command": " ".join(["realtalk", *sys.argv[1:]]) if sys.argv else "",
    }


def report_markdown(report: dict) -> str:
    lines = ["# realtalk probe report", ""]
    m = report["manifest"]
    lines += [
        f"- model: `{m['model']}`",
        f"- judge: `{m['judge_model'] or 'none'}`",
        f"- context: {m['parameters']['context']}",
        f"- prompts: {m['prompts']}",
        "",
    ]
    lines += ["| chat | category | count | F1 | judge |", "|---|---|---:|---:|---:|"]

    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    for name, summary in [("all", report["overall"]), *report["chats"].items()]:
        for cat, s in summary["categories"].items():
            lines.append(f"| {name} | {cat} | {s['count']} | {fmt(s['f1'])} | {fmt(s['judge'])} |")
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
    return "\n".join(lines) + "\n"
