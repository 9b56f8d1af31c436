"""What a run folder has spent over all its invocations: `usage.jsonl`, appended and flushed line by line.

A line per finished request (its stage: answer, judge, memory ingestion, labels; sent or answered by the
cache), a line per collected batch job (its id, so that a batch is never counted twice), and a line per
invocation with its wall time. `--max-cost` compares the whole folder's spending with the cap, across resumes,
live and batch alike; the report shows this invocation's and the folder's totals. Only what happened is
written: a killed process loses at most its own wall-time line.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from pathlib import Path

import orjson

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import LOCK_FILE, RUN_FILE, read_jsonl
from realtalk_cli.llm.client import Completion, LLMClient, Totals

USAGE_FILE = "usage.jsonl"
STAGES = ("answer", "judge", "memory", "labels")  # in the order reports list them
_COUNTS = [f.name for f in fields(Totals)]


class Spending:
    """The run folder's spending record: earlier invocations (read once, when the run holds its folder) and this
    one (recorded as each request finishes)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / USAGE_FILE
        self.before: dict[str, Totals] = {}
        self.now: dict[str, Totals] = {}
        self.wall_before = 0.0
        self.invocations_before = 0
        self._batches: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # a memory's requests are recorded from its own thread
        self._started = time.perf_counter()
        self._file = None  # usage.jsonl, opened for appending at the first line this invocation writes

    def start(self, write: bool = True) -> Spending:
        """Read what earlier invocations spent (the caller holds the run folder); this invocation's clock starts.
        A folder of an earlier version (rows, no usage.jsonl) is credited with what its rows say they cost,
        written down as usage.jsonl's first lines (unless `write` is False: a dry run writes nothing)."""
        if self.path.exists():
            lines = read_jsonl(self.path)
        else:
            lines = _from_rows(self.path.parent / "predictions.jsonl")
            for line in lines if write else []:
                self._append(line)
        for n, line in enumerate(lines, start=1):
            if isinstance(line, dict) and set(line) == {"wall_s"} and _amount(line["wall_s"]):
                self.wall_before += line["wall_s"]
                self.invocations_before += 1
                continue
            counts = isinstance(line, dict) and all(_amount(line.get(k)) for k in _COUNTS)
            if not counts or line.get("stage") not in STAGES:
                raise RealtalkError(f"{self.path}: line {n}: not a spending record (stage and counts)")
            totals = Totals(**{k: line[k] for k in _COUNTS})
            self.before[line["stage"]] = self.before.get(line["stage"], Totals()).plus(totals)
            if isinstance(line.get("batch"), str):
                self._batches.add((line["stage"], line["batch"]))
        self._started = time.perf_counter()
        return self

    def attach(self, client: LLMClient | None, stage: str) -> LLMClient | None:
        """Record every request `client` finishes under `stage`."""
        if client is not None:
            client.on_completion = lambda c: self.record(stage, [c])
        return client

    def record(self, stage: str, completions: Iterable[Completion], batch: str | None = None) -> None:
        """Finished requests of a stage; with `batch`, a collected batch job's (recorded once, whatever happens)."""
        totals = Totals()
        for c in completions:
            totals.add(c)
        with self._lock:
            if batch is not None and (stage, batch) in self._batches:
                return
            line = {"stage": stage, **vars(totals)} | ({"batch": batch} if batch is not None else {})
            self._append(line)
            self.now[stage] = self.now.get(stage, Totals()).plus(totals)
            if batch is not None:
                self._batches.add((stage, batch))

    def spent(self) -> float:
        """USD spent by the run folder so far: every stage, every invocation."""
        with self._lock:
            return sum(t.cost_usd for t in [*self.before.values(), *self.now.values()])

    def over(self, max_cost: float | None) -> bool:
        return max_cost is not None and self.spent() >= max_cost

    def seconds(self) -> float:
        """This invocation's wall time so far."""
        return time.perf_counter() - self._started

    def finish(self) -> None:
        """This invocation's wall time, once it ends; none in a folder that holds nothing of a run yet (a run that
        failed before doing anything leaves no file behind)."""
        with self._lock:
            if self.path.exists() or _holds_a_run(self.path.parent):
                self._append({"wall_s": self.seconds()})
            if self._file is not None:
                self._file.close()
                self._file = None

    def summary(self) -> dict:
        """The report's `usage`: this invocation's and the run folder's requests, tokens and cost per stage and
        summed over the stages (`all_stages`), exact (unrounded), and the wall times."""
        with self._lock:
            now = {s: self.now.get(s, Totals()) for s in STAGES if s in self.now}
            folder = {s: self.before.get(s, Totals()).plus(self.now.get(s, Totals())) for s in STAGES}
            folder = {s: t for s, t in folder.items() if s in self.now or s in self.before}
        seconds = self.seconds()
        return {
            "invocation": {**_stages(now), "wall_seconds": seconds},
            "run_folder": {
                **_stages(folder),
                "wall_seconds_total": self.wall_before + seconds,
                "invocations": self.invocations_before + 1,
            },
        }

    def _append(self, line: dict) -> None:
        """One line, flushed at once (opened once per invocation: a run records every request)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # closed by finish()
        self._file.write(orjson.dumps(line) + b"\n")
        self._file.flush()


def _holds_a_run(run_dir: Path) -> bool:
    """Whether the folder holds a run's own file with something in it (rows, a batch record, a report)."""
    return any(p.is_file() and p.name not in (RUN_FILE, LOCK_FILE) and p.stat().st_size > 0 for p in run_dir.iterdir())


def _from_rows(path: Path) -> list[dict]:
    """The spending an earlier version's run folder shows in its rows (answers and verdicts; what failed rows
    cost and what was replaced is not there), as usage.jsonl lines, marked `from_rows`."""
    try:
        rows = [r for r in read_jsonl(path) if isinstance(r, dict)]
    except RealtalkError:
        return []  # a damaged predictions file is reported by the run that reads it
    lines = []
    for stage, prefix in (("answer", ""), ("judge", "judge_")):
        totals = Totals()
        for r in rows:
            cost = r.get(f"{prefix}cost_usd")
            if not _amount(cost):
                continue
            totals.requests += 1
            totals.cost_usd += cost
            for name in ("prompt_tokens", "completion_tokens"):
                value = r.get(f"{prefix}{name}")
                setattr(totals, name, getattr(totals, name) + (value if type(value) is int and value >= 0 else 0))
        if totals.requests:
            lines.append({"stage": stage, **asdict(totals), "from_rows": True})
    return lines


def _amount(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _stages(by_stage: dict[str, Totals]) -> dict:
    total = Totals()
    for t in by_stage.values():
        total = total.plus(t)
    return {**{s: asdict(t) for s, t in by_stage.items()}, "all_stages": asdict(total)}


def planned_total(plan: dict, run_dir: Path, max_cost: float | None) -> dict:
    """A dry run's `total`: its estimates summed (the requests' own, and those of its `judge`, `memory` and
    `labels` parts), beside what the run folder has spent so far (read, nothing written) and --max-cost."""
    parts = [plan, *(plan[k] for k in ("judge", "memory", "labels") if isinstance(plan.get(k), dict))]
    spent = Spending(run_dir).start(write=False).spent() if run_dir.is_dir() else 0.0
    return {
        "estimated_cost_usd": sum(p["estimated_cost_usd"] for p in parts),
        "priced": all(p["priced"] for p in parts),
        "spent_usd": spent,  # by the run folder's earlier invocations: --max-cost covers both
        "max_cost": max_cost,
    }


def run_times(usage: dict) -> dict:
    """report.json's `run` times: this invocation's (`wall_time_s`) and all the folder's (`wall_seconds_total`)."""
    return {
        "wall_time_s": round(usage["invocation"]["wall_seconds"], 3),
        "wall_seconds_total": round(usage["run_folder"]["wall_seconds_total"], 3),
    }


def request_counts(usage: dict) -> dict:
    """report.json's `run` counts of this invocation beside the older fields: every stage's requests summed
    (`total_requests`), the memory's apart, and the replies whose usage is an estimate."""
    now = usage["invocation"]
    return {
        "total_requests": now["all_stages"]["requests"] - now.get("memory", {}).get("requests", 0),
        "memory_requests": now.get("memory", {}).get("requests", 0),
        "tokens_estimated": now["all_stages"]["estimated"],
    }


def usage_lines(usage: dict) -> list[str]:
    """What the terminal summary and report.md say about requests and money: this invocation's requests, total
    first (the memory's ingestion on its own line), replies whose usage is estimated, and the run folder's totals."""
    now, folder = usage["invocation"], usage["run_folder"]
    asked = [s for s in STAGES if s != "memory" and s in folder] or ["answer"]
    lines = [_requests_line(now, asked, f"{now['wall_seconds']:.1f} s")]
    memory = now.get("memory")
    if memory and memory["requests"]:
        lines.append(
            f"memory ingestion: {memory['requests']} requests ({memory['cached']} cached, {memory['retries']} retries, "
            f"{memory['errors']} errors), {memory['prompt_tokens']} prompt + {memory['completion_tokens']} completion "
            f"tokens, ${memory['cost_usd']:.4f}"
        )
    if now["all_stages"]["estimated"]:
        lines.append(
            f"{now['all_stages']['estimated']} replies came without usage: their tokens and cost are estimated with "
            "realtalk's tokenizer"
        )
    if folder["invocations"] > 1:
        lines.append(
            f"run folder, all {folder['invocations']} invocations: "
            + _requests_line(folder, [s for s in STAGES if s in folder], f"{folder['wall_seconds_total']:.1f} s")
        )
    return lines


def _requests_line(by_stage: dict, stages: list[str], seconds: str) -> str:
    """`142 requests (71 answer, 71 judge; 0 cached, 2 retries, 0 errors), 12.3 s, $0.0123`: these stages'
    requests, their sum first."""
    counts = {s: Totals(**by_stage[s]) if s in by_stage else Totals() for s in stages}
    total = Totals()
    for t in counts.values():
        total = total.plus(t)
    parts = ", ".join(f"{t.requests} {s}" for s, t in counts.items())
    return (
        f"{total.requests} requests ({parts}; {total.cached} cached, {total.retries} retries, {total.errors} errors), "
        f"{seconds}, ${total.cost_usd:.4f}"
    )


def halting(spending: Spending, max_cost: float | None, clients: Callable[[], Iterable[LLMClient]]):
    """An over-budget check for a run loop: True (and every client halted) once the folder's spending reaches
    --max-cost."""

    def over_budget() -> bool:
        if not spending.over(max_cost):
            return False
        for c in clients():
            c.halt()
        return True

    return over_budget
