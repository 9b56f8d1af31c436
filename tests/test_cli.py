from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli import __version__
from realtalk_cli.cli import app

from .conftest import LOCOMO_JSON, REALTALK_JSON, SAMPLE_JSON, SAMPLE_XLSX, SHARED, needs_shared

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"realtalk {__version__}"


@pytest.mark.parametrize(
    "command",
    [
        "convert",
        "validate",
        "download",
        "probe",
        "simulate",
        "report",
        "probe rescore",
        "probe show",
        "simulate export-sft",
    ],
)
def test_every_command_has_help_with_an_example(command: str):
    result = run(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert run(*command.split(), "-h").output == result.output
    # Flags show no Python types or <bool> placeholders; sub-commands have their own usage line.
    assert "<bool>" not in result.output and "<int>" not in result.output and "list[" not in result.output
    assert "[default: (" not in result.output and "(default" not in result.output  # defaults shown one way
    assert f"Usage: root {command}" in result.output


def test_subcommands_and_the_default_run_command_share_the_group():
    shown = run("probe", "show", "--help").output
    assert "--wrong" in shown and "--category" in shown and "--judge-model" not in shown
    assert "--judge-model" in run("probe", "rescore", "--help").output
    assert "--speaker" in run("simulate", "export-sft", "--help").output
    assert "--install-completion" in run("--help").output


def test_convert_writes_beside_the_sheet_and_refuses_to_overwrite(tmp_path: Path):
    sheet = tmp_path / SAMPLE_XLSX.name
    sheet.write_bytes(SAMPLE_XLSX.read_bytes())
    first = run("convert", sheet)
    assert first.exit_code == 0, first.output
    assert sheet.with_suffix(".json").read_text(encoding="utf-8") == SAMPLE_JSON.read_text(encoding="utf-8")
    assert "no captions source given" in first.output
    again = run("convert", sheet)
    assert again.exit_code == 2
    assert again.output.strip() == f"error: {sheet.with_suffix('.json')}: already exists (use --force to overwrite)"
    assert run("convert", sheet, "--force").exit_code == 0


def test_convert_json_report_and_images(tmp_path: Path):
    result = run("convert", SAMPLE_XLSX, "-o", tmp_path / "out.json", "--images-dir", tmp_path / "img", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["files"][0]
    assert (report["sessions"], report["messages"], report["qa"], report["images_written"]) == (3, 26, 6, 2)
    assert sorted(p.name for p in (tmp_path / "img" / "Chat_S_Ana_Ben").iterdir()) == [
        "00000004-PHOTO-2024-03-03-18-08-25_opt.jpg",
        "00000031-PHOTO-2024-03-16-11-30-21_opt.jpg",
    ]


def test_convert_bad_input_is_one_line_exit_2_and_leaves_no_file(tmp_path: Path):
    bad = tmp_path / "broken.xlsx"
    bad.write_text("not a spreadsheet")
    result = run("convert", bad, "-o", tmp_path / "out.json")
    assert result.exit_code == 2
    assert result.output == f"error: {bad}: not an xlsx file (not a zip archive)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.xlsx"]


def test_convert_directory_converts_the_good_and_reports_the_bad(tmp_path: Path):
    src = tmp_path / "raw"
    src.mkdir()
    (src / SAMPLE_XLSX.name).write_bytes(SAMPLE_XLSX.read_bytes())
    (src / "Chat_X.xlsx").write_text("junk")
    result = run("convert", src, "-o", tmp_path / "json")
    assert result.exit_code == 2
    assert (tmp_path / "json" / "Chat_S_Ana_Ben.json").exists()
    assert not (tmp_path / "json" / "Chat_X.json").exists()
    assert f"error: {src / 'Chat_X.xlsx'}: not an xlsx file" in result.output


@needs_shared
def test_convert_all_shared_sheets_with_captions(tmp_path: Path):
    result = run(
        "convert", SHARED / "realtalk" / "raw", "-o", tmp_path, "--captions-from", SHARED / "realtalk", "--json"
    )
    assert result.exit_code == 0, result.output
    files = json.loads(result.output)["files"]
    assert len(files) == 7 and all(f["captions"].endswith(".json") for f in files)


def test_validate_sample_is_clean():
    result = run("validate", SAMPLE_JSON)
    assert result.exit_code == 0
    assert result.output.strip() == f"ok {SAMPLE_JSON} (realtalk): 0 errors, 0 warnings"


@needs_shared
def test_validate_reports_the_real_warnings_of_published_files():
    result = run("validate", SHARED / "realtalk", SHARED / "locomo", "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.output)["files"]
    assert len(files) == len(REALTALK_JSON) + len(LOCOMO_JSON)
    chat1 = next(f for f in files if f["file"].endswith("Chat_1_Emi_Elise.json"))
    assert any("D2:7 points to no message" in w["message"] for w in chat1["warnings"])
    chat9 = next(f for f in files if f["file"].endswith("Chat_9_Fahim_Akib.json"))
    assert any("sub-session" in w["message"] for w in chat9["warnings"])


def test_validate_errors_exit_1_with_locations(tmp_path: Path):
    chat = json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))
    chat["session_2"][0]["speaker"] = "Carla"
    chat["session_1_date_time"] = "someday"
    chat["qa"][0]["category"] = 7
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(chat))
    result = run("validate", bad)
    assert result.exit_code == 1
    assert "error session_2[0] D2:1: speaker 'Carla' is neither 'Ana' nor 'Ben'" in result.output
    assert "error session_1_date_time: date 'someday' does not parse" in result.output
    assert "error qa[0]: unknown category 7 for realtalk" in result.output


def test_validate_wrong_shape_is_an_error_with_its_key(tmp_path: Path):
    bad = tmp_path / "shape.json"
    bad.write_text('{"name": {"speaker_1": "A", "speaker_2": "B"}, "session_1": [{"speaker": 3}]}')
    result = run("validate", bad)
    assert result.exit_code == 1
    assert "error session_1[0]: missing key 'dia_id'" in result.output


def test_validate_unreadable_file_exits_2(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = run("validate", bad)
    assert result.exit_code == 2
    assert (
        result.output
        == f"error: {bad}: line 1, column 2: malformed JSON (unexpected character, expected a string key)\n"
    )
    assert run("validate", tmp_path / "missing.json").output == f"error: {tmp_path / 'missing.json'}: no such file\n"


def test_convert_caption_model_captions_the_earliest_picture(tmp_path: Path, monkeypatch):
    from .llm_server import API_KEY, FakeLLM, serve_llm

    monkeypatch.setenv("REALTALK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fake = FakeLLM(reply=lambda body: "a small bowl on a table")
    with serve_llm(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        result = run("convert", SAMPLE_XLSX, "-o", tmp_path / "c.json", "--caption-model", "gpt-4o-mini", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"][0]["captions"] == "openai:gpt-4o-mini: 2 messages"
    chat = json.loads((tmp_path / "c.json").read_text())
    captioned = [
        m["dia_id"]
        for k, v in chat.items()
        if k.startswith("session_") and isinstance(v, list)
        for m in v
        if "blip_caption" in m
    ]
    assert captioned == ["D1:7", "D3:2"]
    image_part = fake.requests[0]["messages"][0]["content"][1]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_convert_caption_model_without_key_is_one_line(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run("convert", SAMPLE_XLSX, "-o", tmp_path / "c.json", "--caption-model", "gpt-4o-mini")
    assert result.exit_code == 2
    assert result.output == "error: openai:gpt-4o-mini: set the API key in the environment variable OPENAI_API_KEY\n"
    assert not (tmp_path / "c.json").exists()
