"""Memory-probing reports: per-category and per-chat means of F1, judge score and recall; report.md."""

from __future__ import annotations


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
