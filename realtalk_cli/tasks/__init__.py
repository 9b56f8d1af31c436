"""Model tasks, one sub-package each: `probe/` (memory probing, its protocols and judges), `simulate/`
(persona simulation), `memory/` (the memories and retrievers a probe can use), and `runs/` (what every run
shares: settings, identity, rows, reports). `prompts.py` holds the prompt text every task uses.

A new memory system goes in `memory/` (see its docstring) or stays the user's own plug-in; a new probe
protocol or judge goes in `probe/protocols/` or `probe/judges/`. The offline baselines register here.
"""

from realtalk_cli.llm.providers import register_local_model_loader


def _offline_baselines() -> None:
    from realtalk_cli.tasks.probe import baselines  # noqa: F401  (registers the offline:NAME models)


register_local_model_loader(_offline_baselines)
