"""realtalk probe against a loopback OpenAI-compatible server, next to the least a Python client can do.

    python bench/probe.py [--latency 0.2] [--repeat 3] [--memory-questions 2000 20000] [--skip-memory]
                          [--realtalk-src DIR]   # measure another checkout (e.g. main before a change)

Reports, all measured in this one run on this machine:
- start-up: `realtalk --help`, and `realtalk probe CHAT --model offline:bm25` from process start to the
  written report, next to a bare `python -c pass`;
- speed: wall time of `realtalk probe` (a fresh process: imports counted) for 71 questions + judge at
  --concurrency 16 and 228 questions + judge at --concurrency 64, against a bare client (a fresh
  process too: `python bench/probe.py --bare ...`, an asyncio loop over the official openai SDK sending
  for each question the answer request then the judge request, the same prompts, the same number in
  flight). The ratio bare / realtalk is realtalk's share of the bare client's speed;
- memory: peak RSS of a synthetic run of 20,000 questions (the shared chats' questions repeated) with
  judge, and of resuming it (predictions read once);
- cost: the paper's layout billed in full against ours with the provider's prompt cache (dry-run
  estimates), and the cached share measured against the loopback server's emulated prefix cache;
- prompt tokens per question by layout, and BM25 evidence recall@k.
"""

from __future__ import annotations

import sys


def bare_client(prompts_path: str, url: str, concurrency: int) -> None:
    """The reference: nothing but the openai SDK and a semaphore."""
    import asyncio
    import json

    from openai import AsyncOpenAI

    with open(prompts_path) as f:
        jobs = [json.loads(line) for line in f]

    async def main() -> None:
        client = AsyncOpenAI(api_key="sk-test-secret-123", base_url=url, max_retries=0)
        limit = asyncio.Semaphore(concurrency)

        async def one(answer: list[dict], judge: list[dict]) -> None:
            async with limit:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=answer, max_tokens=32, temperature=0.0
                )
            async with limit:
                await client.chat.completions.create(
                    model="judge-model", messages=judge, max_tokens=200, temperature=0.0
                )

        await asyncio.gather(*(one(a, j) for a, j in jobs))
        await client.close()

    asyncio.run(main())


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--bare":
    bare_client(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    sys.exit(0)

import argparse  # noqa: E402
import compileall  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtalk_cli.tasks.probe.judges.realtalk import RealtalkJudge  # noqa: E402
from realtalk_cli.tasks.probe.options import ProbeOptions  # noqa: E402
from realtalk_cli.tasks.probe.protocols.realtalk import RealtalkProtocol  # noqa: E402
from tests.llm_server import API_KEY, FakeLLM, serve_llm  # noqa: E402

SHARED = ROOT.parent / "shared" / "realtalk"
REPLY = "I don't know"


def reply(body: dict) -> str:
    """The answer for answer requests, a verdict for the judge's."""
    return '{"score": 0}' if body.get("model") == "judge-model" else REPLY


def timed(cmd: list[str], env: dict) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB, exit code) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd[:6])}...: exit {proc.returncode}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss // 1024, proc.returncode


SOURCE: Path | None = None  # --realtalk-src: another checkout's realtalk_cli instead of the installed one


def realtalk_cmd(*args: str) -> list[str]:
    if SOURCE is None:
        return [sys.executable, "-m", "realtalk_cli", *args]
    boot = (
        f"import sys; sys.path.insert(0, {str(SOURCE)!r}); "
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]; "
        "from realtalk_cli.cli import main; main()"
    )
    return [sys.executable, "-c", boot, *args]


def write_bare_prompts(path: Path, files: list[Path], limit: int | None) -> int:
    """The requests realtalk sends: each question's prompt, and the judge prompt for the server's reply."""
    judge = RealtalkJudge()
    opts = ProbeOptions(model="gpt-4o-mini", out=path.parent, limit=limit)
    items = RealtalkProtocol().build_items(files, opts, "gpt-4o-mini", None)
    with open(path, "w") as f:
        for it in items:
            row = {"question": it.qa.question, "answer": it.qa.gold, "prediction": REPLY}
            f.write(json.dumps([it.messages, judge.messages(row)]) + "\n")
    return len(items)


def median(values: list[float]) -> float:
    return statistics.median(values)


def startup(env: dict, tmp: Path, repeat: int) -> None:
    chat = SHARED / "Chat_1_Emi_Elise.json"
    python = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(repeat)]
    helps = [timed(realtalk_cmd("--help"), env)[0] for _ in range(repeat)]
    probes = []
    for i in range(repeat):
        args = ["probe", str(chat), "--model", "offline:bm25", "--out", str(tmp / f"bm25-{i}"), "--no-cache"]
        probes.append(timed(realtalk_cmd(*args), env)[0])
    print(f"start-up (median of {repeat}, fresh processes):")
    print(f"  python -c pass                                  {median(python):6.2f} s")
    print(f"  realtalk --help                                 {median(helps):6.2f} s")
    print(f"  realtalk probe Chat_1 --model offline:bm25      {median(probes):6.2f} s  (to the written report)")


def speed(env: dict, url: str, tmp: Path, latency: float, repeat: int) -> None:
    scenarios = [("71 questions + judge", [SHARED / "Chat_8_Akib_Muhhamed.json"], None, 16)]
    scenarios.append(("228 questions + judge", [SHARED], 228, 64))
    print(f"\nspeed against a loopback endpoint with {latency * 1000:.0f} ms per request (median of {repeat}):")
    print("| run | bare client | realtalk | realtalk / bare (speed) |")
    print("|---|---:|---:|---:|")
    for label, files, limit, concurrency in scenarios:
        prompts = tmp / f"prompts-{concurrency}.jsonl"
        n = write_bare_prompts(prompts, files, limit)
        bound = 2 * n * latency  # one request at a time
        bare, rt = [], []
        for i in range(repeat):
            bare.append(timed([sys.executable, __file__, "--bare", str(prompts), url, str(concurrency)], env)[0])
            out = tmp / f"speed-{concurrency}-{i}"
            args = ["probe", *map(str, files), "--model", "gpt-4o-mini", "--judge-model", "judge-model"]
            args += ["--base-url", url, "--api-key-env", "BENCH_KEY", "--concurrency", str(concurrency)]
            args += ["--no-cache", "--out", str(out), "--json"] + (["--limit", str(limit)] if limit else [])
            rt.append(timed(realtalk_cmd(*args), env)[0])
            rows = (out / "predictions.jsonl").read_text().splitlines()
            assert len(rows) == n and all(json.loads(r)["error"] is None for r in rows), out
        b, r = median(bare), median(rt)
        print(
            f"| {label}, --concurrency {concurrency} | {b:.2f} s ({bound / b:.1f}x one-at-a-time) "
            f"| {r:.2f} s ({bound / r:.1f}x) | {b / r:.2f} |"
        )


def synthetic_chats(target: Path, questions: int) -> int:
    """The shared chats with their questions repeated until there are `questions` in all."""
    target.mkdir(parents=True, exist_ok=True)
    chats = sorted(SHARED.glob("*.json"))
    total = 0
    for i, path in enumerate(chats):
        data = json.loads(path.read_text())
        want = questions // len(chats) + (1 if i < questions % len(chats) else 0)
        data["qa"] = [data["qa"][j % len(data["qa"])] for j in range(want)]
        (target / path.name).write_text(json.dumps(data))
        total += want
    return total


def memory(env: dict, tmp: Path, sizes: list[int]) -> None:
    print(
        "\nmemory: synthetic questions (the shared chats' questions repeated) + judge, full context, --concurrency 64:"
    )
    for questions in sizes:
        fake = FakeLLM(reply=reply, record=False)
        synth = tmp / f"synthetic-{questions}"
        n = synthetic_chats(synth, questions)
        out = tmp / f"memory-run-{questions}"
        with serve_llm(fake) as url:
            args = ["probe", str(synth), "--model", "gpt-4o-mini", "--judge-model", "judge-model", "--base-url", url]
            args += ["--api-key-env", "BENCH_KEY", "--concurrency", "64", "--no-cache", "--out", str(out), "--json"]
            wall, rss, _ = timed(realtalk_cmd(*args), env)
            resume_wall, resume_rss, _ = timed(realtalk_cmd(*args), env)
        rows = sum(1 for _ in open(out / "predictions.jsonl"))
        print(
            f"  {n:6d} questions: peak RSS {rss} MB, {wall:.1f} s, {rows} predictions; "
            f"resuming the finished run: {resume_rss} MB, {resume_wall:.1f} s"
        )


PLANS: dict[tuple, dict] = {}


def dry_plan(env: dict, tmp: Path, *flags: str) -> dict:
    """A dry run over the shared REALTALK chats (gpt-4o-mini's tokenizer), computed once per set of flags."""
    if flags not in PLANS:
        args = ["probe", str(SHARED), "--model", "gpt-4o-mini", "--out", str(tmp / "dry"), "--dry-run", "--json"]
        result = subprocess.run(realtalk_cmd(*args, *flags), env=env, capture_output=True, text=True, check=True)
        PLANS[flags] = json.loads(result.stdout)
    return PLANS[flags]


def cost(env: dict, tmp: Path) -> None:
    from realtalk_cli.llm.providers import Prices

    print("\ncost of a full-context run over the shared REALTALK chats, answers (32 tokens each) only:")
    paper = dry_plan(env, tmp, "--compat", "paper")
    ours = dry_plan(env, tmp)
    prices = Prices.load()
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini"):
        out_tokens = 32 * ours["requests"]
        paper_cost = prices.cost(model, paper["prompt_tokens"], out_tokens)
        ours_cost = prices.cost(model, ours["prompt_tokens"], out_tokens, ours["cached_tokens_estimate"])
        batch_cost = prices.cost(model, ours["prompt_tokens"], out_tokens, batch=True)
        print(
            f"  {model:13s} paper's script ${paper_cost:7.2f} ({paper['prompt_tokens']} prompt tokens, none cached); "
            f"ours ${ours_cost:6.2f} (~{ours['cached_tokens_estimate']} of {ours['prompt_tokens']} cached): "
            f"{ours_cost / paper_cost:.2f} of the paper's cost; as a batch job (no cache discount assumed) "
            f"${batch_cost:.2f} ({batch_cost / paper_cost:.2f})"
        )
    fake = FakeLLM(reply=reply, record=False, prefix_cache=True)
    with serve_llm(fake) as cache_url:
        args = ["probe", str(SHARED), "--model", "gpt-4o-mini", "--base-url", cache_url, "--api-key-env", "BENCH_KEY"]
        args += ["--concurrency", "16", "--no-cache", "--out", str(tmp / "cached-run"), "--json"]
        timed(realtalk_cmd(*args), env)
    report = json.loads((tmp / "cached-run" / "report.json").read_text())["overall"]
    share = report["cached_tokens"] / report["prompt_tokens"]
    print(
        f"  measured: a live run of all {report['overall']['count']} questions against the loopback server's "
        f"emulated prefix cache: {share:.3f} of prompt tokens reported cached (the dry run estimated "
        f"{ours['cached_tokens_estimate'] / ours['prompt_tokens']:.3f})"
    )


def layouts_and_recall(env: dict, tmp: Path) -> None:
    # --top-k caps the number of windows (a message with up to 2 either side) packed under the --context-tokens
    # budget (2,700 by default); `retrieval` is hybrid when the dense embedder is installed, else bm25.
    print("\nprompt tokens per question over the shared REALTALK chats (dry run, gpt-4o-mini tokenizer):")
    for label, flags in [
        ("full (each session once)", ()),
        ("paper's protocol (--compat paper)", ("--compat", "paper")),
        ("retrieval: <= 10 windows in 2,700 tokens", ("--context", "retrieval", "--top-k", "10")),
        ("events", ("--context", "events")),
    ]:
        plan = dry_plan(env, tmp, *flags)
        print(f"  {label:42s} {plan['prompt_tokens_per_question']:>9.1f}  ({plan['prompt_tokens']} in all)")

    print("\nevidence recall with at most k windows in the 2,700-token context budget, shared REALTALK chats:")
    for k in (5, 10, 20, 50):
        args = ["probe", str(SHARED), "--model", "offline:bm25", "--out", str(tmp / f"bm25-k{k}"), "--context"]
        args += ["retrieval", "--top-k", str(k), "--json", "--no-cache"]
        result = subprocess.run(realtalk_cmd(*args), env=env, capture_output=True, text=True, check=True)
        report = json.loads(result.stdout)
        overall = report["overall"]["overall"]
        print(
            f"  {report['memory']['spec']}, <= {k:<2d} windows: recall {overall['recall']:.3f}, "
            f"{overall['context_tokens']:.0f} context tokens per question (offline:bm25 answer F1 {overall['f1']:.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-questions", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only", choices=["startup", "speed", "memory", "cost", "layouts"])
    parser.add_argument("--realtalk-src", type=Path, help="measure the realtalk_cli of another checkout")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    env = {**os.environ, "BENCH_KEY": API_KEY, "REALTALK_CACHE_DIR": str(tmp / "cache")}
    global SOURCE
    SOURCE = args.realtalk_src.resolve() if args.realtalk_src else None
    # Measure the package as pip installs it, with its bytecode compiled (an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would compile every module from source at each start, ~35 ms).
    compileall.compile_dir(str((SOURCE or ROOT) / "realtalk_cli"), quiet=1)
    wanted = (lambda part: args.only in (None, part)) if args.only else (lambda part: True)
    if wanted("startup"):
        startup(env, tmp, max(args.repeat, 3))
    if wanted("speed"):
        with serve_llm(FakeLLM(latency_s=args.latency, reply=reply, record=False)) as url:
            speed(env, url, tmp, args.latency, args.repeat)
    if wanted("memory") and not args.skip_memory:
        memory(env, tmp, args.memory_questions)
    if wanted("cost"):
        cost(env, tmp)
    if wanted("layouts"):
        layouts_and_recall(env, tmp)


if __name__ == "__main__":
    main()
