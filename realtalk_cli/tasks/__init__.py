"""Model tasks: memory probing, persona simulation, picture captions; offline baselines register here."""

from realtalk_cli.tasks import baselines  # noqa: F401  (registers the offline:NAME models)
