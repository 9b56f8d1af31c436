"""Rough edges a new user hit (issue 23 §3): each one line and exit 2, or the help that was missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.formats import chat_paths

from .conftest import SAMPLE_JSON, SAMPLE_XLSX

runner = CliRunner()


def test_probe_group_help_shows_the_run_options():
    result = runner.invoke(app, ["probe", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert all(flag in result.output for flag in ("rescore", "--judge-model", "--compat", "--category", "--limit"))


def test_a_mistyped_choice_lists_the_valid_ones(tmp_path: Path):
    args = [
        "probe",
        str(SAMPLE_JSON),
        "--model",
        "offline:bm25",
        "--out",
        str(tmp_path / "r"),
        "--context",
        "retreival",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "context = 'retreival' is not one of full, events, retrieval, bm25" in result.output
    assert "typing" not in result.output


def test_a_raw_sheet_given_to_probe_says_to_convert_it(tmp_path: Path):
    result = runner.invoke(app, ["probe", str(SAMPLE_XLSX), "--model", "offline:bm25", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "is a raw sheet or zip archive, not a chat JSON; convert it first" in result.output
    assert not (tmp_path / "r").exists()


def test_a_run_written_into_the_folder_of_chats_is_never_read_as_a_chat(tmp_path: Path):
    chats = tmp_path / "chats"
    chats.mkdir()
    shutil.copy(SAMPLE_JSON, chats)
    first = runner.invoke(app, ["probe", str(chats), "--model", "offline:bm25", "--out", str(chats)])
    assert first.exit_code == 0, first.output
    assert (chats / "report.json").exists() and chat_paths([chats]) == [chats / SAMPLE_JSON.name]
    again = runner.invoke(app, ["probe", str(chats), "--model", "offline:bm25", "--out", str(chats)])
    assert again.exit_code == 0, again.output


def test_simulate_paper_split_over_chats_outside_it_is_a_usage_error(tmp_path: Path):
    locomo = {
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I painted a lake."},
                {"speaker": "Bo", "dia_id": "D1:2", "text": "Nice!"},
            ],
        },
        "qa": [],
    }
    path = tmp_path / "Chat_L_Ann_Bo.json"
    path.write_text(json.dumps(locomo))
    args = ["simulate", str(path), "--model", "offline:bm25", "--split", "paper", "--out", str(tmp_path / "s")]
    result = runner.invoke(app, [*args, "--no-bertscore"])
    assert result.exit_code == 2 and "--split paper: no message of these chats is in that split" in result.output


def test_counts_are_said_in_the_singular_and_the_plural():
    from realtalk_cli.data.text import plural

    assert [plural(1, "question"), plural(2, "question"), plural(0, "retry"), plural(1, "retry")] == [
        "1 question",
        "2 questions",
        "0 retries",
        "1 retry",
    ]


def test_report_force_help_speaks_of_report_files_not_run_folders():
    result = runner.invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert "Replace the leaderboard files" in result.output and "run folder holding" not in result.output


def test_plots_fit_a_page_with_readable_unoverlapping_text(tmp_path: Path, monkeypatch):
    """Every figure at most 7 in wide, every text at least 8 pt at the saved size, tick labels apart."""
    import matplotlib.text

    from realtalk_cli.analysis import plots

    seen = []
    real_save = plots._save

    def inspect(fig, out, stem, fmt, plt):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < plots.MIN_FONT_PT]
        overlapping = []
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_text().strip()]
                overlapping += [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
        seen.append((stem, fig.get_figwidth(), small, overlapping))
        return real_save(fig, out, stem, fmt, plt)

    monkeypatch.setattr(plots, "_save", inspect)
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        shutil.copy(SAMPLE_JSON, tmp_path / side / f"Chat_{side.upper()}_Ana_Ben.json")
    result = runner.invoke(
        app, ["analyze", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert {stem for stem, *_ in seen} == {"metrics", "session_lengths", "gaps"}
    for stem, width, small, overlapping in seen:
        assert width <= 7.0 and not small and not overlapping, (stem, width, small, overlapping)
