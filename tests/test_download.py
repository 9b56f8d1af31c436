from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.download import published_sums, sha256_of

from .conftest import SHARED, needs_shared
from .fileserver import serve_files

runner = CliRunner()
CHAT1 = "Chat_1_Emi_Elise"


def run(*args) -> object:
    return runner.invoke(app, ["download", *map(str, args)])


def test_package_sums_cover_ten_chats_json_and_raw():
    sums = published_sums()
    assert len([p for p in sums if p.endswith(".json")]) == 10
    assert len([p for p in sums if p.startswith("raw/") and p.endswith(".xlsx")]) == 10


@needs_shared
def test_download_verifies_and_is_idempotent(tmp_path: Path):
    with serve_files(SHARED / "realtalk") as url:
        first = run("Chat_1", "--raw", "--to", tmp_path, "--base-url", url)
        assert first.exit_code == 0, first.output
        assert "downloaded" in first.output and "2 of 2 files" in first.output
        assert sha256_of(tmp_path / f"{CHAT1}.json") == published_sums()[f"{CHAT1}.json"]
        assert (tmp_path / "raw" / f"{CHAT1}.xlsx").exists()
        again = run("Chat_1", "--raw", "--to", tmp_path, "--base-url", url)
        assert again.exit_code == 0
        assert again.output.count("present") == 2 and "downloaded" not in again.output


@needs_shared
def test_download_resumes_a_partial_file_with_a_range_request(tmp_path: Path):
    whole = (SHARED / "realtalk" / f"{CHAT1}.json").read_bytes()
    (tmp_path / f"{CHAT1}.json.part").write_bytes(whole[:1000])
    with serve_files(SHARED / "realtalk") as url:
        result = run(CHAT1, "--to", tmp_path, "--base-url", url)
        assert serve_files.requests == [(f"{CHAT1}.json", "bytes=1000-")]
    assert result.exit_code == 0, result.output
    assert "resumed" in result.output
    assert (tmp_path / f"{CHAT1}.json").read_bytes() == whole
    assert not (tmp_path / f"{CHAT1}.json.part").exists()


@needs_shared
def test_download_restarts_when_the_server_ignores_ranges(tmp_path: Path):
    whole = (SHARED / "realtalk" / f"{CHAT1}.json").read_bytes()
    (tmp_path / f"{CHAT1}.json.part").write_bytes(b"garbage")
    with serve_files(SHARED / "realtalk", ranges=False) as url:
        result = run(CHAT1, "--to", tmp_path, "--base-url", url)
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{CHAT1}.json").read_bytes() == whole


def test_download_rejects_a_file_whose_hash_differs(tmp_path: Path):
    with serve_files(tmp_path, overrides={f"{CHAT1}.json": b'{"tampered": true}'}) as url:
        result = run("Chat_1", "--to", tmp_path / "out", "--base-url", url)
    assert result.exit_code == 2
    assert "does not match the published" in result.output
    assert not (tmp_path / "out" / f"{CHAT1}.json").exists()
    assert not (tmp_path / "out" / f"{CHAT1}.json.part").exists()


def test_download_missing_file_and_unknown_chat(tmp_path: Path):
    with serve_files(tmp_path) as url:
        result = run("Chat_3", "--to", tmp_path / "out", "--base-url", url)
    assert result.exit_code == 2
    assert "HTTP 404" in result.output
    unknown = run("Chat_42", "--to", tmp_path)
    assert unknown.exit_code == 2
    assert unknown.output.startswith(
        "error: unknown chat 'Chat_42'; known chats: Chat_10_Fahim_Muhhamed, Chat_1_Emi_Elise"
    )


def test_download_unreachable_endpoint(tmp_path: Path):
    result = run("Chat_1", "--to", tmp_path, "--base-url", "http://127.0.0.1:9/")
    assert result.exit_code == 2
    assert "failed" in result.output and "Connection refused" in result.output


def test_existing_file_with_other_content_is_kept_unless_forced(tmp_path: Path):
    (tmp_path / f"{CHAT1}.json").write_text("mine")
    result = run("Chat_1", "--to", tmp_path, "--base-url", "http://127.0.0.1:9/")
    assert result.exit_code == 2
    assert "exists with a different sha256 (use --force to replace it)" in result.output
    assert (tmp_path / f"{CHAT1}.json").read_text() == "mine"


@needs_shared
@pytest.mark.parametrize(
    "misbehave,message",
    [
        ("trickle", "not complete within --timeout 1 s"),
        ("short", "closed after"),
        ("endless", "more than the 209715200 bytes allowed|not complete within --timeout 1 s"),
    ],
)
def test_a_file_has_a_total_deadline_and_its_size_and_leaves_no_part(tmp_path: Path, misbehave: str, message: str):
    with serve_files(SHARED / "realtalk", misbehave=misbehave) as url:
        started = time.monotonic()
        result = run(CHAT1, "--to", tmp_path, "--base-url", url, "--timeout", "1")
    assert time.monotonic() - started < 40
    assert result.exit_code == 2 and any(m in result.output for m in message.split("|")), result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part
