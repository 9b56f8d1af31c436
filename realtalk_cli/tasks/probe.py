"""Memory probing: a model answers questions about a whole chat; scored by token F1 and an LLM judge.

Pipeline: QA items -> prompts -> completions (LLM client) -> predictions.jsonl (one line each, appended
as they finish) -> scores -> report.json / report.md. A re-run skips questions already answered.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from realtalk_cli.data.evidence import evidence_recall, resolve_evidence
from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_jsonl, read_toml, write_jsonl
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient, StopRun, dry_run_plan, run_jobs
from realtalk_cli.llm.providers import Prices, resolve_model
from realtalk_cli.llm.scheduler import ANSWER, JUDGE, Limiter
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks import paper_protocol
from realtalk_cli.tasks.probe_prompts import NOT_MENTIONED, ContextMode, Item, Templates, build_items, pick_option
from realtalk_cli.tasks.probe_report import build_report, report_markdown
from realtalk_cli.tasks.runs import command_line, fill, manifest, text_hash, write_reports
from realtalk_cli.tasks.scoring import answer_f1, date_normalised_f1

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
    compat: str | None = None  # "paper" / "paper-once": the paper's protocol (paper_protocol.py); None: ours


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
    settings["compat"] = paper_protocol.compat_mode(settings.get("compat"))
    if settings["compat"] and settings.get("context", "full") != "full":
        raise RealtalkError(f"--compat {settings['compat']} builds the paper's whole-chat context; drop --context")
    return files, ProbeOptions(**{**settings, "out": Path(settings["out"])}), fail_under


def judge_gold(row: dict) -> str:
    """What the judge compares against: for LoCoMo's adversarial items the right answer is 'not mentioned'."""
    return NOT_MENTIONED if "adversarial_answer" in row else row["answer"]


def _context_group(item: Item) -> str | None:
    """A chat's questions that share its context are sent together: the first alone, then the rest."""
    return str(item.chat_file) if item.shares_context else None


def estimate_cached_tokens(items: list[Item], model: str) -> list[int]:
    """Per request, the prompt tokens a provider's prefix cache would likely serve: the shared prefix for every
    question but a chat's first, in 128-token steps from 1,024 tokens (OpenAI's rule). An estimate."""
    seen: dict[str, int] = {}
    estimates = []
    for it in items:
        group = _context_group(it)
        if group is None:
            estimates.append(0)
        elif group not in seen:
            n = count_tokens(it.prefix(), model)[0]
            seen[group] = n // 128 * 128 if n >= 1024 else 0
            estimates.append(0)
        else:
            estimates.append(seen[group])
    return estimates


def judge_messages(template: str, row: dict) -> list[dict]:
    prompt = fill(template, question=row["question"], gold=judge_gold(row), prediction=row["prediction"])
    return [{"role": "user", "content": prompt}]


def apply_judgement(row: dict, c: Completion, judge: LLMClient) -> None:
    """The judge's score (None when its reply holds none), cost and model on a predictions row."""
    row["judge_score"] = parse_judge_score(c.text) if c.error is None else None
    row["judge_cost_usd"] = c.usage.cost_usd
    row["judge_model"] = judge.endpoint.label


async def judge_row(judge: LLMClient, row: dict, template: str, paper: bool, first: Completion | None = None) -> None:
    """Grade one answered row: our judge prompt, or the paper's (JSON mode, re-asked on invalid JSON)."""
    if not paper:
        c = first or await judge.complete(judge_messages(template, row), max_tokens=JUDGE_MAX_TOKENS)
        apply_judgement(row, c, judge)
        return
    cost = 0.0
    for attempt in range(paper_protocol.JUDGE_ATTEMPTS):
        c = (
            first
            if attempt == 0 and first is not None
            else await judge.complete(paper_judge_messages(row), **PAPER_JUDGE)
        )
        cost += c.usage.cost_usd
        if c.error is None and paper_protocol.judge_reply_is_json(c.text):
            break
    row["judge_score"] = paper_protocol.parse_judge(c.text) if c.error is None else None
    row["judge_cost_usd"] = cost
    row["judge_model"] = judge.endpoint.label


# The paper's requests carry no sampling parameters; its judge asks for JSON and nothing else.
PAPER_ANSWER = {"temperature": None, "max_tokens": None}
PAPER_JUDGE = {**PAPER_ANSWER, "response_format": {"type": "json_object"}}


def paper_judge_messages(row: dict) -> list[dict]:
    content = paper_protocol.judge_prompt(row["question"], row.get("answer", ""), row["prediction"])
    return [{"role": "user", "content": content}]


def run_probe(files: list[Path], opts: ProbeOptions, dry_run: bool = False, progress=None) -> dict:
    endpoint = resolve_model(opts.model, opts.base_url, opts.api_key_env)
    judge_endpoint = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env) if opts.judge_model else None
    paper = opts.compat is not None
    if paper and judge_endpoint is None and not endpoint.offline:
        judge_endpoint = endpoint  # the paper's script grades with the answering model
    templates = Templates.load()
    if paper:
        items = paper_protocol.build_items(files, opts.compat, opts.limit)
    else:
        items = build_items(files, opts, templates, endpoint.model)
    prices = Prices.load()
    pred_path = opts.out / "predictions.jsonl"
    rows = read_jsonl(pred_path)  # read once: the report is built from these and the new rows
    done = {_key(r["chat"], r["qa_index"]) for r in rows if r.get("error") is None}
    todo = [it for it in items if _key(it.chat.name, it.qa_index) not in done]

    if dry_run:
        requests = [it.messages for it in todo]
        plan = dry_run_plan(
            endpoint,
            prices,
            requests,
            len(items) - len(todo),
            "question",
            ANSWER_MAX_TOKENS,
            cached_tokens=estimate_cached_tokens(todo, endpoint.model),
        )
        return plan

    opts.out.mkdir(parents=True, exist_ok=True)
    cache = open_cache(opts.use_cache)
    limiter = Limiter(opts.concurrency)  # --concurrency counts answer and judge requests together
    client = LLMClient(endpoint, cache=cache, prices=prices, limiter=limiter, priority=ANSWER)
    # The paper's judge is re-asked on invalid JSON: a cached reply would only repeat itself.
    judge_cache = None if paper else cache
    judge = (
        LLMClient(
            judge_endpoint,
            cache=judge_cache,
            prices=prices,
            limiter=limiter,
            priority=JUDGE,
            share_connections_with=client,
        )
        if judge_endpoint
        else None
    )
    started = time.perf_counter()
    with open(pred_path, "ab") as sink:

        async def finish(item: Item, c: Completion) -> None:
            row = prediction_row(item, c, endpoint.label, raw=paper)
            if judge is not None and c.error is None:
                await judge_row(judge, row, templates.judge, paper)
            sink.write(orjson.dumps(row) + b"\n")
            sink.flush()
            rows.append(row)
            if progress:
                progress(row, client.totals)
            spent = client.totals.cost_usd + (judge.totals.cost_usd if judge else 0.0)
            if opts.max_cost is not None and spent >= opts.max_cost:
                raise StopRun()

        jobs = [(it, lambda it=it: it.messages) for it in todo]
        request = PAPER_ANSWER if paper else {"max_tokens": ANSWER_MAX_TOKENS}
        stopped_for_cost = run_jobs(client, jobs, finish, also_close=[judge], group_of=_context_group, **request)
    m = probe_manifest(opts, endpoint.label, files, paper_protocol.prompt_hashes() if paper else templates.hashes())
    if paper:
        m["judge_model"] = judge.endpoint.label if judge else None
        m["protocol"] = paper_protocol.describe(
            opts.compat, m["judge_model"], endpoint.label, judge_given=opts.judge_model is not None
        )
    report = build_report(rows, m)
    report["run"] = {
        "wall_time_s": round(time.perf_counter() - started, 3),
        "requests": client.totals.requests,
        "cached": client.totals.cached,
        "cached_tokens": client.totals.cached_tokens + (judge.totals.cached_tokens if judge else 0),
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
    protocol = old_report.get("manifest", {}).get("protocol")
    paper = protocol is not None  # a --compat paper run is judged with the paper's prompt again
    judge = None
    if judge_model:
        cache = None if paper else open_cache(use_cache)
        endpoint = resolve_model(judge_model, base_url, api_key_env)
        judge = LLMClient(endpoint, concurrency=concurrency, cache=cache, prices=Prices.load())

    answered = [r for r in rows if r.get("error") is None]
    for r in answered:
        score_row(r)
    if judge is not None:
        jobs = [(r, paper_judge_messages(r) if paper else judge_messages(templates.judge, r)) for r in answered]

        async def judged(row: dict, c: Completion) -> None:
            await judge_row(judge, row, templates.judge, paper, first=c)
            if progress:
                progress(row, judge.totals)

        request = PAPER_JUDGE if paper else {"max_tokens": JUDGE_MAX_TOKENS}
        run_jobs(judge, jobs, judged, **request)
    write_jsonl(pred_path, rows)
    m = old_report.get("manifest", {})
    m["judge_model"] = judge.endpoint.label if judge else m.get("judge_model")
    if paper and judge is not None:
        protocol["judge"] = f"{judge.endpoint.label} (probe rescore --judge-model)"
    elif judge is not None:
        m["prompts"] = {**m.get("prompts", {}), "probe_judge.txt": text_hash(templates.judge)}
    m["rescored_with"] = command_line()
    report = build_report(rows, m)
    report["run"] = old_report.get("run", {})
    write_reports(run_dir, report, report_markdown(report))
    return report


def score_row(row: dict) -> None:
    """The paper's F1 and the date-normalised F1 of an answered predictions row."""
    gold = row.get("answer", row.get("adversarial_answer")) or ""
    args = (row["prediction"], gold, row["category"], row["dataset"])
    row["f1"] = answer_f1(*args)
    row["f1_date_normalised"] = date_normalised_f1(*args)


def prediction_row(item: Item, c: Completion, model: str, raw: bool = False) -> dict:
    """One predictions line; `raw` keeps the reply unstripped as the paper's script does."""
    qa = item.qa
    prediction = pick_option(c.text, item.options) if item.options else c.text if raw else c.text.strip()
    # LoCoMo's adversarial gold is the trap, not the answer: it keeps its own name.
    gold_field = "adversarial_answer" if item.chat.dataset == "locomo" and qa.category == 5 else "answer"
    evidence = resolve_evidence(item.chat, qa.evidence)
    row = {
        "chat": item.chat.name,
        "dataset": item.chat.dataset,
        "qa_index": item.qa_index,
        "question": qa.question,
        gold_field: qa.gold,
        "category": qa.category,
        "category_name": qa.category_name,
        "evidence": qa.evidence,
        "evidence_ids": evidence.resolved,
        "evidence_dangling": evidence.dangling,
        "prediction": prediction,
        "raw_prediction": c.text,
        "f1": None,
        "f1_date_normalised": None,
        "judge_score": None,
        "judge_model": None,
        "model": model,
        **c.usage.as_row(),
        "error": c.error,
    }
    if c.error is None:
        score_row(row)
    if item.retrieved:
        row["retrieved"] = item.retrieved
        row["recall_at_k"] = evidence_recall(evidence.resolved, item.retrieved)
    return row


def probe_manifest(opts: ProbeOptions, model: str, files: list[Path], prompts: dict) -> dict:
    judge = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env).label if opts.judge_model else None
    return manifest(opts, files, model=model, judge_model=judge, prompts=prompts)
