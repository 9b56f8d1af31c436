"""`simulate export-sft`: a person's chat as chat fine-tuning examples (the prompts simulate sends, with the
real replies as the assistant turns).
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.data.formats import load_chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import refuse_overwrite, write_jsonl
from realtalk_cli.tasks.prompts import prompt_text
from realtalk_cli.tasks.simulate.prompts import matches_speaker, prompt_messages, select_targets


def export_sft(
    chat_file: Path, speaker: str, output: Path, window: int = 3, mode: str = "messages", force: bool = False
) -> int:
    """The person's chat as chat fine-tuning examples: the same prompt simulate sends, the real reply."""
    if output.exists() and output.resolve() == chat_file.resolve():
        raise RealtalkError(f"-o {output}: that is the input chat; write the training file elsewhere")
    chat = load_chat(chat_file)
    if not any(matches_speaker(s, speaker) for s in chat.speakers):
        raise RealtalkError(f"{chat_file}: no speaker {speaker!r} (speakers: {', '.join(chat.speakers)})")
    refuse_overwrite(output, force)
    template = prompt_text("simulate_system.txt")
    lines = [
        {"messages": [*prompt_messages(t, template), {"role": "assistant", "content": t.reference}]}
        for t in select_targets(chat, speaker, mode, window)
    ]
    write_jsonl(output, lines)
    return len(lines)
