"""The leaderboard as files for a paper or a spreadsheet: Markdown, CSV (one row per run), LaTeX (booktabs)."""

from __future__ import annotations

import csv
import io
import re

from realtalk_cli.data.model import category_notes
from realtalk_cli.report.audits import audit_text


def number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def interval(ci: dict | None, digits: int = 3) -> str:
    """`0.423 [0.401, 0.446]`; the mean alone when there is no interval; `-` when there is no value."""
    if not ci or ci.get("mean") is None:
        return "-"
    if ci.get("low") is None:
        return number(ci["mean"], digits)
    return f"{number(ci['mean'], digits)} [{number(ci['low'], digits)}, {number(ci['high'], digits)}]"


def p_value(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def questions_note(board: dict) -> str:
    q = board["questions"]
    unit = "questions" if board["kind"] == "probe" else "targets"
    if q["same_set"]:
        return f"All runs answered the same {q['union']} {unit}."
    scope = (
        "The leaderboard uses only those."
        if board["settings"]["common_only"]
        else ("Each run is scored on its own answered set; pairs are compared on the items both answered.")
    )
    return f"Runs answered different {unit}: {q['common']} of {q['union']} were answered by every run. {scope}"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def md_escape(text: object) -> str:
    """Text from a run as Markdown: shown as written (never markup), one line, never a second table cell."""
    return _MD_SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", str(text)))


def usage_cell(run: dict) -> str:
    tokens = run["prompt_tokens"] + run["completion_tokens"]
    wall = "-" if run.get("wall_time_s") is None else f"{run['wall_time_s']:.1f} s"
    return f"{tokens} tokens, ${run['cost_usd']:.4f}, {wall}"


def markdown(board: dict) -> str:
    s = board["settings"]
    lines = [
        f"# realtalk {board['kind']} leaderboard",
        "",
        f"Means with {int(s['level'] * 100)}% percentile-bootstrap intervals over items "
        f"({s['resamples']} resamples, seed {s['seed']}). {questions_note(board)}",
        *(["", *category_notes(board_datasets(board))] if board["kind"] == "probe" else []),
        "",
        "| run | model | context | memory | judge | answered | failed | tokens (prompt+completion) | cost | wall "
        "time | group |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in board["runs"]:
        wall = "-" if r.get("wall_time_s") is None else f"{r['wall_time_s']:.1f} s"
        done = "" if r["complete"] else " (incomplete)"
        lines.append(
            f"| {r['id']} | {md_escape(r['model'])} | {md_escape(r['context'])} | {md_escape(r['memory'] or '-')} | "
            f"{md_escape(r['judge'] or '-')} | "
            f"{r['answered']}{done} | {r['failed']} | {r['prompt_tokens']}+{r['completion_tokens']} | "
            f"${r['cost_usd']:.4f} | {wall} | {r['group']} |"
        )
    incomplete = [f"{r['id']}: {md_escape(r['incomplete'])}" for r in board["runs"] if r["incomplete"]]
    if incomplete:
        lines += ["", f"Incomplete runs: {'; '.join(incomplete)}."]
    lines += ["", *(f"- {md_escape(line)}" for line in group_lines(board))]
    several = len(board["groups"]) > 1
    for group in board["groups"]:
        runs = group_runs(board, group)
        for metric, name in group_metrics(board, group).items():
            title = f"{name}: group {group['id']}" if several else name
            lines += [
                "",
                f"## {md_escape(title)}",
                "",
                "| run | " + " | ".join(map(md_escape, board["categories"])) + " |",
            ]
            lines.append("|---|" + "---:|" * len(board["categories"]))
            for r in runs:
                cells = [interval(r["scores"][metric].get(c)) for c in board["categories"]]
                lines.append(f"| {r['id']} | " + " | ".join(cells) + " |")
            lines.append("")
            counts = [
                "/".join(str(r["scores"][metric].get(c, {}).get("n", 0)) for r in runs) for c in board["categories"]
            ]
            if metric.startswith("judge_score") and group.get("judge_audit"):  # beside the judge's scores
                lines += [f"Judge audit: {md_escape(audit_text(group['judge_audit']))}.", ""]
            lines.append(
                "Items scored per run ("
                + "/".join(r["id"] for r in runs)
                + "): "
                + "; ".join(f"{md_escape(c)} {n}" for c, n in zip(board["categories"], counts, strict=True))
                + "."
            )
    if board.get("references"):
        lines += reference_markdown(board)
    if board["comparisons"] and board["metrics"]:
        lines += [
            "",
            "## Paired comparisons",
            "",
            f"Difference b - a on the items both runs answered, with its bootstrap interval and a two-sided "
            f"sign-flip permutation p-value; **n.s.** marks p >= {s['alpha']} (no correction for multiple "
            "comparisons).",
            "",
            "| b - a | common | score | category | n | difference [95% CI] | p | |",
            "|---|---:|---|---|---:|---:|---:|---|",
        ]
        for comp in board["comparisons"]:
            for metric, per_category in comp["differences"].items():
                for c, d in per_category.items():
                    mark = "" if d["significant"] or d["p"] is None else "n.s."
                    lines.append(
                        f"| {comp['b']} - {comp['a']} | {comp['common']} | {md_escape(board['metrics'][metric])} | "
                        f"{md_escape(c)} | {d['n']} | {interval(d)} | {p_value(d['p'])} | {mark} |"
                    )
    if board.get("errata"):
        lines += errata_markdown(board)
    return "\n".join(lines) + "\n"


def board_datasets(board: dict) -> set[str]:
    """The datasets of a board's runs, as their groups name them."""
    return {d.strip() for g in board.get("groups", []) for d in str(g.get("dataset", "")).split(",")}


def reference_metrics(board: dict) -> dict[str, str]:
    """The scores the published results give, in the report's order (also those no run has)."""
    from realtalk_cli.report.runs import PROBE_METRICS

    given = {m for ref in board.get("references", []) for m in ref["scores"]}
    return {m: name for m, name in PROBE_METRICS.items() if m in given}


def reference_markdown(board: dict) -> list[str]:
    """Published results, one table per score, marked and unranked, with their sources."""
    from realtalk_cli.report import reference

    out = ["", "## Published results (not measured here)", "", md_escape(reference.NOTE)]
    for metric, name in reference_metrics(board).items():
        rows = reference.rows(board, metric)
        out += ["", f"### {md_escape(name)} (published)", ""]
        out.append("| published result | " + " | ".join(map(md_escape, board["categories"])) + " | other categories |")
        out.append("|---|" + "---:|" * len(board["categories"]) + "---|")
        for ref, values, other in rows:
            cells = [number(v) for v in values]
            out.append(
                f"| {md_escape(reference.label(ref))} | " + " | ".join(cells) + f" | {md_escape(other or '-')} |"
            )
    out += ["", "Sources:", ""]
    for ref in board["references"]:
        note = f" ({ref['note']})" if ref.get("note") else ""
        out.append(f"- {ref['id']}: {md_escape(ref['source'] + note)}")
    return out


def errata_markdown(board: dict) -> list[str]:
    """The errata section: what became of the entries, the ceiling per run and category, the changed items."""
    from realtalk_cli.report.errata import lines as errata_lines

    section = board["errata"]
    out = ["", "## Errata", "", *(f"- {md_escape(line)}" for line in errata_lines(section))]
    cats = [c for c in board["categories"] if any(c in r["ceiling"] for r in section["runs"].values())]
    if cats:
        out += ["", "Ceiling (asked / corrected / share right):", ""]
        out.append("| run | " + " | ".join(map(md_escape, cats)) + " |")
        out.append("|---|" + "---:|" * len(cats))
        for run_id, r in section["runs"].items():
            cells = [r["ceiling"].get(c) for c in cats]
            shown = [f"{c['asked']} / {c['corrected']} / {c['ceiling']:.3f}" if c else "-" for c in cells]
            out.append(f"| {run_id} | " + " | ".join(shown) + " |")
    if section["changed"]:
        out += ["", "| changed item | chat | qa | category | published gold | corrected gold | runs |"]
        out.append("|---|---|---:|---|---|---|---|")
        for ch in section["changed"]:
            cells = [ch["id"], ch["chat"], ch["qa_index"], ch["category"], ch["published"], ch["corrected"]]
            out.append("| " + " | ".join(md_escape(c) for c in cells) + f" | {', '.join(ch['runs'])} |")
    return out


def group_runs(board: dict, group: dict) -> list[dict]:
    """A group's runs, best first."""
    by_id = {r["id"]: r for r in board["runs"]}
    return [by_id[i] for i in group["runs"]]


def group_metrics(board: dict, group: dict) -> dict[str, str]:
    """The scores any run of the group has (a group of runs without a judge shows no judge table)."""
    runs = group_runs(board, group)
    return {
        m: name
        for m, name in board["metrics"].items()
        if any(ci.get("mean") is not None for r in runs for ci in r["scores"].get(m, {}).values())
    }


def group_lines(board: dict) -> list[str]:
    """What each group's runs share, how they rank, and why a group stands apart from the first."""
    lines = []
    if len(board["groups"]) > 1:
        lines.append(
            f"Runs are ranked only beside runs over the same items, dataset and judge: {len(board['groups'])} groups."
        )
    for g in board["groups"]:
        ranked = " > ".join(g["runs"])
        by = board["metrics"].get(g.get("ranked_by"), "-")
        line = (
            f"group {g['id']}: dataset {g['dataset']}, {g['items']['count']} items ({g['items']['hash']}), "
            f"judge {g['judge'] or 'none'}; ranked by overall {by}: {ranked}"
        )
        lines.append(line + (f" ({g['why']})" if g.get("why") else "") + (f"; {g['note']}" if g.get("note") else ""))
        for metric, order in g.get("rankings", {}).items():
            lines.append(f"group {g['id']}: ranked by overall {board['metrics'][metric]}: {' > '.join(order)}")
        if g.get("judge_audit"):
            lines.append(f"group {g['id']}: judge {audit_text(g['judge_audit'])}")
    unused = [a for a in board.get("judge_audits", []) if not a["used"]]
    for a in unused:
        why = "no group is graded by this judge" if not a["groups"] else "another audit of this judge is used"
        lines.append(f"judge audit {a['path']} ({a['judge']}) not shown: {why}")
    return lines


def csv_text(board: dict) -> str:
    fixed = [
        "id",
        "group",
        "path",
        "model",
        "context",
        "memory",
        "judge",
        "answered",
        "failed",
        "complete",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "wall_time_s",
    ]
    if board.get("judge_audits"):
        fixed.append("judge_false_accept")
    score_columns = [
        (m, c, part) for m in board["metrics"] for c in board["categories"] for part in ("mean", "low", "high", "n")
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(map(csv_cell, fixed + [f"{m} {c} {part}" for m, c, part in score_columns]))
    for r in board["runs"]:
        scores = [r["scores"][m].get(c, {}).get(part) for m, c, part in score_columns]
        audit = (r.get("judge_audit") or {}).get("false_accept") or {}
        values = [audit.get("rate") if k == "judge_false_accept" else r.get(k) for k in fixed]
        writer.writerow(map(csv_cell, values + ["" if v is None else v for v in scores]))
    return buffer.getvalue()


def csv_cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula gets a leading ' (CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",  # OT1 fonts would print < > | as other glyphs
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def tex_escape(text: str) -> str:
    """Text from a run as LaTeX: shown as written, on one line (a blank line would end the table cell)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in _CONTROL.sub(" ", text))


def _tex_column(category: str) -> str:
    """A narrow column head: the category's number (`1`), `1--3` or `all`; the caption names them."""
    if category == "overall":
        return "all"
    if category.startswith("overall (1-3)"):
        return "1--3"
    return tex_escape(category.split(" ", 1)[0])


def _tex_cell(ci: dict | None) -> str:
    """The mean, with its interval in small type on a second line (so that a column stays narrow)."""
    ci = ci or {}
    if ci.get("mean") is None:
        return "--"
    if ci.get("low") is None:
        return number(ci["mean"])
    low, high = (f"{v:.3f}".replace("0.", ".", 1) for v in (ci["low"], ci["high"]))
    return f"\\shortstack[r]{{{number(ci['mean'])}\\\\{{\\tiny {low}--{high}}}}}"


def latex(board: dict) -> str:
    """One booktabs table per score and group of comparable runs, fitted to `\\linewidth` (tabularx: the run
    column wraps, category columns carry numbers named in the caption, intervals on a second line)."""
    s = board["settings"]
    cats = board["categories"]
    legend = "; ".join(f"{_tex_column(c)}: {tex_escape(c)}" for c in cats)
    parts = [r"% \usepackage{booktabs,tabularx}", f"% realtalk {board['kind']} leaderboard"]
    several = len(board["groups"]) > 1
    for group in board["groups"]:
        for metric, name in group_metrics(board, group).items():
            parts += [
                r"\begin{table}[t]",
                r"\centering",
                r"\scriptsize",
                r"\setlength{\tabcolsep}{3pt}",
                r"\begin{tabularx}{\linewidth}{@{}>{\raggedright\arraybackslash}X*{" + str(len(cats)) + "}{r}@{}}",
                r"\toprule",
                "Run & " + " & ".join(_tex_column(c) for c in cats) + r" \\",
                r"\midrule",
            ]
            for r in group_runs(board, group):
                cells = [_tex_cell(r["scores"][metric].get(c)) for c in cats]
                setup = [r["context"]] + [f"{k} {r[k]}" for k in ("memory", "judge") if r[k]]
                parts.append(tex_escape(f"{r['model']} ({', '.join(setup)})") + " & " + " & ".join(cells) + r" \\")
            scope = (
                f" Group {group['id']}: {group['dataset']}, {group['items']['count']} items, judge "
                f"{group['judge'] or 'none'}; runs of other groups are not comparable with these."
                if several
                else ""
            )
            if metric.startswith("judge_score") and group.get("judge_audit"):
                scope += f" Judge audit: {audit_text(group['judge_audit'])}."
            parts += [
                r"\bottomrule",
                r"\end{tabularx}",
                f"\\caption{{{tex_escape(name)} per category: mean and {int(s['level'] * 100)}\\% bootstrap interval "
                f"over items ({s['resamples']} resamples). Columns: {legend}.{tex_escape(scope)}}}",
                r"\end{table}",
                "",
            ]
    return "\n".join(parts)
