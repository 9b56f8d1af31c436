"""Memory probing (`realtalk probe`): a model answers questions about a whole chat; token F1 and a judge.

The pipeline (run.py): setup -> items -> answers -> judge -> rows -> report; options.py holds the options and
the run's identity, rows.py the predictions rows, judge.py runs a judge, rescore.py and batch.py re-score a
run and send it as batch jobs, report.py writes report.json/.md, baselines.py the offline models.

A new protocol (another harness's prompts and sampling parameters) is one module in `protocols/` defining a
`ProbeProtocol` (protocol.py) and one line in `protocols/__init__.py`; a new judge is one module in `judges/`
defining a `JudgeProtocol` and one line in `judges/__init__.py`. Nothing else changes: the run asks them.
"""
