"""The leaderboard's intervals and paired tests: defined in scoring/stats.py (pure functions, also used by the
judge audit of the tasks layer), named here for the report modules."""

from realtalk_cli.scoring.stats import (
    bootstrap_ci,
    bootstrap_many,
    intervals,
    paired_difference,
    paired_many,
    stratified_ci,
)

__all__ = ["bootstrap_ci", "bootstrap_many", "intervals", "paired_difference", "paired_many", "stratified_ci"]
