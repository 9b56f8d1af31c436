"""Figures for `analyze compare`, made to go into a paper: titles, axis labels with units, dataset names as the
papers write them, n per group, the points themselves over small box plots, log axes where data spans orders
of magnitude, like-for-like panels (messages with messages, turns with turns), and a caption for each."""

from __future__ import annotations

import random
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path

from realtalk_cli.analysis.ei import METRIC_NAMES
from realtalk_cli.data.model import DATASET_NAMES
from realtalk_cli.errors import RealtalkError

FORMATS = ("png", "svg", "pdf")
DPI = 200
PAGE_WIDTH_IN = 7.0  # every figure fits a page this wide at the size it is saved
MIN_FONT_PT = 8
POINTS_UP_TO = 50  # groups this small show every point over the box

UNITS = {
    "reflective_frequency": "share of messages (0-1)",
    "emotion_diversity": "entropy (bits)",
    "sentiment_diversity": "entropy (bits)",
    "grounding_frequency": "share of messages (0-1)",
    "empathy": "mean empathy score",
    "intimacy": "mean intimacy (0-1)",
    "intimacy_slope": "intimacy change per session",
    "intimacy_exp_rate": "exponential rate per session",
    "intimacy_curvature": "per session squared",
    "sentiment_stability": "share of messages (0-1)",
    "emotion_consistency": "share of messages (0-1)",
    "sentiment_alignment": "share of replies (0-1)",
    "emotion_alignment": "share of replies (0-1)",
}


@dataclass
class Figure:
    file: str
    caption: str


def dataset_name(side: dict) -> str:
    """REALTALK / LoCoMo when a side holds one dataset; its folder name otherwise."""
    datasets = {c.dataset for c in side["chats"]}
    return DATASET_NAMES.get(datasets.pop(), side["label"]) if len(datasets) == 1 else side["label"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RealtalkError("plots need matplotlib: pip install 'realtalk-cli[analysis]'") from None
    return plt


def _save(fig, out: Path, stem: str, fmt: str, plt) -> str:
    path = out / f"{stem}.{fmt}"
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=DPI, format=fmt, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path.name


def _boxes_with_points(ax, groups: list[list[float]], names: list[str], seed: int = 0) -> None:
    ticks = [f"{name}\n(n={len(values)})" for name, values in zip(names, groups, strict=True)]
    ax.boxplot([v or [float("nan")] for v in groups], tick_labels=ticks, showfliers=False, widths=0.5)
    rng = random.Random(seed)
    for i, values in enumerate(groups, start=1):
        if 0 < len(values) <= POINTS_UP_TO:
            xs = [i + rng.uniform(-0.12, 0.12) for _ in values]
            ax.scatter(xs, values, s=10, alpha=0.7, color="#0072B2", zorder=3)


def speaker_values(metrics: dict, metric: str) -> list[float]:
    return [v[metric] for c in metrics["chats"].values() for v in c["speakers"].values() if v[metric] is not None]


def make_plots(sides: list[dict], out: Path, fmt: str = "png") -> dict[str, Figure]:
    if fmt not in FORMATS:
        raise RealtalkError(f"--format {fmt!r}: choose {', '.join(FORMATS)}")
    plt = _pyplot()
    names = [dataset_name(s) for s in sides]
    backend = sides[0]["metrics"]["backend"]
    figures: dict[str, Figure] = {}

    available = [m for m in METRIC_NAMES if any(speaker_values(s["metrics"], m) for s in sides)]
    if available:
        cols = 2  # a page's width: every text at least MIN_FONT_PT when the figure is printed 7 in wide
        rows = (len(available) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, 2.6 * rows), squeeze=False)
        for ax, metric in zip(axes.flat, available, strict=False):
            _boxes_with_points(ax, [speaker_values(s["metrics"], metric) for s in sides], names)
            ax.set_title(metric.replace("_", " "), fontsize=10)
            ax.set_ylabel(UNITS.get(metric, "value"), fontsize=MIN_FONT_PT)
            ax.tick_params(labelsize=MIN_FONT_PT)
        for ax in list(axes.flat)[len(available) :]:
            ax.axis("off")
        top = sides[0]["metrics"].get("emotion_entropy_max_bits")
        title = f"EI metrics per speaker: {' vs '.join(names)} (labels: {backend}; emotion entropy at most {top} bits)"
        fig.suptitle(textwrap.fill(title, 90), fontsize=10)
        fig.tight_layout()
        figures["metrics"] = Figure(
            _save(fig, out, "metrics", fmt, plt),
            f"EI metrics per speaker (one point per speaker and chat; box: quartiles). Labels from the "
            f"`{backend}` backend; {sides[0]['metrics'].get('warning', '')}.",
        )

    intimacy = _intimacy_by_session(sides, out)
    if intimacy:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for name, (series, chats) in zip(names, intimacy, strict=True):
            if series:
                ax.plot(range(1, len(series) + 1), series, marker="o", ms=3, label=f"{name} (n={chats} chats)")
        ax.set_title("Intimacy over the conversation")
        ax.set_xlabel("session number")
        ax.set_ylabel("mean intimacy of messages (0-1)")
        ax.legend()
        figures["intimacy"] = Figure(
            _save(fig, out, "intimacy", fmt, plt),
            f"Mean intimacy of all messages in the n-th session, pooled over chats. Labels from the `{backend}` "
            "backend.",
        )

    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.2))
    for ax, (unit, key) in zip(axes, (("messages", "messages"), ("turns", "turns")), strict=True):
        groups = [[_session_count(ses, key) for c in s["chats"] for ses in c.sessions] for s in sides]
        top = max((max(g) for g in groups if g), default=1)
        bins = range(0, top + 5, max(1, (top + 4) // 30))
        for name, values in zip(names, groups, strict=True):
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{name} (n={len(values)} sessions)")
        ax.set_title(f"{unit.capitalize()} per session")
        ax.set_xlabel(f"{unit} per session")
        ax.set_ylabel("sessions")
        ax.legend(fontsize=MIN_FONT_PT)
    fig.tight_layout()
    figures["session_lengths"] = Figure(
        _save(fig, out, "session_lengths", fmt, plt),
        "Session length counted in messages (left) and in turns, runs of consecutive messages by one speaker "
        "(right). LoCoMo writes one message per turn, so turns are the like-for-like comparison.",
    )

    gaps = [[g for st in s["stats"] for g in st.gaps_hours] for s in sides]
    positive = [g for values in gaps for g in values if g > 0]
    # Gaps of zero or less (overlapping or mis-dated sessions) cannot sit on a log axis: drawn at its left edge.
    floor = min(positive, default=1.0) / 1.5
    fig, ax = plt.subplots(figsize=(6.4, 4))
    top = max(positive, default=1.0)
    edges = [floor * (top / floor) ** (i / 30) for i in range(31)]
    for name, values in zip(names, gaps, strict=True):
        clipped = sum(1 for g in values if g <= floor)
        note = f", {clipped} of 0 h or less" if clipped else ""
        ax.hist(
            [max(g, floor) for g in values],
            bins=edges,
            histtype="step",
            linewidth=1.5,
            label=f"{name} (n={len(values)} gaps{note})",
        )
    ax.set_xscale("log")
    ax.set_title("Time between consecutive sessions")
    ax.set_xlabel("hours between sessions (log scale)")
    ax.set_ylabel("gaps")
    ax.legend()
    figures["gaps"] = Figure(
        _save(fig, out, "gaps", fmt, plt),
        "Hours from the last message of a session to the first of the next, on a log axis: REALTALK's gaps "
        "are hours within 21 days, LoCoMo's days to weeks.",
    )
    return figures


def _session_count(session, key: str) -> int:
    if key == "messages":
        return len(session.messages)
    turns, previous = 0, None
    for m in session.messages:
        if m.speaker != previous:
            turns += 1
        previous = m.speaker
    return turns


def _intimacy_by_session(sides: list[dict], out: Path) -> list[tuple[list[float], int]]:
    from realtalk_cli.fileio import read_jsonl

    result = []
    for s in sides:
        by_session: dict[int, list[float]] = {}
        for r in read_jsonl(out / f"ei-{s['label']}" / "annotations.jsonl"):
            if r.get("intimacy") is not None:
                by_session.setdefault(r["session"], []).append(r["intimacy"])
        series = [statistics.mean(by_session[k]) for k in sorted(by_session)]
        result.append((series, len(s["chats"])))
    return result if any(series for series, _ in result) else []
