"""The files and batches endpoints of an OpenAI-compatible server, for tests/llm_server.py.

POST /v1/files (multipart, purpose=batch) stores a JSONL file; POST /v1/batches creates a batch over it;
every GET /v1/batches/{id} moves the batch one step along `steps` (validating, in_progress, finalizing,
then its end); when it ends, the output file holds a chat completion per answered line and the error
file a line per item that failed or expired. `item_faults` maps a custom_id to "error" (a 500 for that
item), "expired" (not run before the window closed) or "malformed" (a 200 whose body is not a completion).
GET /v1/batches lists them newest first with their metadata, as OpenAI's API does. `lose_create_replies`
creates a batch and then drops the connection instead of answering (a reply lost on the way); a batch whose
id is in `unlisted` is left out of the list (a listing that lags behind a create).
"""

from __future__ import annotations

import email.parser
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.get_payload()
    }


@dataclass
class FakeBatches:
    complete: Callable[[dict], dict]  # a request body -> a chat completion body
    models: tuple[str, ...]
    steps: tuple[str, ...] = ("validating", "in_progress", "finalizing", "completed")
    item_faults: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # batch ids in the order they were created
    mangle_output: Callable[[bytes], bytes] | None = None  # rewrites an output file as it is made
    file_status: int | None = None  # every file download answers with this HTTP error
    lose_create_replies: int = 0  # the next creates make their batch, then drop the connection
    unlisted: set[str] = field(default_factory=set)  # batch ids the list leaves out
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _file(self, content: bytes, purpose: str, name: str) -> dict:
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }

    def post(self, path: str, content_type: str, raw: bytes) -> tuple[int, dict]:
        if path.rstrip("/") == "/v1/files":
            parts = _multipart(content_type, raw)
            if parts.get("purpose") != b"batch" or "file" not in parts:
                return 400, {"error": {"message": "purpose must be batch, with a file"}}
            return 200, self._file(parts["file"], "batch", "input.jsonl")
        if path.endswith("/cancel"):
            batch = self.batches.get(path.split("/")[-2])
            if batch is None:
                return 404, {"error": {"message": "no such batch"}}
            batch["status"] = "cancelled"
            return 200, batch
        body = json.loads(raw or b"{}")
        if body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": f"no such file {body.get('input_file_id')!r}"}}
        if body.get("endpoint") != "/v1/chat/completions":
            return 400, {"error": {"message": "endpoint must be /v1/chat/completions"}}
        with self.lock:
            batch_id = f"batch_{len(self.created) + 1}"
            lines = self.files[body["input_file_id"]].decode().splitlines()
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
                "_step": 0,
            }
            self.created.append(batch_id)
            if self.lose_create_replies:
                self.lose_create_replies -= 1
                return None, {}  # the server made it; the client never hears
        return 200, self._public(self.batches[batch_id])

    def get(self, path: str) -> tuple[int, dict | bytes]:
        if path.split("?")[0].rstrip("/") == "/v1/batches":  # the list, newest first, in one page
            listed = [
                self._public(self.batches[b])
                for b in reversed(self.created)
                if b in self.batches and b not in self.unlisted
            ]
            return 200, {"object": "list", "data": listed, "has_more": False}
        parts = path.strip("/").split("/")  # v1 files ID content | v1 batches ID
        if parts[1] == "files" and self.file_status is not None:
            return self.file_status, {"error": {"message": "file trouble"}}
        if parts[1] == "files" and len(parts) == 4 and parts[3] == "content" and parts[2] in self.files:
            return 200, self.files[parts[2]]
        if parts[1] == "batches" and len(parts) == 3 and parts[2] in self.batches:
            batch = self.batches[parts[2]]
            if batch["status"] not in ("completed", "expired", "failed", "cancelled"):
                batch["_step"] += 1
                batch["status"] = self.steps[min(batch["_step"], len(self.steps) - 1)]
                if batch["status"] in ("completed", "expired"):
                    self._run(batch)
                elif batch["status"] == "failed":
                    batch["errors"] = {"object": "list", "data": [{"code": "invalid_file", "message": "bad input"}]}
            return 200, self._public(batch)
        return 404, {"error": {"message": "not found"}}

    def _run(self, batch: dict) -> None:
        outputs, errors = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            custom_id, fault = request["custom_id"], self.item_faults.get(request["custom_id"])
            if batch["status"] == "expired" and fault is None:
                fault = "expired"
            if fault == "expired":
                errors.append(
                    {
                        "id": f"req_{custom_id}",
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": "batch_expired", "message": "not run before the window closed"},
                    }
                )
            elif fault == "error" or request["body"].get("model") not in self.models:
                errors.append(
                    {
                        "id": f"req_{custom_id}",
                        "custom_id": custom_id,
                        "error": None,
                        "response": {"status_code": 500, "body": {"error": {"message": "server error"}}},
                    }
                )
            else:
                body = {"choices": "nonsense"} if fault == "malformed" else self.complete(request["body"])
                outputs.append(
                    {
                        "id": f"req_{custom_id}",
                        "custom_id": custom_id,
                        "error": None,
                        "response": {"status_code": 200, "request_id": "r", "body": body},
                    }
                )
        if outputs:
            content = self.mangle_output(_jsonl(outputs)) if self.mangle_output else _jsonl(outputs)
            batch["output_file_id"] = self._file(content, "batch_output", "output.jsonl")["id"]
        if errors:
            batch["error_file_id"] = self._file(_jsonl(errors), "batch_output", "errors.jsonl")["id"]
        batch["request_counts"].update(completed=len(outputs), failed=len(errors))

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}


def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)
