"""realtalk: the command-line toolkit for long-term conversation benchmarks (REALTALK, LoCoMo)."""

__version__ = "0.1.0"
