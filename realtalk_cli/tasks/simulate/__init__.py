"""Persona simulation (`realtalk simulate`): targets and prompts (prompts.py), options (options.py), the run
(run.py), scores after the replies (scores.py), splits (split.py), reports (report.py), SFT export (export.py).
"""
