"""EI labels made the way the paper's analysis makes them (`analyze ei --backend paper`).

Source: the REALTALK repository (danny911kr/REALTALK b903e06): `analyze_data.py` and
`eval_emotional_intelligence/` (self_awareness.py, motivation.py, empathy.py, social_skills.py), as
stated in shared/PAPER_PROTOCOL.md §2.

- Hub classifiers through `transformers.pipeline("text-classification")` with defaults only (top-1 label,
  no truncation): sentiment `cardiffnlp/twitter-roberta-base-sentiment-latest`, emotion
  `cardiffnlp/twitter-roberta-large-emotion-latest` (11 labels, the argmax), intimacy
  `cardiffnlp/twitter-roberta-large-intimacy-latest` (the pipeline score). A message the classifier fails
  on (e.g. over 512 tokens) gets the paper's fallback, "neutral" or 0.0, and is counted (`fallbacks`).
- Reflective, grounding and empathy from the paper's released prompts (byte for byte, hashes checked at
  load) through our LLM client: one system-role message (system text + dialogue text), no sampling
  parameters. The dialogue is the current session from its first message up to and including the one
  labelled, `{speaker}: {text}` per line: no later messages, no earlier sessions.
- Parsing as the paper: reflective / grounding are True when "true" is in the lower-cased reply;
  empathy is asked in JSON mode, re-asked on invalid JSON up to 4 times, and scored as the sum of the
  object's values. Where the paper would crash (non-numeric values) the label is None for that message.

Choices the paper leaves open (stated in metrics.json): the intimacy score is the regressor's raw
output (`function_to_apply="none"`, what current transformers return for this regression model; older
versions applied a sigmoid, so the paper's scale is not determinable); no model revisions are pinned.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from realtalk_cli.analysis.ei_annotation import Annotation, annotate
from realtalk_cli.analysis.ei_hf import _hf_pipeline
from realtalk_cli.data.model import Chat, Message
from realtalk_cli.errors import RealtalkError

PAPER_HF_MODELS = {
    "sentiment": "cardiffnlp/twitter-roberta-base-sentiment-latest",
    "emotion": "cardiffnlp/twitter-roberta-large-emotion-latest",
    "intimacy": "cardiffnlp/twitter-roberta-large-intimacy-latest",
}
PAPER_EMOTIONS = "anger anticipation disgust fear joy love optimism pessimism sadness surprise trust".split()
DEFAULT_MODEL = "gpt-4o-mini"  # the paper's default for its LLM labellers
EMPATHY_ATTEMPTS = 4
LLM_KINDS = ("reflective", "grounding", "empathy")

# sha256 of each prompt file as released (the system texts' hashes are those in PAPER_PROTOCOL.md).
PROMPT_SHA256 = {
    "paper_reflective_system.txt": "8d180d39ae6389b83c9743e3862fff0ed48a2c50d22285567834f9f460b7a8df",
    "paper_grounding_system.txt": "bf1388c44433cffb9dfe98d0ea9d859701e1fab2c6b4dd9fd07ceb7fc4eac2aa",
    "paper_empathy_system.txt": "c64df9c8c13ffbd22aa36da0e46730a02e6bc1128b772215322c7f28776872e2",
    "paper_reflective_dialogue.txt": "",
    "paper_grounding_dialogue.txt": "",
    "paper_empathy_dialogue.txt": "",
}


def load_prompts() -> dict[str, tuple[str, str]]:
    """kind -> (system text, dialogue template), refusing a file that differs from the paper's."""
    texts = {}
    for name, expected in PROMPT_SHA256.items():
        text = resources.files("realtalk_cli").joinpath("resources", name).read_text(encoding="utf-8")
        if expected and hashlib.sha256(text.encode()).hexdigest() != expected:
            raise RealtalkError(f"realtalk_cli/resources/{name}: differs from the paper's prompt (sha256 mismatch)")
        texts[name] = text
    return {k: (texts[f"paper_{k}_system.txt"], texts[f"paper_{k}_dialogue.txt"]) for k in LLM_KINDS}


def prompt_hashes() -> dict[str, str]:
    return {k: hashlib.sha256((s + d).encode()).hexdigest()[:12] for k, (s, d) in load_prompts().items()}


def dialogue_context(history: list[Message]) -> str:
    return "\n".join(f"{m.speaker}: {m.clean_text}" for m in history)


def request(prompts: tuple[str, str], history: list[Message]) -> list[dict]:
    """One system-role message: the system text, then the dialogue text filled in one pass."""
    system, dialogue = prompts
    current = history[-1]
    values = {"dialogue_context": dialogue_context(history), "speaker": current.speaker, "text": current.clean_text}
    filled = re.sub(r"\{(dialogue_context|speaker|text)\}", lambda m: values[m.group(1)], dialogue)
    return [{"role": "system", "content": system + filled}]


def parse_flag(reply: str) -> bool:
    """The paper's reading: True iff "true" occurs in the lower-cased reply ("False, not true" is True)."""
    return "true" in reply.strip().lower()


def empathy_total(reply: str) -> float | None:
    """Sum of every value of the JSON object, whatever its keys; None where the paper would crash."""
    try:
        parsed = json.loads(reply)
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    values = list(parsed.values())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return float(sum(values))


class PaperClassifiers:
    """The paper's three hub classifiers, loaded once; `--hf-model KIND=PATH` points at local copies."""

    def __init__(self, models: dict[str, str] | None = None):
        self.models = {**PAPER_HF_MODELS, **(models or {})}
        self.pipes = {
            kind: _hf_pipeline("text-classification", model, backend="paper", truncation=False)
            for kind, model in self.models.items()
        }

    def _one(self, kind: str, text: str):
        kwargs = {"function_to_apply": "none"} if kind == "intimacy" else {}
        try:
            out = self.pipes[kind](text, **kwargs)
        except Exception:  # noqa: BLE001 - the paper's fallback: any failure (e.g. over 512 tokens)
            return None
        return out[0] if isinstance(out, list) else out

    def label(self, text: str) -> tuple[dict, int]:
        """The classifier labels of one message, and how many of the three fell back."""
        sentiment, emotion, intimacy = (self._one(k, text) for k in ("sentiment", "emotion", "intimacy"))
        labels = {
            "sentiment": sentiment["label"].lower() if sentiment else "neutral",
            "emotion": emotion["label"].lower() if emotion else "neutral",
            "intimacy": float(intimacy["score"]) if intimacy else 0.0,
        }
        return labels, sum(x is None for x in (sentiment, emotion, intimacy))


def session_histories(chat: Chat) -> list[list[Message]]:
    """For each message in chat order: its session from the first message up to and including it."""
    out = []
    for session in chat.sessions:
        for k in range(len(session.messages)):
            out.append(session.messages[: k + 1])
    return out


def label_paper(
    pending: list[tuple[Chat, set[int]]], classifiers: PaperClassifiers, flags_client, empathy_client, sink
) -> None:
    """Label every pending message: the classifiers here, the three LLM labels through the clients.

    `empathy_client` should have no response cache: an invalid JSON reply is asked again, as the paper does.
    """
    from realtalk_cli.llm.jobs import run_jobs
    from realtalk_cli.llm.replies import is_json

    prompts = load_prompts()
    found: dict[tuple[str, int], dict] = {}
    flag_jobs, empathy_jobs = [], []
    units: dict[tuple[str, int], tuple[Chat, Message]] = {}
    for chat, todo in pending:
        for i, history in enumerate(session_histories(chat)):
            if i not in todo:
                continue
            units[(chat.name, i)] = (chat, history[-1])
            for kind in ("reflective", "grounding"):
                flag_jobs.append(((chat.name, i, kind), request(prompts[kind], history)))
            empathy_jobs.append(((chat.name, i, "empathy"), request(prompts["empathy"], history)))
    empathy_messages = dict(empathy_jobs)

    def flag_done(tag: tuple, c) -> None:
        if c.error is None:
            found.setdefault(tag[:2], {})[tag[2]] = parse_flag(c.text)

    async def empathy_done(tag: tuple, c) -> None:
        for _ in range(EMPATHY_ATTEMPTS - 1):
            if c.error is not None or is_json(c.text):
                break
            c = await empathy_client.complete(empathy_messages[tag], **PAPER_REQUEST, response_format=JSON_MODE)
        if c.error is None:
            found.setdefault(tag[:2], {})["empathy"] = empathy_total(c.text)

    run_jobs(flags_client, flag_jobs, flag_done, **PAPER_REQUEST)
    run_jobs(empathy_client, empathy_jobs, empathy_done, **PAPER_REQUEST, response_format=JSON_MODE)
    for key, (chat, message) in units.items():
        llm = found.get(key, {})
        if set(llm) != set(LLM_KINDS):
            continue  # a call failed: not written, the next run asks again
        labels, fallbacks = classifiers.label(message.clean_text)
        a: Annotation = annotate(chat, key[1], message, "paper", {**labels, **llm})
        a.fallbacks = fallbacks
        sink(a)


JSON_MODE = {"type": "json_object"}
PAPER_REQUEST = {"temperature": None, "max_tokens": None}  # the paper sends no sampling parameters
