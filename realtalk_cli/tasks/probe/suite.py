"""A suite: a grid of probe runs declared in one TOML file (models x datasets x contexts x protocols), each cell a
normal probe run folder under one root, run in parallel within one limit per endpoint and one max_cost.

`load_suite` reads and checks the file (every key, type, path and price) and turns each cell into the options
`realtalk probe` would build from the same flags; `prepare_suite` prepares every cell (endpoints, prices, memory,
identity; an existing folder must hold the same run) before anything is sent; `plan_suite` is the dry run and
`run_suite` runs the cells, each in a thread of its own (a probe run is synchronous and runs its own event loop),
sharing `EndpointGate`s per base URL and a `GridBudget` whose max_cost check sums every cell's spending record.
"""

from __future__ import annotations

import math
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, read_toml
from realtalk_cli.llm.client import require_key
from realtalk_cli.llm.providers import Endpoint, resolve_model
from realtalk_cli.llm.scheduler import endpoint_limits
from realtalk_cli.llm.spending import Spending
from realtalk_cli.tasks.probe.options import PROBE_FILES, ProbeOptions, probe_settings
from realtalk_cli.tasks.probe.run import ProbeSetup, prepare, run_prepared
from realtalk_cli.tasks.runs.settings import check_settings, load_prices

DEFAULT_CONCURRENCY = 8  # requests in flight per endpoint when neither the file nor the model says
DEFAULT_PARALLEL = 4  # cells running at once

# The keys of each part of a suite file; those that are ProbeOptions fields are type-checked as probe's --config.
SUITE_KEYS = {
    "out", "max_cost", "judge_model", "judge_protocol", "limit", "category", "skip_adversarial", "concurrency",
    "parallel", "timeout", "max_context_tokens", "use_cache", "fail_under",
    "models", "datasets", "contexts", "protocols",
}  # fmt: skip
TABLE_KEYS = {
    "models": {"model", "base_url", "api_key_env", "concurrency", "price_in", "price_out"},
    "datasets": {"paths", "limit", "category", "skip_adversarial"},
    "contexts": {
        "context", "context_tokens", "top_k", "memory", "memory_options", "memory_timeout", "embedder",
        "max_context_tokens",
    },
    "protocols": {"compat", "judge_model", "judge_protocol"},
}  # fmt: skip
PROBE_KEYS = set(ProbeOptions.__dataclass_fields__)  # the top-level keys every cell's probe options take
DEFAULTS = {"contexts": {"full": {}}, "protocols": {"realtalk": {}}}  # one cell each when the file names none
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Cell:
    """One run of the grid: its names in the file, its chats and probe options, and how it ended."""

    model: str
    dataset: str
    context: str
    protocol: str
    files: list[Path]
    opts: ProbeOptions
    setup: ProbeSetup | None = None
    report: dict | None = None  # the run's report.json content, once it ran
    error: str | None = None  # why it stopped before its report (one line)
    exit_code: int = 0  # of that error: 2 input, 3 incomplete

    @property
    def name(self) -> str:
        return f"{self.model}+{self.dataset}+{self.context}+{self.protocol}"

    @property
    def endpoint(self) -> str:
        return (self.setup.endpoint.base_url or "").rstrip("/") if self.setup is not None else ""

    @property
    def complete(self) -> bool:
        return self.error is None and self.report is not None and self.report.get("complete", True) is True


@dataclass
class Suite:
    file: Path
    root: Path
    cells: list[Cell]
    max_cost: float | None = None
    fail_under: float | None = None
    parallel: int = DEFAULT_PARALLEL
    limits: dict[str, int] = field(default_factory=dict)  # base URL -> requests in flight
    concurrency: int = DEFAULT_CONCURRENCY  # the limit of an endpoint no model names (e.g. a judge's)
    budget: GridBudget | None = None

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def run_dirs(self) -> list[Path]:
        """The cells' folders that hold a run (a cell stopped before its first question has none)."""
        return [c.opts.out for c in self.cells if (c.opts.out / "predictions.jsonl").is_file()]


# --- the file -----------------------------------------------------------------------------------------------


def load_suite(path: Path, overrides: dict | None = None) -> Suite:
    """The suite file checked, cell by cell, before anything is prepared. `overrides` are the command line's
    (--out, --limit, --max-cost, --fail-under, use_cache): they win over the file, --limit over a dataset's too."""
    conf = read_toml(path)
    where = str(path)
    _check_keys(conf, where)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    conf.update(overrides)
    top = {k: v for k, v in conf.items() if k not in TABLE_KEYS}
    tables = {name: conf.get(name, DEFAULTS.get(name)) for name in TABLE_KEYS}
    suite = _grid_settings(path, top)
    for name in ("models", "datasets"):
        if not tables[name]:
            raise RealtalkError(f"{where}: no [{name}.NAME] table: a suite needs at least one")
    for name, entries in tables.items():
        for key, entry in entries.items():
            source = f"{where}: [{name}.{key}]"
            try:
                check_settings(entry, ProbeOptions, source)
            except RealtalkError as e:  # `file: [models.x] key = ...`, as the other lines name a table
                raise RealtalkError(str(e).replace(f"{source}: ", f"{source} ", 1)) from None
    endpoints = {key: _endpoint(model, f"{where}: [models.{key}]") for key, model in tables["models"].items()}
    suite.limits = _endpoint_limits(tables["models"], endpoints, suite.concurrency, where)
    for key, model in tables["models"].items():
        _check_price(model, endpoints[key], suite.max_cost, f"{where}: [models.{key}] {endpoints[key].label}")
    for key, protocol in tables["protocols"].items():
        judge = protocol.get("judge_model", top.get("judge_model"))
        if judge:
            source = f"{where}: [protocols.{key}]" if "judge_model" in protocol else f"{where}:"
            _check_price({}, _endpoint({"model": judge}, source), suite.max_cost, f"{source} judge_model = {judge!r}")
    datasets = {key: _dataset_paths(entry, f"{where}: [datasets.{key}]") for key, entry in tables["datasets"].items()}
    for m, model in tables["models"].items():
        limit = suite.limits.get((endpoints[m].base_url or "").rstrip("/"), suite.concurrency)
        for d, dataset in tables["datasets"].items():
            for c, context in tables["contexts"].items():
                for p, protocol in tables["protocols"].items():
                    given = {
                        **{k: v for k, v in top.items() if k in PROBE_KEYS},
                        **{k: v for k, v in model.items() if k != "concurrency"},
                        **{k: v for k, v in dataset.items() if k != "paths"},
                        **context,
                        **protocol,
                        "chats": datasets[d],
                        "out": suite.root / "cells" / f"{m}+{d}+{c}+{p}",
                        "concurrency": limit,  # the endpoint's: a cell alone may use all of it
                        **({"limit": overrides["limit"]} if "limit" in overrides else {}),
                    }
                    try:
                        files, opts, _ = probe_settings(None, given)
                    except RealtalkError as e:
                        raise RealtalkError(f"{where}: cell {m}+{d}+{c}+{p}: {e}") from None
                    suite.cells.append(Cell(m, d, c, p, files, opts))
    return suite


def _grid_settings(path: Path, top: dict) -> Suite:
    """The top-level keys: those that are probe options typed as probe's --config types them, and the grid's
    own (root, parallel, fail_under, max_cost, concurrency)."""
    where = str(path)
    check_settings(top, ProbeOptions, where)
    out = top.get("out")
    if not str(out or "").strip():
        raise RealtalkError(f'{where}: no root folder: set out = "runs/suite" in the file, or pass --out')
    root = Path(out).absolute()
    if root.exists() and not root.is_dir():
        raise RealtalkError(f"{where}: out = {str(out)!r} is a file; the suite's root must be a folder")
    parallel = top.get("parallel", DEFAULT_PARALLEL)
    if type(parallel) is not int or parallel < 1:
        raise RealtalkError(f"{where}: parallel = {parallel!r} is not a whole number of at least 1")
    fail_under = top.get("fail_under")
    if fail_under is not None and (type(fail_under) not in (int, float) or not math.isfinite(fail_under)):
        raise RealtalkError(f"{where}: fail_under = {fail_under!r} is not a number")
    max_cost = top.get("max_cost")
    if max_cost is not None and not max_cost > 0:
        raise RealtalkError(f"{where}: max_cost must be more than 0")
    concurrency = top.get("concurrency", DEFAULT_CONCURRENCY)
    return Suite(path, root, [], max_cost, fail_under, parallel, concurrency=concurrency)


def _check_keys(conf: dict, where: str) -> None:
    """Every key known, every table a table of named entries whose names can be folder names."""
    unknown = sorted(set(conf) - SUITE_KEYS)
    if unknown:
        raise RealtalkError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(SUITE_KEYS))})")
    for table, known in TABLE_KEYS.items():
        entries = conf.get(table, {})
        if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
            raise RealtalkError(f"{where}: {table} must be tables [{table}.NAME], e.g. [{table}.first]")
        for name, entry in entries.items():
            if not _NAME.fullmatch(name):
                raise RealtalkError(
                    f"{where}: [{table}.{name}] names a cell's folder: use letters, digits, '-', '_' and '.'"
                )
            unknown = sorted(set(entry) - known)
            if unknown:
                raise RealtalkError(
                    f"{where}: [{table}.{name}] unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})"
                )


def _endpoint(model: dict, source: str) -> Endpoint:
    if not isinstance(model.get("model"), str) or not model["model"].strip():
        raise RealtalkError(f'{source} needs model = "provider:model"')
    key_env = model.get("api_key_env")
    if isinstance(key_env, str) and key_env and not _ENV_NAME.fullmatch(key_env):  # never echoed: it may be a key
        raise RealtalkError(
            f"{source} api_key_env must name an environment variable (e.g. OPENAI_API_KEY) that holds the key, "
            "never the key itself"
        )
    try:
        return resolve_model(model["model"], model.get("base_url"), model.get("api_key_env"))
    except RealtalkError as e:
        raise RealtalkError(f"{source} {e}") from None


def _endpoint_limits(models: dict, endpoints: dict[str, Endpoint], default: int, where: str) -> dict[str, int]:
    """Requests in flight per endpoint (base URL): a model's `concurrency`, else the file's; models at one
    endpoint share one limit, so they must not name two."""
    given: dict[str, tuple[str, int]] = {}
    limits: dict[str, int] = {}
    for key, model in models.items():
        url = (endpoints[key].base_url or "").rstrip("/")
        if not url:
            continue  # offline: nothing is sent
        n = model.get("concurrency")
        if n is not None:
            first = given.setdefault(url, (key, n))
            if first[1] != n:
                raise RealtalkError(
                    f"{where}: [models.{key}] concurrency = {n} but [models.{first[0]}] at the same endpoint {url} "
                    f"says {first[1]}: models at one endpoint share one limit"
                )
        limits[url] = n if n is not None else limits.get(url, default)
    return limits


def _check_price(model: dict, endpoint: Endpoint, max_cost: float | None, source: str) -> None:
    """Under max_cost every model needs a price (prices.toml, or price_in/price_out on its table), as probe's
    --max-cost does (load_prices)."""
    prices = load_prices([endpoint], None, model.get("price_in"), model.get("price_out"))
    if max_cost is not None and not endpoint.offline and not prices.known(endpoint.model):
        way = " or set price_in and price_out (USD per million tokens) here" if "[models." in source else ""
        raise RealtalkError(f"{source} has no price under max_cost; add it to prices.toml{way}")


def _dataset_paths(entry: dict, source: str) -> list[Path]:
    paths = entry.get("paths")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise RealtalkError(f'{source} needs paths = ["chat.json", "folder/"] (chat files or folders)')
    for p in paths:
        if not Path(p).exists():
            raise RealtalkError(f"{source} no such file or folder: {p}")
    return [Path(p) for p in paths]


# --- before anything is sent --------------------------------------------------------------------------------


def prepare_suite(suite: Suite, dry_run: bool) -> None:
    """Prepare every cell as `realtalk probe` would (endpoints, judge, prices, memory, identity), check that a
    folder already there holds the same run, and that every API key is in the environment: all before any
    request. With max_cost each cell's spending record answers to the grid's budget."""
    if suite.max_cost is not None and not dry_run:
        suite.budget = GridBudget(suite.max_cost, suite.cells)
    for cell in suite.cells:
        try:
            spending = CellSpending(cell.opts.out, suite.budget) if suite.budget is not None else None
            cell.setup = prepare(cell.files, cell.opts, dry_run, spending)
            if cell.opts.out.exists() and not cell.opts.out.is_dir():
                raise RealtalkError(f"{cell.opts.out}: a file is in the way; a cell needs a folder")
            if cell.opts.out.is_dir():
                check_run_identity(cell.opts.out, cell.setup.identity, PROBE_FILES)
            if not dry_run:
                for endpoint in (cell.setup.endpoint, cell.setup.judge_endpoint):
                    if endpoint is not None:
                        require_key(endpoint)
        except RealtalkError as e:
            message = str(e).replace("; use a new --out, or --force to start that folder afresh", "")
            if message != str(e):
                message += "; remove that folder to start the cell afresh, or give the suite another out"
            raise RealtalkError(f"{suite.file}: cell {cell.name}: {message}") from None
    if suite.budget is not None:
        suite.budget.read_earlier()
    for cell in suite.cells:  # a judge at another endpoint gets that endpoint's limit, or the default
        for endpoint in (cell.setup.endpoint, cell.setup.judge_endpoint):
            url = (endpoint.base_url or "").rstrip("/") if endpoint is not None else ""
            if url and url not in suite.limits:
                suite.limits[url] = suite.concurrency


# --- the budget ---------------------------------------------------------------------------------------------


class GridBudget:
    """The suite's max_cost over every cell's run folder: what each cell spent before (its usage.jsonl, read when
    the suite starts and again when the cell starts) and what the running cells spend now. Once reached, every
    cell's clients are halted: nothing more is sent anywhere, the requests in flight are kept and counted."""

    def __init__(self, max_cost: float, cells: list[Cell]):
        self.max_cost = max_cost
        self.cells = cells
        self.earlier: dict[Path, float] = {}

    def read_earlier(self) -> None:
        for cell in self.cells:
            out = cell.opts.out
            self.earlier[out] = Spending(out).start(write=False).spent() if out.is_dir() else 0.0

    def spent(self) -> float:
        total = 0.0
        for cell in self.cells:
            spending = cell.setup.spending if cell.setup is not None else None
            started = isinstance(spending, CellSpending) and spending.started
            total += spending.spent() if started else self.earlier.get(cell.opts.out, 0.0)
        return total

    def left(self) -> float:
        return max(0.0, self.max_cost - self.spent())

    def over(self) -> bool:
        if self.spent() < self.max_cost:
            return False
        self.halt()
        return True

    def halt(self) -> None:
        """Send nothing more in any cell."""
        for cell in self.cells:
            for client in list(cell.setup.clients) if cell.setup is not None else []:
                client.halt()


class CellSpending(Spending):
    """A cell's spending record (its usage.jsonl, as any probe run's) whose --max-cost check is the grid's."""

    def __init__(self, run_dir: Path, budget: GridBudget):
        super().__init__(run_dir)
        self.budget = budget
        self.started = False

    def start(self, write: bool = True) -> Spending:
        super().start(write)
        self.started = True
        return self

    def record(self, stage: str, completions, batch: str | None = None) -> None:
        super().record(stage, completions, batch)
        self.budget.over()  # reached: every cell is halted before the endpoint lets another request through

    def over(self, max_cost: float | None) -> bool:
        return self.budget.over()


# --- dry run ------------------------------------------------------------------------------------------------


def plan_suite(suite: Suite) -> dict:
    """Each cell's dry run (probe's plan: answers, judge, memory ingestion, what its folder spent) and the grid's
    total beside max_cost."""
    cells = []
    for cell in suite.cells:
        try:
            plan = run_prepared(cell.setup, cell.files, dry_run=True)
        except RealtalkError as e:
            raise RealtalkError(f"{suite.file}: cell {cell.name}: {e}") from None
        parts = [plan, *(plan[k] for k in ("judge", "memory") if isinstance(plan.get(k), dict))]
        cells.append(
            {
                "cell": cell.name,
                "out": str(cell.opts.out),
                "requests": sum(p["requests"] for p in parts),
                "already_done": plan["already_done"],
                "estimated_cost_usd": plan["total"]["estimated_cost_usd"],
                "priced": plan["total"]["priced"],
                "spent_usd": plan["total"]["spent_usd"],
                "plan": plan,
            }
        )
    estimated = sum(c["estimated_cost_usd"] for c in cells)
    spent = sum(c["spent_usd"] for c in cells)
    total = {
        "requests": sum(c["requests"] for c in cells),
        "estimated_cost_usd": estimated,
        "priced": all(c["priced"] for c in cells),
        "spent_usd": spent,
        "max_cost": suite.max_cost,
        "left_usd": None if suite.max_cost is None else max(0.0, suite.max_cost - spent),
    }
    return {"suite": str(suite.file), "root": str(suite.root), "cells": cells, "total": total}


# --- the run ------------------------------------------------------------------------------------------------


def run_suite(suite: Suite, started: Callable[[Cell], object], finished: Callable[[Cell], None]) -> None:
    """Run every cell, at most `suite.parallel` at once, each endpoint's cells within its one limit. `started(cell)`
    returns the cell's progress callback (as `probe` takes); `finished(cell)` is called once it ended. A cell that
    stops on an error (one line: cell.error) does not stop the others; an unexpected exception stops the suite.
    Cells are started endpoint by endpoint in turn, so that every endpoint is kept busy; cells with a retriever
    or a memory one at a time."""
    done: queue.Queue[tuple[Cell, BaseException | None]] = queue.Queue()

    def work(cell: Cell, progress: object) -> None:
        crash = None
        try:
            if suite.budget is not None:  # the cell's cap: what it spent before plus what the grid has left
                cell.opts.max_cost = suite.budget.earlier.get(cell.opts.out, 0.0) + suite.budget.left()
            cell.report = run_prepared(cell.setup, cell.files, progress=progress)
        except RealtalkError as e:
            cell.error, cell.exit_code = str(e), e.exit_code
        except OSError as e:  # a full disk, a folder made read-only: one line, as probe says it
            cell.error, cell.exit_code = (f"{e.filename}: " if e.filename else "") + (e.strerror or str(e)), 2
        except BaseException as e:  # a bug: the suite stops and shows it
            crash = e
        finally:
            done.put((cell, crash))

    pending = list(suite.cells)
    running: dict[str, int] = {}
    alive = memory_alive = 0
    with endpoint_limits(suite.limits):
        try:
            while pending or alive:
                while alive < suite.parallel:
                    # a memory's calls redirect the process's stdout and working directory while they run: one
                    # cell with a retriever or memory at a time, beside any number of others
                    ready = [c for c in pending if not (memory_alive and _has_memory(c))]
                    if not ready:
                        break
                    cell = min(ready, key=lambda c: running.get(c.endpoint, 0))
                    pending.remove(cell)
                    running[cell.endpoint] = running.get(cell.endpoint, 0) + 1
                    alive += 1
                    memory_alive += _has_memory(cell)
                    progress = started(cell)
                    threading.Thread(target=work, args=(cell, progress), name=cell.name, daemon=True).start()
                cell, crash = _next(done)
                running[cell.endpoint] -= 1
                alive -= 1
                memory_alive -= _has_memory(cell)
                if crash is not None:
                    raise crash
                finished(cell)
        except BaseException:  # Ctrl-C or a bug: nothing more is sent by any cell
            for cell in suite.cells:
                for client in list(cell.setup.clients) if cell.setup is not None else []:
                    client.halt()
            raise


def _has_memory(cell: Cell) -> bool:
    return cell.setup is not None and cell.setup.memories is not None


def _next(done: queue.Queue) -> tuple[Cell, BaseException | None]:
    """The next cell to end; waiting in short steps, so that Ctrl-C reaches the main thread."""
    while True:
        try:
            return done.get(timeout=0.2)
        except queue.Empty:
            continue


# --- the outcome --------------------------------------------------------------------------------------------


def cell_summary(cell: Cell) -> dict:
    """What the suite says of a cell: its status and headline figures, from its own report."""
    report = cell.report or {}
    overall = (report.get("overall") or {}).get("overall") or {}
    usage = ((report.get("usage") or {}).get("invocation") or {}).get("all_stages") or {}
    folder = ((report.get("usage") or {}).get("run_folder") or {}).get("all_stages") or {}
    if cell.error is not None:
        status, reason = "error", cell.error
    elif cell.complete:
        status, reason = "complete", None
    else:
        status, reason = "incomplete", (report.get("incomplete") or {}).get("reason") or "not finished"
    return {
        "cell": cell.name,
        "model": cell.model,
        "dataset": cell.dataset,
        "context": cell.context,
        "protocol": cell.protocol,
        "out": str(cell.opts.out),
        "status": status,
        "reason": reason,
        "exit_code": cell.exit_code if cell.error is not None else (0 if status == "complete" else 3),
        "questions": overall.get("count"),
        "f1": overall.get("f1"),
        "judge": overall.get("judge"),
        "requests": usage.get("requests"),
        "cost_usd": usage.get("cost_usd"),
        "spent_usd": folder.get("cost_usd"),
    }


def suite_exit_code(suite: Suite) -> int:
    """As probe's: 2 when a cell stopped on bad input, 3 when any cell is incomplete, 1 when a cell's overall F1 is
    under fail_under, else 0."""
    if any(c.error is not None and c.exit_code == 2 for c in suite.cells):
        return 2
    if not all(c.complete for c in suite.cells):
        return 3
    if suite.fail_under is not None:
        scores = [cell_summary(c)["f1"] for c in suite.cells]
        if any(s is None or (isinstance(s, float) and math.isnan(s)) or s < suite.fail_under for s in scores):
            return 1
    return 0
