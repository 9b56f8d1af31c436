"""Picture captions written by a vision model, for `convert --caption-model` (the data layer asks; this answers)."""

from __future__ import annotations

import base64

from realtalk_cli.data.model import Message
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.cache import open_cache
from realtalk_cli.llm.client import Completion, LLMClient
from realtalk_cli.llm.jobs import run_jobs
from realtalk_cli.llm.providers import resolve_model

CAPTION_PROMPT = "Describe this photo in one short sentence, the way an image-captioning model would."


class ModelCaptioner:
    """A `Captioner` backed by a model; built before any sheet is read, so a missing key fails first."""

    def __init__(self, model: str, timeout: float = 120.0):
        self.endpoint = resolve_model(model)
        self.timeout = timeout
        self.label = self.endpoint.label
        LLMClient(self.endpoint)  # fails now, not after the first sheet, on a missing key or URL

    def caption(self, requests: list[tuple[Message, bytes]]) -> int:
        client = LLMClient(self.endpoint, cache=open_cache(), timeout_s=self.timeout)
        jobs = []
        for message, image in requests:
            data = base64.b64encode(image).decode()
            content = [
                {"type": "text", "text": CAPTION_PROMPT},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}},
            ]
            jobs.append((message, [{"role": "user", "content": content}]))

        def done(message: Message, completion: Completion) -> None:
            if completion.error is not None:
                raise RealtalkError(f"captioning {message.dia_id} failed: {completion.error}")
            message.blip_caption = completion.text.strip()

        run_jobs(client, jobs, done, max_tokens=60)
        return len(jobs)
