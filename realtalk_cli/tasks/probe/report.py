"""Memory-probing reports: per-category and per-chat means of F1, judge score and recall; report.md.

Overall figures: `overall` (= `overall_1_4`) pools every answered category but LoCoMo's adversarial
category 5; `overall_1_3` pools categories 1-3 only, as the paper's tables do (its script reports no
overall figure at all, only per-category means). Category 5 is the not-mentioned accuracy, kept apart.
LongMemEval questions get LongMemEval's own figures besides (`longmemeval`: per type, task-averaged, overall,
abstention, as its metrics script prints them; scoring/longmemeval.py), and no `overall_1_3`: their type
numbers are not categories 1-3.

Means and costs are kept exact in report.json and rounded once, where they are shown. The judge's mean is
over the rows this judge scored (`judge_count`); where that is fewer than `count` (the F1's rows), the
tables say its n.
"""

from __future__ import annotations

from realtalk_cli.data.model import category_notes
from realtalk_cli.data.text import plural
from realtalk_cli.llm.spending import usage_lines
from realtalk_cli.scoring.longmemeval import TYPES, longmemeval_metrics
from realtalk_cli.tasks.probe.errata import errata_markdown, judge_cost
from realtalk_cli.tasks.runs.results import status_lines

NOT_MENTIONED_MEASURE = "not-mentioned accuracy"
PROTOCOL_SCORES = {"f1_locomo": "F1 (LoCoMo: each item rounded to 3 places)", "f1_mem0": "F1 (mem0: token sets)"}
OVERALL_LABELS = {"overall_1_3": "overall (paper: categories 1-3)", "overall_1_4": "overall (1-4)"}


def overall_labels(summary: dict) -> dict[str, str]:
    """The overall rows a summary shows: LongMemEval questions alone have no categories 1-3 or 1-4, one overall."""
    return OVERALL_LABELS if "overall_1_3" in summary else {"overall_1_4": "overall"}


def _adversarial(row: dict) -> bool:
    return row["dataset"] == "locomo" and row["category"] == 5


def judge_cell(stats: dict) -> str:
    """The judge's mean as shown, rounded once; with its n when it covers fewer rows than the F1 beside it."""
    if stats.get("judge") is None:
        return "-"
    n = stats.get("judge_count", stats["count"])
    return f"{stats['judge']:.3f}" + (f" (n={n})" if n != stats["count"] else "")


def category_label(key: str, stats: dict) -> str:
    """How a category is shown: LoCoMo's category 5 is an accuracy, not an F1."""
    return f"{key} ({stats['measure']})" if stats.get("measure") else key


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def judge_score(row: dict, judge: tuple[str, str] | None) -> float | None:
    """The score a judge (its `protocol/model` key and model) gave the row: under `judges`, or for rows of
    earlier versions the top-level fields when that model wrote them."""
    if judge is None:
        return None
    key, label = judge
    judges = row.get("judges") if isinstance(row.get("judges"), dict) else {}
    entry = judges.get(key)
    if entry is None:  # a manifest that names the model alone: its only judge of that model
        same = [e for k, e in judges.items() if k.endswith("/" + label)]
        entry = same[0] if len(same) == 1 else None
    if isinstance(entry, dict):
        return entry.get("score")
    return row.get("judge_score") if row.get("judge_model") == label and not judges else None


def _judges(rows: list[dict]) -> dict:
    """Every judge's mean and n over these rows, keyed `protocol/model` (a run can carry several judges)."""
    keys = sorted({k for r in rows if isinstance(r.get("judges"), dict) for k in r["judges"]})
    out = {}
    for key in keys:
        scores = [e.get("score") for r in rows if isinstance(e := (r.get("judges") or {}).get(key), dict)]
        out[key] = {"mean": _mean(scores), "count": sum(v is not None for v in scores)}
    return out


def _stats(rows: list[dict], judge: tuple[str, str] | None) -> dict:
    # only this run's judge counts: rows still carrying another judge's score wait for re-judging
    verdicts = [judge_score(r, judge) for r in rows]
    out = {
        "count": len(rows),
        "f1": _mean([r["f1"] for r in rows]),
        "f1_date_normalised": _mean([r.get("f1_date_normalised") for r in rows]),
        "judge": _mean(verdicts),
        "judge_count": sum(v is not None for v in verdicts),
    }
    if any(isinstance(r.get("judges"), dict) for r in rows):
        out["judges"] = _judges(rows)
    for name in PROTOCOL_SCORES:  # another harness's own F1, beside realtalk's, never in its column
        if any(name in r for r in rows):
            out[name] = _mean([r.get(name) for r in rows])
    if any("recall_at_k" in r for r in rows):
        out["recall_at_k"] = _mean([r.get("recall_at_k") for r in rows])
    if any("recall" in r for r in rows):
        # evidence recall over the questions whose evidence resolves and whose context claims message ids
        out["recall"] = _mean([r.get("recall") for r in rows])
        out["recall_count"] = sum(r.get("recall") is not None for r in rows)
        out["context_tokens"] = _mean([r.get("context_tokens") for r in rows])
        if any("recall_claimed" in r for r in rows):
            out["recall_claimed"] = _mean([r.get("recall_claimed") for r in rows])
    return out


def _recall(rows: list[dict]) -> dict:
    """Evidence recall over all categories and over categories 1-4 (LoCoMo's adversarial 5 left out, as `overall`):
    read from the prompts' text (`found`) and from the ids the memory gave (`claimed`), with their counts."""
    out = {}
    for name, pool in (("all_categories", rows), ("categories_1_4", [r for r in rows if not _adversarial(r)])):
        found = [r["recall"] for r in pool if r.get("recall") is not None]
        claimed = [r.get("recall_claimed", r["recall"]) for r in pool if r.get("recall") is not None]
        out[name] = {"found": _mean(found), "claimed": _mean(claimed), "count": len(found)}
    return out


def _summary(rows: list[dict], judge: tuple[str, str] | None) -> dict:
    by_category: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["category"]):
        by_category.setdefault(f"{r['category']} {r['category_name']}", []).append(r)
    # LoCoMo's adversarial items are scored by their own rule and reported apart from the overall mean.
    answered = [r for r in rows if not _adversarial(r)]
    categories = {k: _stats(v, judge) for k, v in by_category.items()}
    for k, v in by_category.items():
        if _adversarial(v[0]):
            categories[k]["measure"] = NOT_MENTIONED_MEASURE
    recall = {"recall": _recall(rows)} if any("recall" in r for r in rows) else {}
    numbered = [r for r in answered if r["dataset"] != "longmemeval"]  # LongMemEval numbers types, not categories
    return {
        **recall,
        "overall": _stats(answered, judge),
        "overall_1_4": _stats(answered, judge),
        **({"overall_1_3": _stats([r for r in numbered if r["category"] in (1, 2, 3)], judge)} if numbered else {}),
        "categories": categories,
        "evidence_ids": sum(len(r.get("evidence_ids", [])) for r in rows),
        "evidence_dangling": sum(len(r.get("evidence_dangling", [])) for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cached_tokens": sum(r.get("cached_tokens", 0) for r in rows),
        "cost_usd": sum(r["cost_usd"] + (r.get("judge_cost_usd") or 0.0) + judge_cost(r) for r in rows),
        "answer_cost_usd": sum(r["cost_usd"] for r in rows),
        "judge_prompt_tokens": sum(
            (r.get("judge_prompt_tokens") or 0) + int(judge_cost(r, "judge_prompt_tokens")) for r in rows
        ),
        "judge_completion_tokens": sum(
            (r.get("judge_completion_tokens") or 0) + int(judge_cost(r, "judge_completion_tokens")) for r in rows
        ),
        "judge_cost_usd": sum((r.get("judge_cost_usd") or 0.0) + judge_cost(r) for r in rows),
    }


def build_report(rows: list[dict], manifest: dict) -> dict:
    ok = [r for r in rows if r.get("error") is None]
    label = manifest.get("judge_model")
    name = manifest.get("judge_protocol")
    judge = (f"{name}/{label}" if name else label, label) if label else None
    # A LongMemEval instance is a chat of one question: its row in predictions.jsonl is its whole summary.
    chats = sorted({r["chat"] for r in ok if r["dataset"] != "longmemeval"})
    report = {
        "overall": _summary(ok, judge),
        "chats": {c: _summary([r for r in ok if r["chat"] == c], judge) for c in chats},
        "failed_questions": len(rows) - len(ok),
        "manifest": manifest,
    }
    longmemeval = [r for r in ok if r["dataset"] == "longmemeval"]
    if longmemeval:
        report["longmemeval"] = longmemeval_metrics(
            longmemeval, judge[0] if judge else None, lambda r: judge_score(r, judge)
        )
    return report


def _protocol_lines(protocol: dict | None) -> list[str]:
    """The protocol a run followed as its manifest describes it: every choice it made, one line each."""
    if not protocol:
        return ["- protocol: realtalk's own (see README: our protocol and the paper's)"]
    details = {k: v for k, v in protocol.items() if k not in ("compat", "source")}
    return [
        f"- protocol: `--compat {protocol.get('compat')}` ({protocol.get('source')})",
        *(f"  - {k.replace('_', ' ')}: {v}" for k, v in details.items()),
    ]


def longmemeval_lines(section: dict) -> list[str]:
    """LongMemEval's figures as report.md shows them: a table in its metrics script's order."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    recall = "recall" in section["overall"]
    head = "| question type | count | judge accuracy | F1 |" + (" turn recall | session recall |" if recall else "")
    lines = [
        "",
        f"## LongMemEval ({section['source']})",
        "",
        f"Judge: `{section['judge_model'] or 'none'}` (LongMemEval's published numbers: gpt-4o-2024-08-06 with its"
        " prompts); figures rounded to 4 places as its script prints them.",
        "",
        head,
        "|---|---:|---:|---:|" + ("---:|---:|" if recall else ""),
    ]

    def row(label: str, f: dict, count: bool = True) -> str:
        cells = [str(f["count"]) if count else "", fmt(f["judge"]), fmt(f["f1"])]
        if recall:
            cells += [fmt(f.get("recall")), fmt(f.get("session_recall"))]
        return f"| {label} | " + " | ".join(cells) + " |"

    for t in TYPES:
        lines.append(row(t, section["types"][t]))
    averaged = section["task_averaged"]
    over = averaged["over"]
    label = "**task-averaged**" if averaged["all_types"] else f"**task-averaged over the {len(over)} types present**"
    lines.append(row(label, {"count": "", **averaged}, count=False))
    lines.append(row("**overall**", section["overall"]))
    lines.append(row("abstention (`_abs`)", section["abstention"]))
    if not averaged["all_types"]:
        lines += [
            "",
            f"Task-averaged over {', '.join(over) or 'no type'}: this file holds {len(over)} of LongMemEval's six"
            " types (its script averages over all six, and an empty type makes that figure NaN).",
        ]
    return lines


def report_markdown(report: dict) -> str:
    m = report["manifest"]
    lines = [
        "# realtalk probe report",
        "",
        *(f"> **{line}**\n" for line in status_lines(report)),
        f"- model: `{m.get('model')}`",
        f"- judge: `{m.get('judge_model') or 'none'}`",
        f"- context: {m.get('parameters', {}).get('context')}",
        *_protocol_lines(m.get("protocol")),
        f"- prompts: {m.get('prompts')}",
        "",
    ]
    memory = report.get("memory")
    if memory:
        lines[-1:-1] = memory_lines(memory, m.get("parameters", {}).get("context_tokens"))
        lines[-1:-1] = recall_lines(report["overall"].get("recall"))
    recall = "recall" in report["overall"]["overall"]
    lines += [
        "| chat | category | count | F1 | F1 (dates normalised) | judge |"
        + (" evidence recall | context tokens |" if recall else ""),
        "|---|---|---:|---:|---:|---:|" + ("---:|---:|" if recall else ""),
    ]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def recall_cells(st: dict) -> str:
        if not recall:
            return ""
        tokens = "-" if st.get("context_tokens") is None else f"{st['context_tokens']:.0f}"
        return f" {fmt(st.get('recall'))} | {tokens} |"

    for name, summary in [("all", report["overall"]), *report["chats"].items()]:
        for category, st in summary["categories"].items():
            cells = (st["count"], fmt(st["f1"]), fmt(st.get("f1_date_normalised")), judge_cell(st))
            lines.append(
                f"| {name} | {category_label(category, st)} | " + " | ".join(map(str, cells)) + f" |{recall_cells(st)}"
            )
        for key, label in overall_labels(summary).items():
            o = summary[key]
            cells = (o["count"], fmt(o["f1"]), fmt(o.get("f1_date_normalised")), judge_cell(o))
            lines.append(f"| **{name}** | **{label}** | " + " | ".join(map(str, cells)) + f" |{recall_cells(o)}")
    extra = [k for k in PROTOCOL_SCORES if k in report["overall"]["overall"]]
    if extra:
        lines += ["", "| chat | category | " + " | ".join(PROTOCOL_SCORES[k] for k in extra) + " |"]
        lines.append("|---|---|" + "---:|" * len(extra))
        for name, summary in [("all", report["overall"]), *report["chats"].items()]:
            for category, st in [*summary["categories"].items(), ("overall (1-4)", summary["overall"])]:
                lines.append(f"| {name} | {category} | " + " | ".join(fmt(st.get(k)) for k in extra) + " |")
    judges = report["overall"]["overall"].get("judges") or {}
    if len(judges) > 1 or (judges and m.get("judge_model") is None):
        shown = "; ".join(f"`{k}` {fmt(v['mean'])} (n={v['count']})" for k, v in judges.items())
        lines += ["", f"Every judge of this run (overall, categories 1-4): {shown}."]
    if report.get("longmemeval"):
        lines += longmemeval_lines(report["longmemeval"])
    o = report["overall"]
    datasets = {"longmemeval"} if report.get("longmemeval") else set()
    if not report.get("longmemeval") or "overall_1_3" in report["overall"]:
        datasets.add("realtalk")
    lines += [
        "",
        *category_notes(datasets),
        "F1 is the paper's token F1; the date-normalised F1 writes every date in the answer and the gold one way"
        " first (`29.12.2023` = `29 December 2023`).",
        f"Evidence ids: {o['evidence_ids']} resolve to a message, {o['evidence_dangling']} point to none"
        " (recall is computed over the resolvable ones).",
        "",
        f"Answers: {o['prompt_tokens']} prompt ({o['cached_tokens']} served from the provider's prompt cache) + "
        f"{o['completion_tokens']} completion tokens, "
        f"${o['answer_cost_usd']:.4f}.",
        f"Judge: {o['judge_prompt_tokens']} prompt + {o['judge_completion_tokens']} completion tokens, "
        f"${o['judge_cost_usd']:.4f}. Total ${o['cost_usd']:.4f}.",
    ]
    if isinstance(report.get("usage"), dict):
        lines += ["", *(line[0].upper() + line[1:] + "." for line in usage_lines(report["usage"]))]
    elif report.get("run"):
        r = report["run"]
        lines.append(
            f"Wall time {r['wall_time_s']} s, {r['requests']} requests ({r['cached']} cached), {r['retries']} retries."
        )
    if report["failed_questions"]:
        lines.append(
            f"{plural(report['failed_questions'], 'question')} failed; running the same command again retries them."
        )
    if report.get("errata"):
        lines += errata_markdown(report["errata"])
    return "\n".join(lines) + "\n"


def memory_lines(memory: dict, budget: int | None) -> list[str]:
    """What chose the context, and what ingesting cost, as report.md and the terminal show it."""
    options = ", ".join(f"{k}={v}" for k, v in memory["options"].items())
    llm = memory["ingest_llm"]
    counted = memory.get("counted_with")
    lines = [
        f"- memory: `{memory['spec']}`" + (f" ({options})" if options else "") + ", version "
        f"{memory['version'] or 'not given'}; "
        + (
            f"budget {budget} tokens per question's whole prompt (instructions + question + context), {counted}"
            if counted
            else f"budget {budget} context tokens per question"  # a run made before the budget bounded the prompt
        ),
        f"- ingestion: {memory['ingest_total_s']} s"
        + (
            f"; its own LLM requests: {llm['requests']} ({llm['prompt_tokens']} prompt + "
            f"{llm['completion_tokens']} completion tokens, ${llm['cost_usd']:.4f}), not counted as answering"
            if llm["requests"]
            else ""
        ),
    ]
    if memory.get("note"):
        lines.append(f"- note: {memory['note']}")
    if memory.get("unknown_ids"):
        examples = ", ".join(f"`{e}`" for e in memory.get("unknown_id_examples") or [])
        lines.append(
            f"- the memory returned {memory['unknown_ids']} ids that name no message (left out)"
            + (f", e.g. {examples}; ids are matched without case or spaces, like `D3:12`" if examples else "")
        )
    if memory.get("items_over_budget"):
        worst = "; ".join(
            f"{q['question']}: {q['items']} items ({q['tokens']} tokens) left out of a {q['budget']}-token context"
            for q in memory.get("most_over_budget") or []
        )
        lines.append(
            f"- {memory['items_over_budget']} recalled items (message ids or passages"
            + (f", {memory['items_over_budget_tokens']} tokens" if "items_over_budget_tokens" in memory else "")
            + ") did not fit the budget and were left out"
            + (f" on {memory['questions_over_budget']} questions" if "questions_over_budget" in memory else "")
            + " (a retriever returns its whole ranking: the rest of it counts here)"
            + (f"; most left out: {worst}" if worst else "")
        )
    if memory.get("prompts_over_limit"):
        lines.append(
            f"- {memory['prompts_over_limit']} questions' prompts exceed the budget with no context at all"
            " (instructions and question alone)"
        )
    if memory.get("recall_timeouts"):
        lines.append(
            f"- {memory['recall_timeouts']} recalls took longer than --memory-timeout: those questions failed and"
            " the same command asks them again"
        )
    if memory.get("recalls_not_asked"):
        lines.append(
            f"- {memory['recalls_not_asked']} questions failed unasked, after 3 recalls in a row on their chat took"
            " longer than --memory-timeout (the same command asks them again)"
        )
    lines.append(
        "- evidence recall: share of a question's resolvable evidence messages whose text is in the prompt (shown,"
        " or held by a passage); `claimed`: counted from the ids the memory gave instead"
    )
    return lines


def recall_lines(recall: dict | None) -> list[str]:
    """Overall evidence recall, labelled by the categories it pools, found in the prompt and claimed; a claim that
    the prompt's text does not bear out is marked."""
    if not recall or recall["all_categories"]["count"] == 0:
        return []

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = []
    for key, label in (("categories_1_4", "categories 1-4"), ("all_categories", "all categories")):
        r = recall[key]
        mark = ""
        if r["claimed"] is not None and r["found"] is not None and abs(r["claimed"] - r["found"]) >= 0.0005:
            mark = " **(differs: the memory claims evidence that its passages' text does not hold)**"
        lines.append(
            f"- evidence recall, {label} ({r['count']} questions): {fmt(r['found'])} in the prompt's text, "
            f"{fmt(r['claimed'])} claimed{mark}"
        )
    if recall["all_categories"] == recall["categories_1_4"]:
        lines = [lines[1].replace("all categories", "all categories = categories 1-4")]
    return lines
