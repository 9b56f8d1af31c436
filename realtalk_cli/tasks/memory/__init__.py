"""Memory under test: what goes into the prompt for each question. `protocol.py` is the plug-in interface
(import it as `from realtalk_cli.tasks.memory import Passage, MemoryTools`), `loader.py` loads a `--memory
SPEC`, `builtins.py` holds the built-in memories over `retrieval.py` and `embeddings.py`, `packing.py` fits
what a memory recalls into the budget and `runner.py` calls a memory safely (deadline, one thread).

A new built-in memory or retriever is one class in `builtins.py` written against `Memory`, registered in
its `BUILTIN` table; a user's memory needs no change here (`--memory path/to/file.py:Name`).
"""

from realtalk_cli.tasks.memory.protocol import Memory, MemoryTools, Passage

__all__ = ["Memory", "MemoryTools", "Passage"]
