"""`realtalk suite FILE.toml`: a grid of probe runs against the loopback server: runs, resumes without sending
anything twice, writes one leaderboard, checks the whole file before any request, stops the whole grid at its
max_cost, shares one limit of requests in flight per endpoint, and leaves folders `probe` itself resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.fileio import read_jsonl
from realtalk_cli.llm.scheduler import EndpointGate

from .conftest import ROOT, SAMPLE_JSON
from .llm_server import API_KEY, FakeLLM, serve_llm
from .test_probe import gold_reply

runner = CliRunner()
LOCOMO_TINY = ROOT / "tests" / "data" / "Chat_L_Ann_Bo.json"  # 3 questions, one of them category 5
QUESTIONS = {"realtalk": 6, "locomo": 3}
CELLS = [f"{m}+{d}+full+realtalk" for m in ("mini", "other") for d in ("realtalk", "locomo")]


def suite_file(tmp_path: Path, url: str, extra: str = "", models: str | None = None, url_b: str | None = None) -> Path:
    """Two models at the loopback endpoint, the sample REALTALK chat and a tiny LoCoMo chat, a judge."""
    models = models or (
        f'[models.mini]\nmodel = "gpt-4o-mini"\nbase_url = "{url}"\napi_key_env = "TEST_LLM_KEY"\n'
        f'[models.other]\nmodel = "judge-model"\nbase_url = "{url_b or url}"\napi_key_env = "TEST_LLM_KEY"\n'
        "price_in = 0.15\nprice_out = 0.6\n"
    )
    path = tmp_path / "suite.toml"
    path.write_text(
        f'out = "{tmp_path / "root"}"\njudge_model = "judge-model"\n{extra}\n{models}'
        f'[datasets.realtalk]\npaths = ["{SAMPLE_JSON}"]\n[datasets.locomo]\npaths = ["{LOCOMO_TINY}"]\n'
    )
    return path


def suite(*args) -> object:
    return runner.invoke(app, ["suite", *map(str, args)])


def answers(fake: FakeLLM) -> list[dict]:
    return [r for r in fake.requests if "Predicted answer:" not in r["messages"][0]["content"]]


def spent(root: Path) -> float:
    """Every cell folder's spending, as its usage.jsonl records it."""
    return sum(
        line.get("cost_usd", 0.0) for cell in (root / "cells").iterdir() for line in read_jsonl(cell / "usage.jsonl")
    )


@pytest.mark.usefixtures("llm_env")
def test_a_grid_of_two_models_and_two_datasets_runs_resumes_and_writes_one_leaderboard(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url, "concurrency = 2")
        first = suite(path, "--json", "--no-cache")  # cells in parallel would share some judge replies
        assert first.exit_code == 0, first.output
        sent = len(fake.requests)
        assert len(answers(fake)) == 2 * (6 + 3) and sent == 2 * 2 * (6 + 3)  # every answer judged once
        again = suite(path, "--json")
    assert again.exit_code == 0, again.output
    assert len(fake.requests) == sent  # resumed: nothing finished is sent again
    assert [c["requests"] for c in json.loads(again.stdout)["cells"]] == [0, 0, 0, 0]
    outcome = json.loads(first.stdout)
    assert [c["cell"] for c in outcome["cells"]] == CELLS and outcome["complete"] is True
    assert all(c["status"] == "complete" and c["judge"] == 1.0 for c in outcome["cells"])
    root = tmp_path / "root"
    assert sorted(p.name for p in (root / "cells").iterdir()) == sorted(CELLS)
    board = json.loads((root / "report" / "report.json").read_text())
    assert sorted(Path(r["path"]).name for r in board["runs"]) == sorted(CELLS)
    assert (root / "report" / "report.html").is_file() and (root / "report" / "leaderboard.md").is_file()


@pytest.mark.usefixtures("llm_env")
def test_a_cell_folder_is_what_probe_writes_and_probe_resumes_and_reports_it(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url, "concurrency = 2")
        assert suite(path).exit_code == 0
        cell = tmp_path / "root" / "cells" / "mini+realtalk+full+realtalk"
        flags = ["--model", "gpt-4o-mini", "--base-url", url, "--api-key-env", "TEST_LLM_KEY"]
        flags += ["--judge-model", "judge-model", "--concurrency", "2"]
        sent = len(fake.requests)
        resumed = runner.invoke(app, ["probe", "run", str(SAMPLE_JSON), *flags, "--out", str(cell)])
        assert resumed.exit_code == 0, resumed.output
        assert len(fake.requests) == sent  # probe resumes the cell: nothing to ask
        alone = tmp_path / "alone"
        assert runner.invoke(app, ["probe", "run", str(SAMPLE_JSON), *flags, "--out", str(alone)]).exit_code == 0
    identity = json.loads((cell / "run.json").read_text())
    assert identity == json.loads((alone / "run.json").read_text())
    reported = runner.invoke(app, ["report", str(cell), str(alone), "-o", str(tmp_path / "rep")])
    assert reported.exit_code == 0, reported.output


@pytest.mark.usefixtures("llm_env")
def test_a_dry_run_prices_every_cell_and_the_total_and_sends_nothing(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url, "max_cost = 1.0")
        path.write_text(path.read_text().replace('judge_model = "judge-model"', 'judge_model = "gpt-4o-mini"'))
        result = suite(path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert fake.requests == [] and not (tmp_path / "root").exists()
    lines = result.output.splitlines()
    assert len(lines) == 5 and all(line.startswith(CELLS[i] + ": ") for i, line in enumerate(lines[:4]))
    assert "mini+realtalk+full+realtalk: 12 requests (0 questions already done), estimated $0.00" in lines[0]
    assert lines[4].startswith("dry run of 4 cells: 36 requests, estimated $0.00")
    assert "; spent so far $0.0000; max_cost $1 leaves $1.0000" in lines[4]


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.usefixtures("llm_env")
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda s: s.replace('model = "gpt-4o-mini"', 'model = "gpt-4o-mini"\ntemprature = 0'),
            "[models.mini] unknown key 'temprature' (known: api_key_env, base_url, concurrency, model, price_in, "
            "price_out)",
        ),
        (lambda s: "judge = 'x'\n" + s, "unknown key 'judge' (known: "),
        (
            lambda s: s.replace("[datasets.locomo]", "[datasets.locomo]\nlimt = 2"),
            "[datasets.locomo] unknown key 'limt'",
        ),
        (
            lambda s: "max_cost = 1\n" + s.replace("price_in = 0.15\nprice_out = 0.6\n", ""),
            "[models.other] openai:judge-model has no price under max_cost; add it to prices.toml or set price_in and "
            "price_out (USD per million tokens) here",
        ),
        (
            lambda s: "max_cost = 1\n" + s,
            "judge_model = 'judge-model' has no price under max_cost; add it to prices.toml",
        ),
        (
            lambda s: s.replace(str(LOCOMO_TINY), "/nowhere/locomo.json"),
            "[datasets.locomo] no such file or folder: /nowhere/locomo.json",
        ),
        (lambda s: s.replace("[datasets.locomo]", "[datasets.locomo"), "malformed TOML"),
        (
            lambda s: s + "\n[contexts.r]\ncontext = 'retreival'\n",
            "[contexts.r] context = 'retreival' is not one of full, events, retrieval, bm25, dense, hybrid, memory",
        ),
        (
            lambda s: s + "\n[contexts.bm25]\ncontext = 'bm25'\n[protocols.paper]\ncompat = 'paper'\n",
            "cell mini+realtalk+bm25+paper: --compat paper lays out the whole chat itself; drop --context/--memory",
        ),
        (
            lambda s: s.replace('api_key_env = "TEST_LLM_KEY"', 'api_key_env = "NO_SUCH_KEY_VAR"', 1),
            "cell mini+realtalk+full+realtalk: openai:gpt-4o-mini: set the API key in the environment variable "
            "NO_SUCH_KEY_VAR",
        ),
        (lambda s: s + "\n[models.\"../up\"]\nmodel = 'x'\n", "[models.../up] names a cell's folder"),
        (
            lambda s: s + "\n[models.more]\nmodel = 'judge-model'\nbase_url = 'URL'\nconcurrency = 3\n",
            "[models.more] concurrency = 3 but [models.mini] at the same endpoint",
        ),
    ],
)
def test_a_bad_suite_file_is_one_line_naming_the_key_or_file_before_any_request(tmp_path: Path, edit, expected):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url, "concurrency = 2")
        text = edit(path.read_text()).replace("'URL'", f"'{url}'")
        if "[models.more]" in text:  # the first model names its limit, the new one another
            text = text.replace('api_key_env = "TEST_LLM_KEY"', 'api_key_env = "TEST_LLM_KEY"\nconcurrency = 2', 1)
        path.write_text(text)
        result = suite(path)
    line = _error(result)
    assert line.startswith(f"error: {path}: ") and expected in line, line
    assert fake.requests == [] and not (tmp_path / "root").exists()


@pytest.mark.usefixtures("llm_env")
def test_a_cell_folder_holding_another_run_is_refused_before_any_request(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url)
        assert suite(path, "--limit", "1").exit_code == 0
        sent = len(fake.requests)
        path.write_text(path.read_text().replace('model = "judge-model"', 'model = "gpt-4o-mini"'))
        result = suite(path)
    line = _error(result)
    assert "cell other+realtalk+full+realtalk: " in line and "holds a run with other settings (model)" in line
    assert "remove that folder to start the cell afresh, or give the suite another out" in line
    assert len(fake.requests) == sent


def test_a_file_in_place_of_a_cell_folder_is_refused_before_any_cell_runs(tmp_path: Path):
    path = tmp_path / "suite.toml"
    path.write_text(
        f'out = "{tmp_path / "root"}"\n[models.bm25]\nmodel = "offline:bm25"\n'
        f'[datasets.realtalk]\npaths = ["{SAMPLE_JSON}"]\n[datasets.locomo]\npaths = ["{LOCOMO_TINY}"]\n'
    )
    (tmp_path / "root" / "cells").mkdir(parents=True)
    (tmp_path / "root" / "cells" / "bm25+locomo+full+realtalk").write_text("x")
    line = _error(suite(path))
    assert line == (
        f"error: {path}: cell bm25+locomo+full+realtalk: {tmp_path}/root/cells/bm25+locomo+full+realtalk: a file is in "
        "the way; a cell needs a folder"
    )
    assert sorted(p.name for p in (tmp_path / "root" / "cells").iterdir()) == ["bm25+locomo+full+realtalk"]


@pytest.mark.usefixtures("llm_env")
def test_max_cost_caps_the_whole_grid_across_cells_and_invocations(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, latency_s=0.01)
    (tmp_path / "priced").mkdir()
    with serve_llm(fake) as url:

        def grid(where: Path, extra: str) -> Path:
            path = suite_file(where, url, f"concurrency = 1\nparallel = 4\n{extra}")
            path.write_text(path.read_text().replace('judge_model = "judge-model"\n', ""))
            return path

        assert suite(grid(tmp_path / "priced", ""), "--no-cache").exit_code == 0
        whole = spent(tmp_path / "priced" / "root")
        fake.requests.clear()
        cap = whole * 0.4  # reached in the first cells
        path = grid(tmp_path, f"max_cost = {cap!r}")
        first = suite(path, "--no-cache", "--json")
        assert first.exit_code == 3, first.output
        sent = len(fake.requests)
        words = max(len(" ".join(m["content"] for m in r["messages"]).split()) for r in fake.requests)
        biggest = (words * 0.15 + 10 * 0.60) / 1e6  # the most one request costs (the server counts words)
        assert cap <= spent(tmp_path / "root") <= cap + biggest  # at most the one request in flight
        cells = json.loads(first.stdout)["cells"]
        stopped = [c for c in cells if c["status"] != "complete"]
        assert stopped and all(c["reason"].startswith("stopped at --max-cost") for c in stopped), cells
        again = suite(path, "--no-cache")
        assert again.exit_code == 3 and len(fake.requests) == sent  # the grid's cap is spent: nothing is sent
        more = suite(path, "--no-cache", "--max-cost", str(whole * 3))
        assert more.exit_code == 0, more.output
    assert len(fake.requests) == 2 * (6 + 3)  # every question answered once over the three invocations
    last = json.loads((tmp_path / "root" / "cells" / CELLS[-1] / "report.json").read_text())
    assert last["manifest"]["parameters"]["max_cost"] < whole * 3  # the cell's cap: what the grid had left


def test_an_endpoint_gate_holds_its_limit_across_threads_and_event_loops():
    gate = EndpointGate(3)
    state = {"now": 0, "most": 0, "done": 0}
    lock = threading.Lock()

    async def one() -> None:
        async with gate.slot():
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            await asyncio.sleep(0.002)
            with lock:
                state["now"] -= 1
                state["done"] += 1

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(40)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert state == {"now": 0, "most": 3, "done": 160} and gate.in_flight == 0


def test_an_endpoint_gate_passes_on_a_wake_up_its_cancelled_waiter_cannot_use():
    gate = EndpointGate(1)

    async def main() -> None:
        async with gate.slot():
            first = asyncio.ensure_future(_hold(gate))
            second = asyncio.ensure_future(_hold(gate))
            await asyncio.sleep(0.01)
        first.cancel()  # woken by the release above, cancelled before it ran: the slot goes to `second`
        await asyncio.wait_for(second, 2)

    asyncio.run(main())
    assert gate.in_flight == 0


async def _hold(gate: EndpointGate) -> None:
    async with gate.slot():
        await asyncio.sleep(0.01)


@pytest.mark.usefixtures("llm_env")
def test_cells_at_one_endpoint_share_its_limit_and_other_endpoints_run_beside_them(tmp_path: Path):
    times: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    busy = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}
    lock = threading.Lock()

    def timed(name: str):
        def reply(body: dict) -> str:
            # counted while the reply is made: after the request arrived, before the response goes out, so within
            # the client's slot (the server's own count ends after the response is written, a little later)
            with lock:
                busy[name] += 1
                most[name] = max(most[name], busy[name])
            start = time.monotonic()
            time.sleep(0.03)
            times[name].append((start, time.monotonic()))
            with lock:
                busy[name] -= 1
            return gold_reply(body)

        return reply

    a, b = FakeLLM(reply=timed("a")), FakeLLM(reply=timed("b"))
    with serve_llm(a) as url_a, serve_llm(b) as url_b:
        models = (
            f'[models.mini]\nmodel = "gpt-4o-mini"\nbase_url = "{url_a}"\napi_key_env = "TEST_LLM_KEY"\n'
            "concurrency = 2\n"
            f'[models.mini2]\nmodel = "judge-model"\nbase_url = "{url_a}"\napi_key_env = "TEST_LLM_KEY"\n'
            f'[models.elsewhere]\nmodel = "gpt-4o-mini"\nbase_url = "{url_b}"\napi_key_env = "TEST_LLM_KEY"\n'
            "concurrency = 3\n"
        )
        path = suite_file(tmp_path, url_a, "parallel = 6", models=models)
        result = suite(path, "--no-cache")
    assert result.exit_code == 0, result.output
    assert most == {"a": 2, "b": 3}  # four cells at a share 2; b's two cells share 3
    assert any(s1 < e2 and s2 < e1 for s1, e1 in times["a"] for s2, e2 in times["b"])  # both at once


def test_a_suite_killed_mid_cell_resumes_that_cell_where_it_stopped(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply, latency_s=0.2)
    env = {**os.environ, "TEST_LLM_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp_path / "cache")}
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url, "concurrency = 1\nparallel = 1")
        path.write_text(path.read_text().replace('judge_model = "judge-model"\n', ""))
        cmd = [sys.executable, "-m", "realtalk_cli", "suite", str(path)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        predictions = tmp_path / "root" / "cells" / CELLS[0] / "predictions.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if predictions.exists() and predictions.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kept = len(read_jsonl(predictions))
        assert 2 <= kept < 6
        before = len(fake.requests)
        assert before <= kept + 1  # at most the one request in flight is lost
        finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert finished.returncode == 0, finished.stderr
    assert sorted(r["qa_index"] for r in read_jsonl(predictions)) == list(range(6))
    assert len(fake.requests) == before + (2 * (6 + 3) - kept)  # the rest of the grid, nothing twice
    assert "started mini+realtalk+full+realtalk" in finished.stderr  # one line per cell, not a terminal
    assert finished.stderr.count("finished ") == 4


LOUD = """
import time

class Loud:
    version = "1"

    def ingest(self, chat, tools):
        self.ids = [m.dia_id for m in chat.messages()]

    def recall(self, question, budget):
        print("PRINT-IN-RECALL")
        time.sleep(0.02)
        return self.ids[:2]
"""


@pytest.mark.usefixtures("llm_env")
def test_cells_with_a_memory_run_one_at_a_time_and_what_they_print_never_reaches_stdout(tmp_path: Path):
    (tmp_path / "loud.py").write_text(LOUD)
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        path = suite_file(tmp_path, url, "parallel = 4")
        path.write_text(path.read_text() + f'\n[contexts.loud]\nmemory = "{tmp_path / "loud.py"}:Loud"\n')
        result = suite(path, "--json", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "PRINT-IN-RECALL" not in result.stdout and "PRINT-IN-RECALL" in result.stderr
    assert [c["status"] for c in json.loads(result.stdout)["cells"]] == ["complete"] * 4


@pytest.mark.usefixtures("llm_env")
def test_the_example_suite_runs_with_its_local_model_served_by_the_loopback_server(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository's root
    example = (ROOT / "configs" / "suite-example.toml").read_text()
    fake = FakeLLM(reply=gold_reply, models=("llama3.2:1b",))
    with serve_llm(fake) as url:
        served = f'model = "ollama:llama3.2:1b"\nbase_url = "{url}"\napi_key_env = "TEST_LLM_KEY"\n#'
        path = tmp_path / "suite.toml"
        path.write_text(example.replace('model = "ollama:llama3.2:1b"', served, 1))
        dry = suite(path, "--out", tmp_path / "root", "--dry-run")
        assert dry.exit_code == 0 and fake.requests == [], dry.output
        assert "unknown" not in dry.output  # the offline baseline costs nothing: priced
        result = suite(path, "--out", tmp_path / "root", "--json", "--no-cache")
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["cells"]
    assert len(cells) == 8 and {c["status"] for c in cells} == {"complete"}
    assert len(fake.requests) == 2 * (4 + 2)  # the ollama cells' questions, each asked once
    assert (tmp_path / "root" / "report" / "report.html").is_file()


@pytest.mark.usefixtures("llm_env")
def test_a_cell_whose_input_fails_only_once_it_runs_is_exit_2_and_the_other_cells_still_run(tmp_path: Path):
    fake = FakeLLM(reply=gold_reply)
    with serve_llm(fake) as url:
        result = suite(suite_file(tmp_path, url, 'category = "adversarial"'), "--json", "--no-cache")
    assert result.exit_code == 2, result.output
    cells = {c["cell"]: c for c in json.loads(result.stdout)["cells"]}
    for name, c in cells.items():
        if "+locomo+" in name:  # the tiny LoCoMo chat has one adversarial question
            assert c["status"] == "complete" and c["questions"] is not None
        else:
            assert c["status"] == "error"
            assert c["reason"] == "--category adversarial: no question of that category in the chats given"
    assert f"error cell {CELLS[0]}: --category adversarial: no question of that category" in result.stderr
    assert len(answers(fake)) == 2


def test_a_cell_the_report_cannot_read_is_named_after_the_cells_outcome(tmp_path: Path):
    path = tmp_path / "suite.toml"
    path.write_text(
        f'out = "{tmp_path / "root"}"\n[models.bm25]\nmodel = "offline:bm25"\n'
        f'[datasets.realtalk]\npaths = ["{SAMPLE_JSON}"]\n'
    )
    assert suite(path).exit_code == 0
    rows = tmp_path / "root" / "cells" / "bm25+realtalk+full+realtalk" / "predictions.jsonl"
    lines = rows.read_text().splitlines()
    rows.write_text("\n".join([*lines[:-1], lines[-1].replace('"chat":', '"chat": 5, "x":', 1)]) + "\n")
    result = suite(path)
    assert result.exit_code == 2, result.output
    assert "bm25+realtalk+full+realtalk" in result.stdout  # the cells' table first
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no leaderboard written: {rows}: row 6: ")


def test_fail_under_is_exit_1_when_a_complete_cells_overall_f1_is_below_it(tmp_path: Path):
    path = tmp_path / "suite.toml"
    path.write_text(
        f'out = "{tmp_path / "root"}"\nfail_under = 0.9\n[models.bm25]\nmodel = "offline:bm25"\n'
        f'[datasets.realtalk]\npaths = ["{SAMPLE_JSON}"]\n[datasets.locomo]\npaths = ["{LOCOMO_TINY}"]\n'
    )
    assert suite(path).exit_code == 1  # the REALTALK cell's F1 is 0.111, the LoCoMo one's 1.0
    assert suite(path, "--fail-under", "0.1").exit_code == 0  # the command line's wins


def test_suite_has_help_with_an_example_and_is_listed():
    shown = suite("--help").output
    assert "Usage: root suite [OPTIONS] FILE.toml" in shown and "Example" in shown and "<bool>" not in shown
    assert "suite" in runner.invoke(app, ["--help"]).output
