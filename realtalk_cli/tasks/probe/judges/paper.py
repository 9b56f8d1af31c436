"""The paper's judge (`qa_tool.py`'s GPT score): its prompt in JSON mode with no sampling parameters, re-asked
on invalid JSON up to 4 attempts in all as `utils_llm.py` does, never from the cache (a cached reply would only
repeat itself); a reply without a number in [0, 1] under "score" is no score for the item.
"""

from __future__ import annotations

from realtalk_cli.llm.replies import is_json
from realtalk_cli.tasks.probe.protocol import JudgeProtocol
from realtalk_cli.tasks.probe.protocols import paper


class PaperJudge(JudgeProtocol):
    name = "paper"
    params = {"temperature": None, "max_tokens": None, "response_format": {"type": "json_object"}}
    batch_params = params
    attempts = paper.JUDGE_ATTEMPTS
    cached = False

    def prompt_hashes(self) -> dict[str, str]:
        return {"paper:judge": paper.prompt_hashes()["paper:judge"]}

    def messages(self, row: dict) -> list[dict]:
        return [
            {"role": "user", "content": paper.judge_prompt(row["question"], row.get("answer", ""), row["prediction"])}
        ]

    def parse(self, text: str) -> float | None:
        return paper.parse_judge(text)

    def settled(self, text: str) -> bool:
        return is_json(text)
