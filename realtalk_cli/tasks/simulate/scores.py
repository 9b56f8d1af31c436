"""The scores of simulate's rows that come after the replies: EI labels of the real and the generated message
(lexicon, hf or llm back-end) with their agreement, and BERTScore in one batch. ROUGE-L is scored as each
reply arrives (run.prediction_row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtalk_cli.analysis.ei_lexicon import lexicon_labels
from realtalk_cli.analysis.ei_llm import labels_from_reply, readable, reply_has_labels, text_prompt
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import LLMClient
from realtalk_cli.llm.jobs import StopRun, run_jobs
from realtalk_cli.llm.providers import resolve_model
from realtalk_cli.llm.spending import Spending, halting
from realtalk_cli.tasks.simulate.prompts import target_key, transcript
from realtalk_cli.tasks.simulate.report import EI_LABELS

if TYPE_CHECKING:
    from realtalk_cli.tasks.simulate.options import SimulateOptions


def agreement(reference: dict, prediction: dict) -> dict:
    out = {
        f"{k}_agreement": (reference[k] == prediction[k])
        if reference[k] is not None and prediction[k] is not None
        else None
        for k in EI_LABELS
    }
    for k in ("intimacy", "empathy"):
        both = reference[k] is not None and prediction[k] is not None
        out[f"{k}_diff"] = abs(reference[k] - prediction[k]) if both else None
    return out


def add_labels(
    rows: list[dict], targets: dict, opts: SimulateOptions, hf_labeler, prices, spending: Spending | None = None
) -> tuple[dict | None, bool]:
    """EI labels of the real and the generated message for every answered row that lacks them: (the llm
    backend's usage, whether --max-cost stopped it; its requests go to the run folder's `spending`)."""
    pending = [r for r in rows if r.get("error") is None and "labels" not in r]
    usage, stopped = None, False
    if opts.ei_backend == "lexicon":
        labels = [
            (
                lexicon_labels(r["reference"], r["partner_previous"]),
                lexicon_labels(r["prediction"], r["partner_previous"]),
            )
            for r in pending
        ]
    elif opts.ei_backend == "hf":
        texts = [r["reference"] for r in pending] + [r["prediction"] for r in pending]
        partners = [r["partner_previous"] for r in pending] * 2
        flat = hf_labeler.label(texts, partners)
        labels = list(zip(flat[: len(pending)], flat[len(pending) :], strict=True))
    else:
        labels, usage, stopped = _llm_labels(pending, targets, opts, prices, spending)
    for r, (reference, prediction) in zip(pending, labels, strict=True):
        if reference is None or prediction is None:
            continue  # a labelling call failed or its reply held no labels: the next run asks again
        r["labels"] = {"reference": reference, "prediction": prediction}
        r.update(agreement(reference, prediction))
    return usage, stopped


LABEL_MAX_TOKENS = 150


def label_messages(target, speaker: str, text: str) -> list[dict]:
    """The request that labels one message (the real or the generated one) with the history before it."""
    context = transcript(target.chat, target.history) if target else ""
    return [{"role": "user", "content": text_prompt(context, speaker, text)}]


def _llm_labels(
    rows: list[dict], targets: dict, opts: SimulateOptions, prices, spending: Spending | None
) -> tuple[list, dict, bool]:
    cache = open_cache(opts.use_cache)
    client = LLMClient(
        resolve_model(opts.ei_model, opts.base_url, opts.api_key_env),
        concurrency=opts.concurrency,
        cache=cache,
        prices=prices,
        timeout_s=opts.timeout,
    )
    jobs = []
    for n, r in enumerate(rows):
        target = targets.get(target_key(r))
        for side, text in ((0, r["reference"]), (1, r["prediction"])):
            jobs.append(((n, side), label_messages(target, r["speaker"], text)))
    results: list[list] = [[None, None] for _ in rows]
    budget = lambda: False  # noqa: E731
    if spending is not None:
        spending.attach(client, "labels")
        budget = halting(spending, opts.max_cost, lambda: [client])

    def done(tag, completion) -> None:
        n, side = tag
        if completion.error is None:
            labels = labels_from_reply(completion.text)
            # a reply without a single readable label is an error for that row, not a row of null labels
            results[n][side] = labels if readable(labels) else None
        if budget():
            raise StopRun()

    stopped = bool(jobs) and budget()
    every = run_jobs(client, [] if stopped else jobs, done, max_tokens=LABEL_MAX_TOKENS, accept=reply_has_labels)
    stopped = every or stopped
    t = client.totals
    usage = {
        "model": client.endpoint.label,
        "requests": t.requests,
        "cached": t.cached,
        "prompt_tokens": t.prompt_tokens,
        "cost_usd": round(t.cost_usd, 6),
    }
    return [tuple(x) for x in results], usage, stopped


def add_bertscore(rows: list[dict], scorer) -> None:
    """BERTScore F1 for every answered row that lacks this model's, in one batch (a row scored by another model,
    e.g. before an offline fallback, is scored again: one report never mixes two models)."""
    missing = [
        r
        for r in rows
        if r.get("error") is None
        and (r.get("bertscore") is None or r.get("bertscore_model", scorer.label) != scorer.label)
    ]
    scores = scorer.score([r["prediction"] for r in missing], [r["reference"] for r in missing])
    for r, s in zip(missing, scores, strict=True):
        r["bertscore"], r["bertscore_model"] = s, scorer.label
