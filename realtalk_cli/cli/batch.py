"""`batch status RUN`: advance a run started with `--batch` (poll, collect, submit the next stage, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from realtalk_cli.cli.common import ApiKeyEnv, AsJson, BaseUrl, MemoryOptions, MemorySpec, handles_errors

app = typer.Typer(
    no_args_is_help=True,
    help="Batch jobs of runs started with `--batch`.\n\nExample: `realtalk batch status runs/b`",
)


@app.command("status")
@handles_errors
def batch_status(
    run_dir: Annotated[
        Path, typer.Argument(help="The run folder of a `probe --batch` or `simulate --batch` run.", show_default=False)
    ],
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    memory: MemorySpec = None,
    memory_option: MemoryOptions = None,
    as_json: AsJson = False,
) -> None:
    """Poll the run's batch; when it has ended, collect it, submit the next stage or write the reports.

    The same as running the original `realtalk probe ... --batch` command again. Exit 0 when the run is
    complete, 3 while a batch is still running.

    The run folder is data: the endpoint (--base-url), the key's variable (--api-key-env) and a --memory
    come from this command line as they did from the run's, never from its files (a run on its provider's
    own endpoint, without a memory, needs none of them); a run folder made with others exits 2 naming them.

    Example: `realtalk batch status runs/b`

    Example: `realtalk batch status runs/v --base-url http://gpu-box:8000/v1 --memory my_memory.py:MyMemory`
    """
    from realtalk_cli.tasks.memory.loader import parse_options
    from realtalk_cli.tasks.probe.options import ProbeOptions
    from realtalk_cli.tasks.runs.batch import saved_run
    from realtalk_cli.tasks.simulate.options import SimulateOptions

    given = {
        "base_url": base_url,
        "api_key_env": api_key_env,
        "memory": memory,
        "memory_options": parse_options(memory_option),
    }
    task, files, opts = saved_run(run_dir, {"probe": ProbeOptions, "simulate": SimulateOptions}, given)
    if task == "simulate":
        from realtalk_cli.cli.simulate import finish_simulate
        from realtalk_cli.tasks.simulate.run import run_simulate

        finish_simulate(run_simulate(files, opts, batch=True), run_dir, as_json, None)
    else:
        from realtalk_cli.cli.probe import finish_batch_run

        finish_batch_run(files, opts, as_json, None, False)
