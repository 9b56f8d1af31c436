"""How requests are scheduled and paid for: one concurrency limit for answer and judge, a chat's questions
sent together for the provider's prompt cache, cached tokens priced at the cached rate, and cache writes
that never wait on the event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.llm.cache import CachedResponse, ResponseCache
from realtalk_cli.llm.providers import Prices
from realtalk_cli.llm.scheduler import Limiter

from .conftest import REALTALK_JSON, SAMPLE_JSON, model_run_args, needs_shared
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("llm_env")


def judge_or_echo(body: dict) -> str:
    return '{"score": 1}' if "Predicted answer:" in body["messages"][0]["content"] else "I don't know"


def test_concurrency_counts_answer_and_judge_requests_together(tmp_path: Path):
    fake = FakeLLM(latency_s=0.05, reply=judge_or_echo)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--judge-model", "judge-model", "--concurrency", "2")
        result = runner.invoke(app, [*args, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert len(fake.requests) == 12  # 6 answers, 6 judgements
    assert fake.max_in_flight == 2


@needs_shared
def test_a_chats_first_question_goes_alone_and_cached_tokens_are_priced_at_the_cached_rate(tmp_path: Path):
    fake = FakeLLM(latency_s=0.05, prefix_cache=True)
    with serve_llm(fake) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--concurrency", "8", "--limit", "8", "--json")
        args[1] = str(REALTALK_JSON[0])  # a real chat: its prefix is far above the 1,024-token threshold
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    first = min(rows, key=lambda r: r["qa_index"])
    assert first["cached_tokens"] == 0  # nothing was answered before it
    others = [r for r in rows if r is not first]
    # the rest went out after the first had answered, so the chat (> 1,024 words) came from the cache
    assert all(1024 <= r["cached_tokens"] < r["prompt_tokens"] for r in others)
    assert all(r["cached_tokens"] % 128 == 0 for r in others)
    prices = Prices.load().table["gpt-4o-mini"]
    for r in rows:
        expected = (
            (r["prompt_tokens"] - r["cached_tokens"]) * prices["input"]
            + r["cached_tokens"] * prices["cached_input"]
            + r["completion_tokens"] * prices["output"]
        ) / 1e6
        assert r["cost_usd"] == pytest.approx(expected, rel=1e-12)
    report = json.loads(result.output)
    assert report["overall"]["cached_tokens"] == sum(r["cached_tokens"] for r in rows) > 0
    assert report["run"]["cached_tokens"] == report["overall"]["cached_tokens"]
    assert "served from the provider's prompt cache" in (tmp_path / "run" / "report.md").read_text()
    assert report["overall"]["cost_usd"] < Prices.load().cost("gpt-4o-mini", report["overall"]["prompt_tokens"], 0)


def test_odd_cached_token_counts_are_billed_in_full():
    from realtalk_cli.llm.replies import _cached_tokens

    counts = [_cached_tokens({"prompt_tokens_details": {"cached_tokens": n}}, 100) for n in (50, 101, -1, "7", None)]
    assert counts + [_cached_tokens({"prompt_tokens_details": {"cached_tokens": True}}, 100)] == [50, 0, 0, 0, 0, 0]
    assert _cached_tokens({"prompt_tokens_details": None}, 100) == _cached_tokens({}, 100) == 0


@needs_shared
def test_dry_run_estimates_cached_tokens(tmp_path: Path):
    with serve_llm(FakeLLM()) as url:
        args = model_run_args("probe", url, tmp_path / "run", "--dry-run", "--limit", "6", "--json")
        args[1] = str(REALTALK_JSON[0])
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    # every question but the first may be served the chat from the cache, in 128-token steps
    assert plan["cached_tokens_estimate"] > 0 and plan["cached_tokens_estimate"] % (5 * 128) == 0
    assert plan["prompt_tokens"] * 0.8 < plan["cached_tokens_estimate"] <= plan["prompt_tokens"] * 5 / 6
    assert plan["estimated_cost_usd"] < plan["estimated_cost_uncached_usd"]


def test_prices_columns():
    p = Prices({"m": {"input": 2.0, "cached_input": 0.5, "output": 8.0, "batch_input": 1.0, "batch_output": 4.0}})
    assert p.cost("m", 1_000_000, 1_000_000) == pytest.approx(10.0)
    assert p.cost("m", 1_000_000, 0, cached_tokens=400_000) == pytest.approx(0.6 * 2 + 0.4 * 0.5)
    assert p.cost("m", 1_000_000, 1_000_000, batch=True) == pytest.approx(5.0)
    assert p.cost("m", 1_000_000, 0, cached_tokens=10**9) == pytest.approx(0.5)  # never more cached than sent
    assert Prices({"n": {"input": 1.0, "output": 1.0}}).cost("n", 10**6, 0, cached_tokens=10**6) == pytest.approx(1.0)


def test_limiter_gives_freed_slots_to_the_lowest_priority_number_first():
    async def go() -> list[str]:
        limiter, order = Limiter(1), []
        gate = asyncio.Event()

        async def hold():
            async with limiter.slot():
                await gate.wait()

        async def ask(name: str, priority: int):
            async with limiter.slot(priority):
                order.append(name)

        holder = asyncio.ensure_future(hold())
        await asyncio.sleep(0)
        waiters = [asyncio.ensure_future(ask(n, p)) for n, p in [("answer1", 1), ("answer2", 1), ("judge", 0)]]
        cancelled = asyncio.ensure_future(ask("cancelled", 0))
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.set()
        await asyncio.gather(holder, *waiters)
        assert limiter.in_flight == 0
        return order

    assert asyncio.run(go()) == ["judge", "answer1", "answer2"]  # priority 0 first, then first come first served


def test_cache_serves_pending_writes_and_close_persists_them(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    for i in range(200):
        cache.put(f"k{i}", CachedResponse(f"t{i}", i, 1))
    assert cache.get("k199") == CachedResponse("t199", 199, 1)
    cache.close()
    again = ResponseCache(tmp_path / "c.sqlite")
    assert [again.get(f"k{i}").text for i in (0, 100, 199)] == ["t0", "t100", "t199"]
    assert again.get("missing") is None
    again.close()


def test_prompts_are_the_same_text_whichever_way_they_are_filled():
    from realtalk_cli.tasks.probe.items import Item
    from realtalk_cli.tasks.prompts import fill

    template = "{speaker_1} and {speaker_2}\n{context}\nQuestion: {question} ({option_a})"
    for context, question in [("plain chat", "q?"), ("chat with {question} in it", "q?"), ("chat", "{context}?")]:
        values = {"speaker_1": "A", "speaker_2": "B", "context": context, "question": question, "option_a": "x"}
        item = Item(None, None, 0, None, template, values)
        assert item.messages[0]["content"] == fill(template, **values)


def test_a_run_reads_its_predictions_once(tmp_path: Path, monkeypatch):
    import realtalk_cli.tasks.runs.results as probe_module  # predictions are read through read_predictions

    reads = []
    real = probe_module.read_jsonl
    monkeypatch.setattr(probe_module, "read_jsonl", lambda path: reads.append(path) or real(path))
    with serve_llm(FakeLLM(reply=judge_or_echo)) as url:
        for _ in range(2):  # a fresh run, then a resume with nothing left to ask
            args = model_run_args("probe", url, tmp_path / "run", "--judge-model", "judge-model", "--no-cache")
            assert runner.invoke(app, args).exit_code == 0
    assert [p.name for p in reads] == ["predictions.jsonl", "predictions.jsonl"]


def _console_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`realtalk ARGS` through the console script's entry point, with an atexit handler that leaves a mark."""
    mark = tmp_path / "atexit-ran"
    boot = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(lambda: pathlib.Path({str(mark)!r}).write_text('yes'))\n"
        "from realtalk_cli.cli import main\n"
        f"sys.argv = ['realtalk', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", boot], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, code", [(["probe", "{sample}", "--model", "offline:bm25"], 0), (["validate", "{missing}"], 2)]
)
def test_the_console_script_skips_teardown_but_keeps_exit_code_output_and_atexit(tmp_path: Path, args, code):
    args = [a.format(sample=SAMPLE_JSON, missing=tmp_path / "missing.json") for a in args]
    if args[0] == "probe":
        args += ["--out", str(tmp_path / "run"), "--json"]
    result = _console_script(tmp_path, *args)
    assert result.returncode == code, result.stderr
    assert (tmp_path / "atexit-ran").read_text() == "yes"
    if code == 0:
        report = json.loads(result.stdout)  # the whole JSON reached the pipe: stdout was flushed before the exit
        assert report["overall"]["overall"]["count"] == 6
        assert report == json.loads((tmp_path / "run" / "report.json").read_text()) | {"run": report["run"]}
    else:
        assert "missing.json" in result.stderr and "Traceback" not in result.stderr


def test_a_json_probe_run_imports_no_rich(tmp_path: Path):
    # rich costs ~35 ms to import: a run that prints only JSON (no progress bar, no table) does without it
    mark = tmp_path / "modules"
    boot = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(lambda: pathlib.Path({str(mark)!r}).write_text(' '.join(sorted(sys.modules))))\n"
        "from realtalk_cli.cli import main\n"
        f"sys.argv = ['realtalk', 'probe', {str(SAMPLE_JSON)!r}, '--model', 'offline:bm25', '--json', '--out',"
        f" {str(tmp_path / 'run')!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", boot], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["overall"]["overall"]["count"] == 6
    modules = mark.read_text().split()
    assert "realtalk_cli.tasks.probe.run" in modules
    assert not [m for m in modules if m.startswith(("rich.console", "rich.markup", "rich.progress"))]


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "--help"],
        ["probe", "run", "--help"],
        ["probe"],
        ["probe", "--bogus"],
        ["probe", "nonsense-command"],
        ["probe", "{sample}"],
        ["probe", "{sample}", "--model", "offline:bm25", "--context", "retreival", "--out", "{out}"],
        ["probe", "rescore", "--help"],
        ["probe", "show"],
        ["analyze", "--help"],
        ["analyze", "stats", "--help"],
        ["analyze", "nope"],
        ["simulate", "{sample}"],
        ["batch"],
    ],
)
def test_a_command_line_naming_a_group_builds_that_group_alone_and_answers_as_the_whole_app(tmp_path: Path, args):
    # typer builds every command's options before running one: `realtalk probe ...` builds the probe group's only
    from realtalk_cli.cli import _app_for

    args = [a.format(sample=SAMPLE_JSON, out=tmp_path / "run") for a in args]
    alone = _app_for(args)
    assert [g.name for g in alone.registered_groups] == [args[0]] and not alone.registered_commands
    whole, only = runner.invoke(app, args), runner.invoke(alone, args)
    assert (only.exit_code, only.output) == (whole.exit_code, whole.output)


def test_a_command_line_naming_a_command_of_a_group_builds_that_command_alone():
    from realtalk_cli.cli import _app_for

    def commands(args):
        return [c.name for c in _app_for(args).registered_groups[0].typer_instance.registered_commands]

    assert commands(["probe", "chat.json", "--model", "m"]) == ["run"]  # the group's default command
    assert commands(["probe", "rescore", "runs/x"]) == ["rescore"]
    assert commands(["analyze", "stats", "chat.json"]) == ["stats"]
    for args in (["probe"], ["probe", "--help"], ["probe", "--json", "x"], ["analyze", "nope"]):
        assert len(commands(args)) > 1, args  # help, an option first or an unknown name: every command


def test_other_command_lines_get_the_whole_app():
    from realtalk_cli.cli import _app_for

    for args in ([], ["--help"], ["--debug", "probe", "x"], ["validate", "x"], ["report", "x"], ["probes"]):
        assert _app_for(args) is app


def test_the_spending_record_opens_usage_jsonl_once_and_every_line_is_on_disk_as_written(tmp_path: Path, monkeypatch):
    import builtins

    from realtalk_cli.llm.client import Completion, Usage
    from realtalk_cli.llm.spending import USAGE_FILE, Spending

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda *a, **k: opened.append(Path(a[0]).name) or real_open(*a, **k))
    spending = Spending(tmp_path).start()
    for n in range(1, 4):
        spending.record("answer", [Completion("x", Usage(10, 2, cost_usd=0.001))])
        lines = (tmp_path / USAGE_FILE).read_bytes().splitlines()  # what a killed process would leave
        assert len(lines) == n and json.loads(lines[-1])["requests"] == 1
    spending.finish()
    assert json.loads((tmp_path / USAGE_FILE).read_bytes().splitlines()[-1]).keys() == {"wall_s"}
    assert opened.count(USAGE_FILE) == 1


def test_a_probe_against_an_api_imports_no_offline_baseline_or_retriever_and_offline_models_still_resolve():
    # run in a fresh interpreter: this test process may have imported them already
    code = (
        "import sys; import realtalk_cli.cli, realtalk_cli.tasks.probe.run; "
        "lazy = ['realtalk_cli.tasks.probe.baselines', 'realtalk_cli.tasks.memory.retrieval', "
        "'realtalk_cli.tasks.memory.builtins', 'realtalk_cli.tasks.memory.embeddings']; "
        "print([m for m in lazy if m in sys.modules]); "
        "from realtalk_cli.llm.providers import resolve_model; print(resolve_model('offline:bm25').label)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "offline:bm25"]


def test_offline_models_looked_up_from_many_threads_at_once_all_resolve():
    # a suite's cells run in threads: none may see the table before the baselines are registered
    code = (
        "import threading; import realtalk_cli.tasks; from realtalk_cli.llm.providers import resolve_model\n"
        "got, start = [], threading.Barrier(8)\n"
        "def look():\n"
        "    start.wait()\n"
        "    try: got.append(resolve_model('offline:bm25').label)\n"
        "    except Exception as e: got.append(repr(e))\n"
        "threads = [threading.Thread(target=look) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]; print(sorted(set(got)))"
    )
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "['offline:bm25']", done.stdout
