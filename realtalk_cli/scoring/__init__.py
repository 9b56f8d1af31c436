"""Scores as pure functions, below every task: the paper's token F1 with its normalisations and Porter stemmer
(f1.py, porter.py), dates written one way (dates.py), evidence recall (evidence.py). Imports nothing above
`data`; tasks, analysis and report use it. A new metric (e.g. a protocol's own F1) is one module of pure
functions here, unit-tested on hand-computed values.
"""
