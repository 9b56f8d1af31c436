"""realtalk probe against a loopback OpenAI-compatible server, next to the least a Python client can do.

    python bench/probe.py [--latency 0.2] [--repeat 4] [--memory-questions 2000 20000] [--skip-memory]
                          [--only speed] [--profile DIR]   # --profile: cProfile and -X importtime files in DIR
                          [--realtalk-src DIR]   # measure another checkout (e.g. main before a change)

Reports, all measured in this one run on this machine:
- start-up: `realtalk --help`, and `realtalk probe CHAT --model offline:bm25` from process start to the
  written report, next to a bare `python -c pass`;
- speed: `realtalk probe` with a judge against a loopback endpoint (200 ms per request), next to a bare client
  doing the same requests: the bundled sample's 6 questions at --concurrency 16, and with ../shared the issue's
  two runs (Chat_8's 71 questions at --concurrency 16, 228 questions of the shared chats at --concurrency 64).
  realtalk's time is its whole process, as a user waits for it: from the spawn (interpreter start and imports
  counted) to the process reaped. The bare client (`python bench/probe.py --bare ...`: the official openai SDK,
  an asyncio semaphore, nothing else) sends realtalk's own prompts (built by realtalk's code from the same chats)
  and the judge prompt for each reply, as many in flight; its clock starts in its process before its imports
  and stops once its requests are done and its client closed (its interpreter start and teardown are not
  counted). It sends each chat's first question alone and the chat's others once it has answered, as realtalk
  does to fill the provider's prompt cache; the same client without that warm-up is shown too, the bare
  client's whole process (the measure earlier versions of this bench printed), and a bare client sending the
  way realtalk does (its body encoded with orjson, through the SDK's generic post: llm/client.py _post), which
  leaves realtalk's own overhead apart from its request path. Repetitions alternate the order
  of the programs; each line is the median (min-max), ratios are paired per repetition (bare / realtalk:
  realtalk's share of the bare client's speed), beside the CPU the machine's other processes used meanwhile.
  realtalk runs as `python -c PHASES_BOOT probe ...`: the console script's main() with six pipeline steps
  wrapped in timers, so that each run also says where its wall and CPU time went (median over the runs);
  --profile adds cProfile's own time per package for both, realtalk's costliest functions and slowest imports;
- memory: peak RSS of a synthetic run of 20,000 questions (the shared chats' questions repeated) with
  judge, and of resuming it (predictions read once);
- cost: the paper's layout billed in full against ours with the provider's prompt cache (dry-run
  estimates), and the cached share measured against the loopback server's emulated prefix cache;
- prompt tokens per question by layout, and BM25 evidence recall@k.
"""

from __future__ import annotations

import time

BARE_START = time.monotonic(), time.process_time()  # the bare client's clock starts here, before its imports

import sys  # noqa: E402


def bare_client(prompts_path: str, url: str, concurrency: int, mode: str) -> None:
    """The reference: nothing but the openai SDK and a semaphore. In modes "warm-up" and "post", each chat's first
    question goes alone and its other questions once it has answered, in realtalk's order (the provider's prompt
    cache); in "all-at-once", everything at once. "post" sends as realtalk does (llm/client.py _post: the body encoded
    with orjson, through the SDK's generic post), the others through chat.completions.create. Prints its own phases
    (monotonic seconds) as JSON: its clock starts before its imports and stops once its requests are done and the
    client closed, before the interpreter's teardown."""
    import asyncio
    import json

    from openai import AsyncOpenAI

    if mode == "post":
        import orjson
    imported = time.monotonic(), time.process_time()
    with open(prompts_path) as f:
        jobs = [json.loads(line) for line in f]
    read = time.monotonic(), time.process_time()

    async def main() -> None:
        client = AsyncOpenAI(api_key="sk-test-secret-123", base_url=url, max_retries=0)
        limit = asyncio.Semaphore(concurrency)
        firsts = {}
        for i, (group, _, _) in enumerate(jobs):
            firsts.setdefault(group, i)
        opened = {group: asyncio.Event() for group in firsts}

        async def send(model: str, messages: list[dict], max_tokens: int) -> None:
            if mode != "post":
                await client.chat.completions.create(
                    model=model, messages=messages, max_tokens=max_tokens, temperature=0.0
                )
                return
            body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
            options = {"headers": {"Content-Type": "application/json"}}
            await client.post("/chat/completions", cast_to=bytes, content=orjson.dumps(body), options=options)

        async def one(i: int) -> None:
            group, answer, judge = jobs[i]
            if mode != "all-at-once" and firsts[group] != i:
                await opened[group].wait()
            async with limit:
                await send("gpt-4o-mini", answer, 32)
            opened[group].set()
            async with limit:
                await send("judge-model", judge, 200)

        first = set(firsts.values()) if mode != "all-at-once" else set()
        order = sorted(first) + [i for i in range(len(jobs)) if i not in first]
        await asyncio.gather(*(one(i) for i in order))
        await client.close()

    asyncio.run(main())
    done = time.monotonic(), time.process_time()
    print(json.dumps({"start": BARE_START, "imports": imported, "read": read, "end": done}))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--bare":
    bare_client(sys.argv[2], sys.argv[3], int(sys.argv[4]), mode=sys.argv[5])
    sys.exit(0)

import argparse  # noqa: E402
import compileall  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
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


@dataclass
class Child:
    """A finished child process: wall seconds from spawn to reaped, CPU seconds, peak RSS (MB), exit code, stdout."""

    wall: float
    cpu: float
    rss: int
    code: int
    stdout: str
    spawned: float  # time.monotonic() just before the spawn (CLOCK_MONOTONIC: the child's clock too)
    reaped: float


def run_child(cmd: list[str], env: dict) -> Child:
    """Run a child to its end; exit codes other than 0 and 1 end the bench with its stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        spawned = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        reaped = time.monotonic()
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            sys.exit(f"{' '.join(cmd[:6])}...: exit {code}\n{err.read().decode()[-2000:]}")
        out.seek(0)
        text = out.read().decode()
    cpu = usage.ru_utime + usage.ru_stime
    return Child(reaped - spawned, cpu, usage.ru_maxrss // 1024, code, text, spawned, reaped)


def timed(cmd: list[str], env: dict) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB, exit code) of a child process."""
    child = run_child(cmd, env)
    return child.wall, child.rss, child.code


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
    """The requests realtalk sends, built by realtalk's own code: per question its chat (the warm-up's group), its
    prompt, and the judge prompt for the server's reply."""
    judge = RealtalkJudge()
    opts = ProbeOptions(model="gpt-4o-mini", out=path.parent, limit=limit)
    items = RealtalkProtocol().build_items(files, opts, "gpt-4o-mini", None)
    with open(path, "w") as f:
        for it in items:
            row = {"question": it.qa.question, "answer": it.qa.gold, "prediction": REPLY}
            f.write(json.dumps([str(it.chat_file), it.messages, judge.messages(row)]) + "\n")
    return len(items)


# `realtalk` with its phases timed: the pipeline's steps are wrapped (their module attributes, looked up at each
# call), the fast exit writes the times (and the profile, under BENCH_PROFILE: os._exit skips cProfile's own dump)
# before it ends the process. Times are (time.monotonic(), the clock the bench spawned the process by; CPU seconds).
PHASES_BOOT = """
import time
PYTHON = time.monotonic(), time.process_time()
import json, os, sys
{source}
profile = None
if os.environ.get("BENCH_PROFILE"):
    import cProfile
    profile = cProfile.Profile()
    profile.enable()
import realtalk_cli.cli as cli
from realtalk_cli.llm import client
from realtalk_cli.tasks.probe import run
marks = {{"python": PYTHON, "imports": (time.monotonic(), time.process_time())}}
spans = {{}}

def timing(owner, name):
    inner = getattr(owner, name)
    def timed(*args, **kwargs):
        start = time.monotonic(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spans.setdefault(name, []).append((start, (time.monotonic(), time.process_time())))
    setattr(owner, name, timed)

for name in ("run_probe", "prepare", "answer"):
    timing(run, name)
timing(run.ProbeSetup, "items")
timing(client, "openai_sdk")
fast_exit = os._exit

def write_then_exit(code):
    marks["exit"] = time.monotonic(), time.process_time()
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    with open(os.environ["BENCH_PHASES"], "w") as f:
        json.dump({{"marks": marks, "spans": spans}}, f)
    fast_exit(code)

os._exit = write_then_exit
sys.argv = ["realtalk", *sys.argv[1:]]
cli.main()
"""


def phases_boot() -> str:
    source = (
        f"sys.path.insert(0, {str(SOURCE)!r}); "
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]"
        if SOURCE is not None
        else ""
    )
    return PHASES_BOOT.format(source=source)


Phases = dict[str, tuple[float, float]]  # phase: (wall seconds, CPU seconds)


def between(start: list[float], end: list[float]) -> tuple[float, float]:
    return end[0] - start[0], end[1] - start[1]


def realtalk_phases(child: Child, path: Path) -> Phases:
    """Where a `realtalk probe` process spent its time, from the marks PHASES_BOOT wrote."""
    data = json.loads(path.read_text())
    marks, spans = data["marks"], data["spans"]
    ((run_start, run_end),) = spans["run_probe"]
    ((prepare_start, prepare_end),) = spans["prepare"]
    ((items_start, items_end),) = spans["items"]
    ((answer_start, answer_end),) = spans["answer"]
    sdk = [between(*span) for span in spans.get("openai_sdk", [])]
    sdk_time = sum(w for w, _ in sdk), sum(c for _, c in sdk)
    before_answer, prepare, items = (
        between(run_start, answer_start),
        between(*spans["prepare"][0]),
        between(*spans["items"][0]),
    )
    loop = between(answer_start, answer_end)
    return {
        "interpreter start": (marks["python"][0] - child.spawned, marks["python"][1]),
        "imports": between(marks["python"], marks["imports"]),
        "command line and settings": between(marks["imports"], run_start),
        "reading chats (prepare)": prepare,
        "building prompts (items)": items,
        "run folder": tuple(b - p - i for b, p, i in zip(before_answer, prepare, items, strict=True)),
        "openai SDK import": sdk_time,
        "request loop": (loop[0] - sdk_time[0], loop[1] - sdk_time[1]),
        "rows and reports": between(answer_end, run_end),
        "summary, exit call": between(run_end, marks["exit"]),
        "process exit": (child.reaped - marks["exit"][0], child.cpu - marks["exit"][1]),
    }


def bare_phases(child: Child) -> Phases:
    """Where the bare client's process spent its time (its own marks, and its start and end seen from here)."""
    marks = json.loads(child.stdout)
    return {
        "interpreter start": (marks["start"][0] - child.spawned, marks["start"][1]),
        "imports": between(marks["start"], marks["imports"]),
        "reading prompts": between(marks["imports"], marks["read"]),
        "request loop": between(marks["read"], marks["end"]),
        "process exit": (child.reaped - marks["end"][0], child.cpu - marks["end"][1]),
    }


def bare_clock(child: Child) -> float:
    """The bare client's own time: from before its imports to its requests done and its client closed."""
    marks = json.loads(child.stdout)
    return marks["end"][0] - marks["start"][0]


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


class OthersCPU:
    """How busy the rest of the machine is while the bench runs: the CPU time every process used (/proc/stat)
    minus the bench's own and its children's (all reaped), per second of wall time, in cores."""

    def __init__(self) -> None:
        self.start = time.monotonic(), self.everyone(), self.ours()

    @staticmethod
    def everyone() -> float:
        try:
            with open("/proc/stat") as f:
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        except (OSError, ValueError):
            return float("nan")
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float:
        wall, everyone, ours = self.start
        return max(0.0, (self.everyone() - everyone) - (self.ours() - ours)) / (time.monotonic() - wall)


def speed_scenarios(tmp: Path) -> list[tuple[str, list[Path], int | None, int]]:
    """(label, chats, --limit, --concurrency): the bundled sample always; with ../shared the issue's two runs, and
    the first again with every message's text replaced by ASCII filler of the same length."""
    sample = ROOT / "data" / "sample" / "Chat_S_Ana_Ben.json"
    scenarios = [("6 questions + judge (the bundled sample)", [sample], None, 16)]
    if SHARED.is_dir():
        chat = SHARED / "Chat_8_Akib_Muhhamed.json"
        scenarios.append(("71 questions + judge (Chat_8)", [chat], None, 16))
        scenarios.append(
            ("71 questions + judge (Chat_8, its text as ASCII filler)", [filler_chat(chat, tmp)], None, 16)
        )
        scenarios.append(("228 questions + judge (shared chats)", [SHARED], 228, 64))
    return scenarios


def filler_chat(path: Path, tmp: Path) -> Path:
    """A copy of a chat whose messages (and image captions) are ASCII filler of the same length: prompts of the
    same size as the real ones, without the real text's accents and emoji."""
    data = json.loads(path.read_text())
    filler = "lorem ipsum dolor sit amet " * 100
    for key, turns in data.items():
        if key.startswith("session_") and isinstance(turns, list):
            for turn in turns:
                for field in ("clean_text", "blip_caption"):
                    if isinstance(turn.get(field), str):
                        turn[field] = (filler * (len(turn[field]) // len(filler) + 1))[: len(turn[field])]
    target = tmp / "filler" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data))
    return target


def spread(values: list[float], digits: int = 2) -> str:
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def speed(
    env: dict, url: str, tmp: Path, latency: float, repeat: int, profile: Path | None, only: str | None = None
) -> None:
    print(
        f"\nspeed against a loopback endpoint with {latency * 1000:.0f} ms per request, {os.cpu_count()} cores; "
        f"{repeat} repetitions in alternating order, median (min-max); ratio = bare time / realtalk time, "
        "realtalk's share of the bare client's speed:"
    )
    for label, files, limit, concurrency in speed_scenarios(tmp):
        if only is None or only in label:
            Scenario(label, files, limit, concurrency, env, url, tmp).measure(repeat, profile)


@dataclass
class Scenario:
    """One speed run: realtalk and the bare client on the same questions, the same endpoint, the same limit."""

    label: str
    files: list[Path]
    limit: int | None
    concurrency: int
    env: dict
    url: str
    tmp: Path
    runs: int = 0

    def __post_init__(self) -> None:
        self.key = f"{self.concurrency}-{self.limit}-{self.files[0].parent.name}-{self.files[0].stem}"
        self.prompts = self.tmp / f"prompts-{self.key}.jsonl"
        self.questions = write_bare_prompts(self.prompts, self.files, self.limit)
        args = ["probe", *map(str, self.files), "--model", "gpt-4o-mini", "--judge-model", "judge-model"]
        args += ["--base-url", self.url, "--api-key-env", "BENCH_KEY", "--concurrency", str(self.concurrency)]
        self.args = args + ["--no-cache", "--json"] + (["--limit", str(self.limit)] if self.limit else [])

    def realtalk(self, cmd: list[str] | None = None, env: dict | None = None) -> Child:
        """`realtalk probe` into a new run folder (by default as a user starts it); every answer checked."""
        self.runs += 1
        out = self.tmp / f"speed-{self.key}-{self.runs}"
        child = run_child((cmd or realtalk_cmd(*self.args)) + ["--out", str(out)], env or self.env)
        rows = (out / "predictions.jsonl").read_text().splitlines()
        assert len(rows) == self.questions and all(json.loads(r)["error"] is None for r in rows), out
        return child

    def bare(self, mode: str = "warm-up", profile: Path | None = None) -> Child:
        script = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), __file__]
        return run_child([*script, "--bare", str(self.prompts), self.url, str(self.concurrency), mode], self.env)

    def realtalk_phased(self, phases: list[Phases]) -> Child:
        """`realtalk probe` through PHASES_BOOT: its main() with the pipeline's steps timed (and `phases` told)."""
        marks = self.tmp / f"phases-{self.key}-{self.runs + 1}.json"
        env = {**self.env, "BENCH_PHASES": str(marks)}
        child = self.realtalk([sys.executable, "-c", phases_boot(), *self.args], env)
        phases.append(realtalk_phases(child, marks))
        return child

    def measure(self, repeat: int, profile: Path | None) -> None:
        ours: list[Phases] = []
        programs = {
            "realtalk": lambda: self.realtalk_phased(ours),
            "bare": self.bare,
            "bare, no warm-up": lambda: self.bare("all-at-once"),
            "bare, realtalk's request path": lambda: self.bare("post"),
        }
        got: dict[str, list[Child]] = {name: [] for name in programs}
        loads, others = [os.getloadavg()[0]], OthersCPU()
        for i in range(repeat):
            for name in list(programs) if i % 2 == 0 else list(programs)[::-1]:
                got[name].append(programs[name]())
            loads.append(os.getloadavg()[0])
        rt = [c.wall for c in got["realtalk"]]
        bare, cold, same_path = got["bare"], got["bare, no warm-up"], got["bare, realtalk's request path"]
        lines = [
            ("realtalk, whole process (interpreter start to exit)", rt, got["realtalk"]),
            ("bare client, its own clock (from before its imports)", [bare_clock(c) for c in bare], bare),
            ("bare client, whole process (the earlier measure)", [c.wall for c in bare], bare),
            ("bare client without the warm-up, its own clock", [bare_clock(c) for c in cold], cold),
            ("bare client sending as realtalk does, its own clock", [bare_clock(c) for c in same_path], same_path),
        ]
        print(
            f"\n{self.label}, --concurrency {self.concurrency} (other processes used {others.cores():.2f} cores on "
            f"average meanwhile; load average {min(loads):.2f}-{max(loads):.2f}, the bench's own processes included):"
        )
        for n, (text, times, children) in enumerate(lines):
            ratio = f"  ratio {spread([t / r for t, r in zip(times, rt, strict=True)])}" if n else ""
            cpu = median([c.cpu for c in children])
            print(f"  {text:55s} {spread(times)} s  (CPU {cpu:.2f} s){ratio}")
        theirs = [bare_phases(c) for c in bare]
        print(f"  {'where the time went, seconds (medians of those runs)':55s}  realtalk wall (CPU)   bare wall (CPU)")
        for phase in dict.fromkeys([*ours[0], *theirs[0]]):
            cells = [
                "{:8.3f} ({:.3f})".format(*(median([p[phase][i] for p in runs]) for i in (0, 1)))
                if phase in runs[0]
                else ""
                for runs in (ours, theirs)
            ]
            print(f"    {phase:53s} {cells[0]:18s}  {cells[1]}")
        if profile is not None:
            self.profiled(profile)

    def profiled(self, out: Path) -> None:
        """--profile: each program once more under cProfile (own time by package side by side; realtalk's costliest
        functions), and realtalk under -X importtime (its slowest top-level imports); the files stay in `out`."""
        out.mkdir(parents=True, exist_ok=True)
        ours, theirs = out / f"realtalk-{self.key}.prof", out / f"bare-{self.key}.prof"
        env = {**self.env, "BENCH_PROFILE": str(ours), "BENCH_PHASES": str(out / f"phases-{self.key}.json")}
        self.realtalk([sys.executable, "-c", phases_boot(), *self.args], env)
        self.bare(profile=theirs)
        importtime = out / f"importtime-{self.key}.txt"
        with open(importtime, "w") as log:
            cmd = [sys.executable, "-X", "importtime", *realtalk_cmd(*self.args)[1:]]
            cmd += ["--out", str(out / f"importtime-run-{self.key}"), "--force"]  # --profile into the same DIR again
            subprocess.run(cmd, env=self.env, stderr=log, stdout=subprocess.DEVNULL, check=True)
        mine, functions = profile_groups(ours)
        other, _ = profile_groups(theirs)
        print(f"  profiled (cProfile, its overhead included; {out}): own time by package, s   realtalk      bare")
        for group in sorted(set(mine) | set(other), key=lambda g: -max(mine.get(g, 0), other.get(g, 0)))[:16]:
            print(f"    {group:53s} {mine.get(group, 0.0):8.3f}  {other.get(group, 0.0):8.3f}")
        print("  realtalk's costliest functions (own time, s):")
        for own, where in functions[:15]:
            print(f"    {own:7.3f}  {where}")
        top = []
        for line in importtime.read_text().splitlines():
            fields = line.removeprefix("import time:").split("|")
            if len(fields) == 3 and fields[1].strip().isdigit() and not fields[2].startswith("  "):
                top.append((int(fields[1]) / 1e6, fields[2].strip()))
        print(f"  realtalk's slowest top-level imports (-X importtime, cumulative, s; {importtime.name}):")
        for seconds, module in sorted(top, reverse=True)[:10]:
            print(f"    {seconds:7.3f}  {module}")


def cost_group(filename: str, function: str) -> str:
    """The package a profiled function's own time is counted under (C functions: what they do)."""
    if filename == "~":
        if "epoll" in function:
            return "(idle: waiting for replies in epoll)"
        if "socket" in function or "ssl" in function.lower():
            return "sockets"
        if any(word in function for word in ("marshal", "exec", "compile", "open_code", "posix.stat", "listdir")):
            return "imports (loading modules)"
        return "other C built-ins"
    if filename.startswith("<frozen importlib") or "/importlib/" in filename:
        return "imports (loading modules)"
    parts = Path(filename).parts
    if "realtalk_cli" in parts:
        here = parts[parts.index("realtalk_cli") :]
        return ".".join(here[:3]).removesuffix(".py")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "lib" in parts and len(parts) > parts.index("lib") + 2:
        return "stdlib " + parts[parts.index("lib") + 2].removesuffix(".py")
    return filename


def profile_groups(path: Path) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """A cProfile dump's own time per cost_group, and its functions by own time."""
    import pstats

    stats = pstats.Stats(str(path)).stats
    groups: dict[str, float] = {}
    functions = []
    for (filename, line, function), (_, _, own, _, _) in stats.items():
        group = cost_group(filename, function)
        groups[group] = groups.get(group, 0.0) + own
        where = function if filename == "~" else f"{Path(filename).name}:{line} {function}"
        functions.append((own, f"{where} [{group}]"))
    return groups, sorted(functions, reverse=True)


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
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--memory-questions", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only", choices=["startup", "speed", "memory", "cost", "layouts"])
    parser.add_argument("--realtalk-src", type=Path, help="measure the realtalk_cli of another checkout")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="speed: also profile each run into DIR")
    parser.add_argument("--scenario", metavar="TEXT", help="speed: only the runs whose label holds TEXT")
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
            speed(env, url, tmp, args.latency, args.repeat, args.profile, args.scenario)
    if wanted("memory") and not args.skip_memory:
        memory(env, tmp, args.memory_questions)
    if wanted("cost"):
        cost(env, tmp)
    if wanted("layouts"):
        layouts_and_recall(env, tmp)


if __name__ == "__main__":
    main()
