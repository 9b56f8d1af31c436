"""Saved run directories, read without writing to them: manifest, report.json and predictions.jsonl.

Runs are read defensively: fields that later versions add (date-normalised F1, retrieval, memory, run
completeness, cached tokens) are used when present and shown as missing otherwise.

predictions.jsonl is read once, line by line, and never held as row dicts: a run of 250,000 questions keeps, per
answered question, its item number, scores, category and the byte offset of its line (`Answers`), and the sums
of its usage. What a page shows of an answer (prediction, evidence, retrieved ids) is read again from that
offset when it is written (`Run.answered_rows`, `Run.rows_at`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from realtalk_cli.data.formats import read_json
from realtalk_cli.data.model import matches_category
from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.probe.judge import judges_problem

PROBE_METRICS = {
    "f1": "F1",
    "f1_date_normalised": "date-normalised F1",
    "judge_score": "judge",
    "f1_errata": "F1 (errata applied)",  # only with `report --errata` (report/errata.py), never read from a run
    "judge_score_errata": "judge (errata applied)",
    "f1_locomo": "F1 (LoCoMo, rounded)",
    "f1_mem0": "F1 (mem0, token sets)",
    "recall": "evidence recall",  # share of evidence messages the retriever or memory put in the prompt
}
COMPUTED_METRICS = ("f1_errata", "judge_score_errata")  # made by the report, not read from the rows
JUDGE_PREFIX = "judge:"  # a run's scores from each of its judges: `judge:<protocol>/<model>` (rows' `judges`)
SIMULATE_METRICS = {
    "rouge_l": "ROUGE-L",
    "bertscore": "BERTScore",
    "reflective_agreement": "reflective agr.",
    "grounding_agreement": "grounding agr.",
    "sentiment_agreement": "sentiment agr.",
    "emotion_agreement": "emotion agr.",
    "intimacy_diff": "|intimacy diff|",
    "empathy_diff": "|empathy diff|",
}
_PROBE_FIELDS = ("chat", "qa_index", "question", "category")
_SIMULATE_FIELDS = ("chat", "position", "reference")


def category_of(row: dict) -> str:
    return f"{row['category']} {row.get('category_name') or ''}".strip()


def in_overall(row: dict) -> bool:
    # As the run's own report: LoCoMo's adversarial items are scored by their own rule and kept apart.
    return not (row.get("dataset") == "locomo" and row.get("category") == 5)


@dataclass(frozen=True)
class Category:
    """A category as the leaderboard shows and orders it."""

    label: str  # `2 temporal`
    number: float  # for ordering: the category number, or inf when it is not a number
    one_to_three: bool  # pooled into 'overall (1-3)'
    longmemeval: bool = False  # a LongMemEval question type (numbered, but no LoCoMo category)


class Items:
    """The keys of the items (questions or targets) of the runs in one report, each numbered once: runs are
    compared, paired and grouped by these numbers."""

    def __init__(self) -> None:
        self.number: dict[tuple, int] = {}
        self.keys: list[tuple] = []

    def of(self, key: tuple) -> int:
        n = self.number.get(key)
        if n is None:
            n = self.number[key] = len(self.keys)
            self.keys.append(key)
        return n


@dataclass
class Answers:
    """A run's answered items (the latest line for each item, when it has no error), as columns, in the order the
    items first appear in predictions.jsonl."""

    items: np.ndarray  # item numbers (Items)
    offsets: np.ndarray  # byte offset of the row's line in predictions.jsonl
    category: np.ndarray  # index into `categories`
    categories: list[Category]
    in_overall: np.ndarray  # bool: pooled into 'overall'
    dataset: np.ndarray  # index into `datasets`
    datasets: list[str]  # `dataset` as groups name it ('?' when missing)
    scores: dict[str, np.ndarray]  # per metric, NaN where the row has no such score
    abstention: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))  # LongMemEval `_abs` items

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Usage:
    """Tokens and cost of every line kept (a resumed run's retried and failed lines too), one value per line."""

    prompt: array = field(default_factory=lambda: array("d"))
    completion: array = field(default_factory=lambda: array("d"))
    cost: array = field(default_factory=lambda: array("d"))  # the answer's and every judge's
    cached: array = field(default_factory=lambda: array("d"))
    has_cached: bool = False


@dataclass
class Pages:
    """Bytes made from each answer's row while it is read (`load_runs(keep=...)`): what a page shows of it, kept
    instead of the row, in one buffer."""

    data: bytearray
    start: np.ndarray  # per answer (as `Answers`), where its bytes start in `data`
    end: np.ndarray

    def __getitem__(self, position: int) -> bytes:
        return bytes(memoryview(self.data)[self.start[position] : self.end[position]])


Keep = Callable[[dict], bytes]  # a row's bytes to keep for its page


@dataclass
class Run:
    """One saved run: what it was (manifest) and what it answered (items without an error)."""

    path: Path
    kind: str  # "probe" or "simulate"
    manifest: dict
    summary: dict  # the run's own report.json ({} when missing)
    answers: Answers
    failed: int
    items: Items = field(repr=False, default_factory=Items)
    held: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=np.int64))  # answered or failed
    datasets: set[str] = field(default_factory=set)  # of every line kept, '?' when missing
    lines: int = 0  # rows in predictions.jsonl (before --category)
    labels: set[str] = field(repr=False, default_factory=set)  # every row's category, for --category's message
    usage_lines: Usage = field(repr=False, default_factory=Usage)
    first_model: str | None = None  # the first answered row's `model`, when the manifest names none
    first_judge: str | None = None
    pages: Pages | None = field(repr=False, default=None)  # what `keep` made of each answer's row, when asked
    id: str = ""

    @property
    def parameters(self) -> dict:
        p = self.manifest.get("parameters")
        return p if isinstance(p, dict) else {}

    @property
    def model(self) -> str:
        return str(self.manifest.get("model") or self.parameters.get("model") or self.first_model or "?")

    @property
    def judge(self) -> str | None:
        judge = self.manifest.get("judge_model") or self.first_judge
        return str(judge) if judge else None

    @property
    def judge_protocol(self) -> str | None:
        """The judge protocol the manifest names beside its judge model (`probe run` and `rescore` write it; None
        in runs of earlier versions, which graded with their probe protocol's judge)."""
        name = self.manifest.get("judge_protocol")
        return name if isinstance(name, str) and name and self.manifest.get("judge_model") else None

    @property
    def context(self) -> str:
        """Protocol and context: full, retrieval (k), events; with the compatibility layout when one was used."""
        p = self.parameters
        if self.kind == "simulate":
            speaker = p.get("speaker") or "every speaker"
            return (
                f"simulate {speaker}, split {p.get('split', 'all')}, {p.get('targets', 'messages')}, "
                f"{p.get('sessions', '?')} sessions of history"
            )
        context = str(p.get("context") or "full")
        if context == "memory":
            return context
        if context != "full" and context != "events" and p.get("context_tokens"):
            context += f" {p['context_tokens']} tokens"
        elif context == "retrieval" and p.get("top_k"):
            context += f" k={p['top_k']}"
        return f"{context} ({p['compat']})" if p.get("compat") else context

    @property
    def memory(self) -> str | None:
        """The memory plug-in with its options (`hybrid k=20`), from report.json's memory section or the flags."""
        spec = self.summary.get("memory") or self.manifest.get("memory") or self.parameters.get("memory")
        if isinstance(spec, dict):
            name = str(spec.get("spec") or spec.get("name") or "?")
            options = spec.get("options") if isinstance(spec.get("options"), dict) else {}
            return " ".join([name, *(f"{k}={v}" for k, v in sorted(options.items()))])
        return str(spec) if spec else None

    @property
    def incomplete(self) -> str | None:
        """Why the run cannot be taken as finished, or None: only `"complete": true` in report.json, which a
        run writes last, says it finished (a run killed half-way has answered rows and no report.json)."""
        if self.summary.get("complete") is False:
            detail = self.summary.get("incomplete")
            reason = detail.get("reason") if isinstance(detail, dict) else None
            return reason if isinstance(reason, str) and reason else "its report.json says it did not finish"
        if self.failed:
            return f"{plural(self.failed, 'item')} failed"
        if not self.summary:
            return "no report.json: the run may not have finished"
        if self.summary.get("complete") is not True:
            return "its report.json does not say it finished"
        return None

    @property
    def complete(self) -> bool:
        return self.incomplete is None

    @property
    def label(self) -> str:
        parts = [self.model] + ([] if self.memory and self.context == "memory" else [self.context])
        if self.memory:
            parts.append(f"memory {self.memory}")
        if self.judge:
            parts.append(f"judge {self.judge}")
        return ", ".join(parts)

    def key(self, row: dict) -> tuple:
        if self.kind == "probe":
            return (row["chat"], row["qa_index"], row["question"])
        return (row["chat"], row["position"], row.get("speaker"))

    def usage(self) -> dict:
        u = self.usage_lines
        run = self.summary.get("run") if isinstance(self.summary.get("run"), dict) else {}
        wall = run.get("wall_time_s")  # shown as '-' unless it is a duration
        usage = {
            "prompt_tokens": int(sum(u.prompt)),
            "completion_tokens": int(sum(u.completion)),
            "cost_usd": round(sum(u.cost), 6),
            "wall_time_s": wall if _is_number(wall) and 0 <= wall <= _MAX_USAGE else None,
        }
        if u.has_cached:
            usage["cached_tokens"] = int(sum(u.cached))
        return usage

    def rows_at(self, positions: np.ndarray | list[int]) -> Iterator[dict]:
        """The full rows of the answers at these positions (indexes into `answers`), read again from the file;
        each must still be the row of its item (a file replaced since is an error, not another run's row)."""
        pred_path = self.path / "predictions.jsonl"
        positions = np.asarray(positions, dtype=np.int64)
        keys = self.items.keys
        try:
            with pred_path.open("rb") as f:
                offsets, items = self.answers.offsets[positions].tolist(), self.answers.items[positions].tolist()
                for offset, item in zip(offsets, items, strict=True):
                    f.seek(offset)
                    try:
                        row = orjson.loads(f.readline())
                    except orjson.JSONDecodeError:
                        row = None
                    if not isinstance(row, dict) or _key_or_none(self, row) != keys[item]:
                        raise RealtalkError(f"{pred_path}: changed while the report was made; make the report again")
                    yield row
        except OSError as e:
            raise RealtalkError(f"{pred_path}: cannot read: {e.strerror}") from None

    def answered_rows(self) -> Iterator[dict]:
        """Every answered row, in order (read again from the file: for one run's pages, not for a leaderboard)."""
        return self.rows_at(range(len(self.answers)))


def _key_or_none(run: Run, row: dict) -> tuple | None:
    try:
        return run.key(row)
    except (KeyError, TypeError):
        return None


def load_run(path: Path, items: Items | None = None, category: str | None = None, keep: Keep | None = None) -> Run:
    """A probe or simulate run directory; bad input is one RealtalkError naming the file. Item keys are numbered
    in `items` (shared by the runs of one report); with `category`, only the rows of that category are kept; with
    `keep`, what it makes of each answer's row is kept in `run.pages`."""
    if not path.exists():
        raise RealtalkError(f"{path}: no such run directory")
    if not path.is_dir():
        raise RealtalkError(f"{path}: not a directory (give the run directory, not a file in it)")
    pred_path = path / "predictions.jsonl"
    if not pred_path.exists():
        raise RealtalkError(f"{path}: not a run directory (no predictions.jsonl)")
    report_path = path / "report.json"
    for file in (pred_path, report_path):  # a FIFO or /dev/zero in a run folder would block or fill memory
        if file.exists() and not file.is_file():
            raise RealtalkError(f"{file}: not a regular file")
    summary = read_json(report_path) if report_path.exists() else {}
    if not isinstance(summary, dict):
        raise RealtalkError(f"{report_path}: expected a JSON object")
    if not isinstance(summary.get("complete", True), bool):  # a run is complete only when it says so exactly
        got = orjson.dumps(summary["complete"]).decode()
        raise RealtalkError(f"{report_path}: 'complete' must be true or false, got {got:.40}")
    manifest = summary.get("manifest") if isinstance(summary.get("manifest"), dict) else {}
    run = Run(path, "simulate" if "targets" in summary else "probe", manifest, summary, _no_answers(), 0)
    run.items = items if items is not None else Items()
    _read(run, pred_path, category, keep)
    return run


def named_judge(manifest: dict) -> tuple[str, str] | None:
    """The judge a run's manifest names, as `(protocol/model key of the rows' judges, model)` (the key is the model
    alone in runs of earlier versions); None when it names none. Its verdicts are the run's judge scores, as in the
    run's own report.json: the latest judge given (`probe rescore --judge-protocol`, a resume with another
    --judge-model), while a row's top-level `judge_score` stays its first judge's."""
    label = manifest.get("judge_model")
    if not isinstance(label, str) or not label:
        return None
    name = manifest.get("judge_protocol")
    return (f"{name}/{label}" if isinstance(name, str) and name else label, label)


def _named_judge_score(row: dict, judge: tuple[str, str], top: float) -> float:
    """The verdict of the run's judge on a row (NaN: none): its entry under `judges` (by key, else the only entry of
    that model), or in a row without `judges` the top-level score (`top`) unless another model wrote it."""
    key, label = judge
    judges = row.get("judges")
    if isinstance(judges, dict) and judges:
        entry = judges.get(key)
        if entry is None:
            same = [e for k, e in judges.items() if k.endswith("/" + label)]
            entry = same[0] if len(same) == 1 else None
        return _entry_score(entry)
    return top if row.get("judge_model") in (None, label) else math.nan


def _entry_score(entry) -> float:
    """A `judges` entry's score (NaN: none, or failed), counted as the row's own (`_judge_verdicts` checked it)."""
    if not isinstance(entry, dict) or entry.get("error") is not None:
        return math.nan
    score = entry.get("score")
    return math.nan if score is None else float(score)


def _judge_verdicts(row: dict) -> tuple[float, list[tuple[str, float]]] | str:
    """What the row's other judges cost (`judges` beside the first one, whose cost is `judge_cost_usd`; the verdict
    against an erratum's corrected gold) and each judge's score (NaN: none); or why they cannot be counted
    (`judges_problem`: the rule a run reading its rows back applies)."""
    cost = 0.0
    fix = row.get("erratum")
    if isinstance(fix, dict):
        value = fix.get("judge_cost_usd")
        if not (value is None or (_is_number(value) and 0 <= value <= _MAX_USAGE)):
            return f"'erratum': 'judge_cost_usd' must be a non-negative number, got {value!r:.40}"
        cost += value or 0.0
    judges = row.get("judges")
    if judges is None:
        return cost, []
    if not isinstance(judges, dict):
        return judges_problem(row) or "'judges' is unreadable"
    first = row.get("judge_key")
    verdicts = []
    for key, entry in judges.items():  # the plain case checked here, anything else by judges_problem
        if type(entry) is not dict:
            return judges_problem(row) or "'judges' is unreadable"
        score, spent = entry.get("score"), entry.get("cost_usd")
        if not (_plain(score, 1.0) or type(score) is bool) or not _plain(spent, _MAX_USAGE):
            return judges_problem(row) or "'judges' is unreadable"
        if not (_plain(entry.get("prompt_tokens"), _MAX_USAGE) and _plain(entry.get("completion_tokens"), _MAX_USAGE)):
            return judges_problem(row) or "'judges' is unreadable"
        if key != first:
            cost += spent or 0.0
        verdicts.append((key, math.nan if score is None or entry.get("error") is not None else float(score)))
    return cost, verdicts


def _plain(value, high: float) -> bool:
    t = type(value)
    return value is None or ((t is float or t is int) and 0 <= value <= high)


def _no_answers() -> Answers:
    empty = np.empty(0, dtype=np.int64)
    return Answers(empty, empty, empty, [], np.empty(0, dtype=bool), empty, [], {})


class _Columns:
    """The fields of every line kept, one value per line; `_settle` picks each item's latest line."""

    def __init__(self, metrics: list[str]) -> None:
        self.item = array("q")
        self.offset = array("q")
        self.error = bytearray()
        self.category = array("i")
        self.in_overall = bytearray()
        self.dataset = array("i")
        self.model = array("i")
        self.judge = array("i")
        self.scores = {m: array("d") for m in metrics}
        self.abstention = bytearray()
        self.judges: dict[str, array] = {}  # per judge key (`judges` of the rows), its score on each line
        self.pages = bytearray()
        self.page_end = array("q")
        self.codes: dict[str, dict] = {"category": {}, "dataset": {}, "model": {}, "judge": {}}
        self.raw: dict[str, dict] = {"category": {}, "dataset": {}, "model": {}, "judge": {}}

    def code(self, table: str, raw: tuple, name) -> int:
        """The number of a name (a category, dataset, model...); `raw` is the row's value it is made from, with
        its type (1, 1.0 and True are different categories), so that the name is made once per value."""
        try:
            c = self.raw[table].get(raw)
        except TypeError:  # a list or an object: no cache
            c = None
        if c is None:
            label = name(raw)
            codes = self.codes[table]
            c = codes.get(label)
            if c is None:
                c = codes[label] = len(codes)
            try:
                self.raw[table][raw] = c
            except TypeError:
                pass
        return c

    def names(self, table: str) -> list:
        return list(self.codes[table])


def _code(c: _Columns, table: str, cache: dict, value, name) -> int:
    raw = (type(value), value)
    try:
        return cache[raw]
    except (KeyError, TypeError):
        return c.code(table, raw, name)


def _category(raw: tuple) -> Category:
    _, c, _, name, longmemeval = raw
    number = c if isinstance(c, (int, float)) and not isinstance(c, bool) else math.inf
    label = category_of({"category": c, "category_name": name})
    return Category(label, number, c in (1, 2, 3) and not longmemeval, longmemeval)


def _dataset(raw: tuple) -> str:
    return str(raw[1] or "?")


def _name(raw: tuple) -> str:
    return str(raw[1])


def _lines(pred_path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of every complete line; a torn last line (a run killed mid-write) is
    ignored, not repaired."""
    offset = 0
    try:
        with pred_path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    return  # torn: the writer was stopped in the middle of this line
                yield n, offset, line
                offset += len(line)
    except FileNotFoundError:
        raise RealtalkError(f"{pred_path}: no such file") from None
    except OSError as e:
        raise RealtalkError(f"{pred_path}: cannot read: {e.strerror}") from None


def _read(run: Run, pred_path: Path, category: str | None, keep: Keep | None) -> None:
    """Fill the run from its predictions file in one pass. A line that is not JSON is reported before a row
    with a bad field, wherever they are (the file is parsed to its end first)."""
    problem: str | None = None
    columns: _Columns | None = None
    rows = 0
    usage = run.usage_lines
    numbers = run.items.number
    keys = run.items.keys
    nan = math.nan
    for n, offset, line in _lines(pred_path):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise RealtalkError(f"{pred_path}: line {n}: not valid JSON") from None
        if not isinstance(row, dict):
            raise RealtalkError(f"{pred_path}: line {n}: expected a JSON object")
        rows += 1
        if problem:
            continue
        if columns is None:
            run.kind = "probe" if "qa_index" in row else "simulate"
            probe = run.kind == "probe"
            metrics = _read_metrics(run.kind)
            c = columns = _Columns(metrics)
            required = _PROBE_FIELDS if probe else _SIMULATE_FIELDS
            required_set = frozenset(required)
            bound = (0.0, 1.0) if probe else (-_MAX_USAGE, _MAX_USAGE)
            score_columns = [c.scores[m].append for m in metrics]
            judge = named_judge(run.manifest) if probe else None
            judge_at = metrics.index("judge_score") if probe else -1
            raw_category, raw_dataset, raw_model, raw_judge = (
                c.raw[t] for t in ("category", "dataset", "model", "judge")
            )
        if not row.keys() >= required_set:
            missing = next(k for k in required if k not in row)
            problem = f"{pred_path}: row {rows}: missing '{missing}' (not a {run.kind} predictions file?)"
            continue
        scores = _plain_scores(row, probe, metrics, bound)
        if scores is None:  # something out of the ordinary: the full check says what, or that it is fine
            bad = _row_problem(row, run.kind)
            if bad:
                problem = f"{pred_path}: row {rows}: {bad}"
                continue
            scores = [nan if (v := row.get(m)) is None else float(v) for m in metrics]
        others, verdicts = 0.0, ()
        if "judges" in row or "erratum" in row:
            read = _judge_verdicts(row)
            if isinstance(read, str):
                problem = f"{pred_path}: row {rows}: {read}"
                continue
            others, verdicts = read
        if judge is not None:
            scores[judge_at] = _named_judge_score(row, judge, scores[judge_at])
        if category is not None:
            run.labels.add(f"{row.get('category')} {row.get('category_name') or ''}".strip())
            if not matches_category(row.get("category"), row.get("category_name"), category):
                continue
        # Checked above: each is None or a number from 0 to _MAX_USAGE.
        v = row.get("prompt_tokens")
        usage.prompt.append(0.0 if v is None else float(v))
        v = row.get("completion_tokens")
        usage.completion.append(0.0 if v is None else float(v))
        v, w = row.get("cost_usd"), row.get("judge_cost_usd")
        cost = (0.0 if v is None else float(v)) + (0.0 if w is None else float(w))
        usage.cost.append(cost + others)
        if verdicts:
            _add_verdicts(c, verdicts, len(c.item))
        v = row.get("cached_tokens", usage)
        if v is not usage:
            usage.has_cached = True
        usage.cached.append(0.0 if v is None or v is usage else float(v))
        dataset = row.get("dataset")
        if probe:
            key = (row["chat"], row["qa_index"], row["question"])
            cat, name = row["category"], row.get("category_name")
            raw = (type(cat), cat, type(name), name, dataset == "longmemeval")
            try:
                code = raw_category[raw]
            except (KeyError, TypeError):
                code = c.code("category", raw, _category)
            c.category.append(code)
        else:
            key = (row["chat"], row["position"], row.get("speaker"))
            c.category.append(0)
        item = numbers.get(key)
        if item is None:
            item = numbers[key] = len(keys)
            keys.append(key)
        c.item.append(item)
        c.offset.append(offset)
        if keep is not None:
            c.pages += keep(row)
            c.page_end.append(len(c.pages))
        c.error.append(row.get("error") is not None)
        c.in_overall.append(not (dataset == "locomo" and row.get("category") == 5))
        c.abstention.append(dataset == "longmemeval" and row.get("abstention") is True)
        c.dataset.append(_code(c, "dataset", raw_dataset, dataset, _dataset))
        value = row.get("model")
        c.model.append(_code(c, "model", raw_model, value, _name) if value else -1)
        value = row.get("judge_model")
        c.judge.append(_code(c, "judge", raw_judge, value, _name) if value else -1)
        for append, value in zip(score_columns, scores, strict=True):
            append(value)
    if problem:
        raise RealtalkError(problem)
    run.lines = rows
    if columns is not None:
        _settle(run, columns)


def _read_metrics(kind: str) -> list[str]:
    return [m for m in (PROBE_METRICS if kind == "probe" else SIMULATE_METRICS) if m not in COMPUTED_METRICS]


def _add_verdicts(c: _Columns, verdicts: list[tuple[str, float]], line: int) -> None:
    """Each judge's score on this line, in `c.judges`."""
    for key, score in verdicts:
        column = c.judges.get(key)
        if column is None:
            column = c.judges[key] = array("d", [math.nan]) * line  # the lines before had no verdict of it
        column.extend([math.nan] * (line - len(column)))
        column.append(score)


def _plain_scores(row: dict, probe: bool, metrics: list[str], bound: tuple[float, float]) -> list[float] | None:
    """The row's scores (NaN: none) when every checked field is of the plain kind `_row_problem` accepts (a
    string, an integer, a number within bounds); None when the full check has to look."""
    if type(row["chat"]) is not str:
        return None
    if probe:
        if type(row["qa_index"]) is not int or type(row["question"]) is not str:
            return None
    elif type(row["position"]) is not int or not (row.get("speaker") is None or type(row["speaker"]) is str):
        return None
    low, high = bound
    scores = list(map(row.get, metrics))
    for i, v in enumerate(scores):
        if v is None:
            scores[i] = math.nan
        elif type(v) is float:
            if not low <= v <= high:  # NaN and inf fail the comparison too
                return None
        elif (type(v) is int and low <= v <= high) or type(v) is bool:
            scores[i] = float(v)
        else:
            return None
    for v in map(row.get, _USAGE_FIELDS):
        if not (v is None or ((type(v) is float or type(v) is int) and 0 <= v <= _MAX_USAGE)):
            return None
    return scores


def _np(values: array | bytearray, dtype) -> np.ndarray:
    return np.frombuffer(values, dtype=dtype) if len(values) else np.empty(0, dtype=dtype)


def _settle(run: Run, c: _Columns) -> None:
    """The columns of the answered items, and what the run holds. The last line for an item wins (a resumed run
    appends the retried answer after the failed one), in the place where the item first appeared."""
    items = _np(c.item, np.int64)
    lines = np.arange(len(items))
    first = np.full(len(run.items.keys), len(items), dtype=np.int64)
    last = np.full(len(run.items.keys), -1, dtype=np.int64)
    np.minimum.at(first, items, lines)
    np.maximum.at(last, items, lines)
    present = np.flatnonzero(last >= 0)
    run.held = present[np.argsort(first[present], kind="stable")]  # in order of first appearance
    line = last[run.held]  # each item's latest line
    run.datasets = set(c.names("dataset"))
    line = line[_np(c.error, np.uint8)[line] == 0]
    run.failed = len(run.held) - len(line)
    model, judge = _np(c.model, np.int32)[line], _np(c.judge, np.int32)[line]
    models, judges = c.names("model"), c.names("judge")
    run.first_model = models[model[model >= 0][0]] if (model >= 0).any() else None
    run.first_judge = judges[judge[judge >= 0][0]] if (judge >= 0).any() else None
    for column in c.judges.values():
        column.extend([math.nan] * (len(items) - len(column)))
    judges_by_key = {JUDGE_PREFIX + k: _np(v, np.float64)[line] for k, v in c.judges.items()}
    if len(c.page_end):
        end = _np(c.page_end, np.int64)
        start = np.concatenate([[0], end[:-1]])
        run.pages = Pages(c.pages, start[line], end[line])
    run.answers = Answers(
        items=items[line],
        offsets=_np(c.offset, np.int64)[line],
        category=_np(c.category, np.int32)[line],
        categories=c.names("category") if run.kind == "probe" else [],
        in_overall=_np(c.in_overall, np.uint8)[line].astype(bool),
        dataset=_np(c.dataset, np.int32)[line],
        datasets=c.names("dataset"),
        scores={m: _np(values, np.float64)[line] for m, values in c.scores.items()} | judges_by_key,
        abstention=_np(c.abstention, np.uint8)[line].astype(bool),
    )


_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "judge_cost_usd")
_MAX_USAGE = 1e15  # tokens or dollars beyond this are a corrupt file, not a run


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row_problem(row: dict, kind: str) -> str | None:
    """Why a row cannot be reported (a wrong type or an impossible number), or None."""
    if not isinstance(row["chat"], str):
        return "'chat' must be a string"
    index = "qa_index" if kind == "probe" else "position"
    if not isinstance(row[index], int) or isinstance(row[index], bool):
        return f"'{index}' must be an integer"
    if kind == "probe" and not isinstance(row["question"], str):
        return "'question' must be a string"
    if kind == "simulate" and not isinstance(row.get("speaker"), (str, type(None))):
        return "'speaker' must be a string"
    for name in _read_metrics(kind):
        value = row.get(name)
        if value is None or isinstance(value, bool):
            continue
        if not _is_number(value):
            return f"'{name}' must be a number, got {value!r:.40}"
        if kind == "probe" and not 0 <= value <= 1:
            return f"'{name}' {value} is outside 0..1"
        if abs(value) > _MAX_USAGE:
            return f"'{name}' {value} is not a plausible score"
    for name in _USAGE_FIELDS:
        value = row.get(name)
        if value is not None and not (_is_number(value) and 0 <= value <= _MAX_USAGE):
            return f"'{name}' must be a non-negative number, got {value!r:.40}"
    return None


def load_runs(paths: list[Path], category: str | None = None, keep: Keep | None = None) -> list[Run]:
    """The runs of one report, their items numbered together. With `category` (a number or name, as
    `--category` gives it) only each run's rows of that category are kept; with `keep`, what it makes of each
    answer's row is kept (`Run.pages`)."""
    items = Items()
    runs = [load_run(p, items, category, keep) for p in paths]
    seen: dict[Path, Path] = {}
    files: dict[tuple[int, int], Path] = {}
    for path in paths:  # a run beside itself would only add a row that is compared with its twin
        first = seen.setdefault(path.resolve(), path)
        if first is not path:
            raise RealtalkError(f"the run {first} is given twice (also as {path}): give each run once")
        try:  # a folder whose predictions.jsonl is another run's (a link)
            pred = (path / "predictions.jsonl").stat()
        except OSError as e:
            raise RealtalkError(f"{path / 'predictions.jsonl'}: cannot read: {e.strerror}") from None
        first = files.setdefault((pred.st_dev, pred.st_ino), path)
        if first is not path:
            raise RealtalkError(f"{path / 'predictions.jsonl'} is the predictions file of {first}: give each run once")
    kinds = {r.kind for r in runs if r.lines or r.summary}
    for run in runs:  # a run killed before its first line says nothing of its kind: it takes the others'
        if not (run.lines or run.summary) and len(kinds) == 1:
            run.kind = next(iter(kinds))
    if len(kinds) > 1:
        probe = next(r.path for r in runs if r.kind == "probe")
        sim = next(r.path for r in runs if r.kind == "simulate")
        raise RealtalkError(f"{probe} is a probe run but {sim} a simulate run: report them separately")
    if category is not None and not any(len(r.held) for r in runs):
        known = sorted(set().union(*(r.labels for r in runs)))
        raise RealtalkError(f"--category {category}: no question of that category in these runs ({', '.join(known)})")
    for i, run in enumerate(runs):
        run.id = _run_id(i)
    return runs


def _run_id(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        letters = chr(65 + rest) + letters
    return letters
