"""Memory-probing reports: per-category and per-chat means of F1, judge score and recall; report.md.

Overall figures: `overall` (= `overall_1_4`) pools every answered category but LoCoMo's adversarial
category 5; `overall_1_3` pools categories 1-3 only, as the paper's tables do (its script reports no
overall figure at all, only per-category means). Category 5 is the not-mentioned accuracy, kept apart.
"""

from __future__ import annotations

from realtalk_cli.tasks.runs.results import status_lines

NOT_MENTIONED_MEASURE = "not-mentioned accuracy"
PROTOCOL_SCORES = {"f1_locomo": "F1 (LoCoMo: each item rounded to 3 places)", "f1_mem0": "F1 (mem0: token sets)"}
OVERALL_LABELS = {"overall_1_3": "overall (paper: categories 1-3)", "overall_1_4": "overall (1-4)"}


def _adversarial(row: dict) -> bool:
    return row["dataset"] == "locomo" and row["category"] == 5


def category_label(key: str, stats: dict) -> str:
    """How a category is shown: LoCoMo's category 5 is an accuracy, not an F1."""
    return f"{key} ({stats['measure']})" if stats.get("measure") else key


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _stats(rows: list[dict], judge: str | None) -> dict:
    # only this run's judge counts: rows still carrying another judge's score wait for re-judging
    out = {
        "count": len(rows),
        "f1": _mean([r["f1"] for r in rows]),
        "f1_date_normalised": _mean([r.get("f1_date_normalised") for r in rows]),
        "judge": _mean([r.get("judge_score") if r.get("judge_model") == judge else None for r in rows]),
    }
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


def _summary(rows: list[dict], judge: str | None) -> dict:
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
    return {
        **recall,
        "overall": _stats(answered, judge),
        "overall_1_4": _stats(answered, judge),
        "overall_1_3": _stats([r for r in answered if r["category"] in (1, 2, 3)], judge),
        "categories": categories,
        "evidence_ids": sum(len(r.get("evidence_ids", [])) for r in rows),
        "evidence_dangling": sum(len(r.get("evidence_dangling", [])) for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cached_tokens": sum(r.get("cached_tokens", 0) for r in rows),
        "cost_usd": round(sum(r["cost_usd"] + (r.get("judge_cost_usd") or 0.0) for r in rows), 6),
        "answer_cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
        "judge_prompt_tokens": sum(r.get("judge_prompt_tokens") or 0 for r in rows),
        "judge_completion_tokens": sum(r.get("judge_completion_tokens") or 0 for r in rows),
        "judge_cost_usd": round(sum(r.get("judge_cost_usd") or 0.0 for r in rows), 6),
    }


def build_report(rows: list[dict], manifest: dict) -> dict:
    ok = [r for r in rows if r.get("error") is None]
    judge = manifest.get("judge_model")
    return {
        "overall": _summary(ok, judge),
        "chats": {c: _summary([r for r in ok if r["chat"] == c], judge) for c in sorted({r["chat"] for r in ok})},
        "failed_questions": len(rows) - len(ok),
        "manifest": manifest,
    }


def _protocol_lines(protocol: dict | None) -> list[str]:
    """The protocol a run followed as its manifest describes it: every choice it made, one line each."""
    if not protocol:
        return ["- protocol: realtalk's own (see README: our protocol and the paper's)"]
    details = {k: v for k, v in protocol.items() if k not in ("compat", "source")}
    return [
        f"- protocol: `--compat {protocol.get('compat')}` ({protocol.get('source')})",
        *(f"  - {k.replace('_', ' ')}: {v}" for k, v in details.items()),
    ]


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
            cells = (st["count"], fmt(st["f1"]), fmt(st.get("f1_date_normalised")), fmt(st["judge"]))
            lines.append(
                f"| {name} | {category_label(category, st)} | " + " | ".join(map(str, cells)) + f" |{recall_cells(st)}"
            )
        for key, label in OVERALL_LABELS.items():
            o = summary[key]
            cells = (o["count"], fmt(o["f1"]), fmt(o.get("f1_date_normalised")), fmt(o["judge"]))
            lines.append(f"| **{name}** | **{label}** | " + " | ".join(map(str, cells)) + f" |{recall_cells(o)}")
    extra = [k for k in PROTOCOL_SCORES if k in report["overall"]["overall"]]
    if extra:
        lines += ["", "| chat | category | " + " | ".join(PROTOCOL_SCORES[k] for k in extra) + " |"]
        lines.append("|---|---|" + "---:|" * len(extra))
        for name, summary in [("all", report["overall"]), *report["chats"].items()]:
            for category, st in [*summary["categories"].items(), ("overall (1-4)", summary["overall"])]:
                lines.append(f"| {name} | {category} | " + " | ".join(fmt(st.get(k)) for k in extra) + " |")
    o = report["overall"]
    lines += [
        "",
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
    if report.get("run"):
        r = report["run"]
        lines.append(
            f"Wall time {r['wall_time_s']} s, {r['requests']} requests ({r['cached']} cached), {r['retries']} retries."
        )
    if report["failed_questions"]:
        lines.append(f"{report['failed_questions']} questions failed; running the same command again retries them.")
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
