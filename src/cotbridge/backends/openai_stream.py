"""A finished answer as the OpenAI API streams it (``stream: true``): server-sent events, one ``data:`` line a chunk,
ending with ``data: [DONE]``.

``cotbridge serve`` generates a whole batch at once (its backends have no per-token callback), so a choice's text
arrives as one delta when it is complete, not token by token: a client reading the stream gets the same chunk
shapes, in the same order, as from the API (chat: the role, the content with its log-probs, then the finish
reason; completions: the text, then the finish reason), and with ``stream_options.include_usage`` a last chunk with
no choices and the usage, every chunk before it carrying ``"usage": null``.
"""

from __future__ import annotations

import json
from typing import Any


def stream_events(body: dict[str, Any], include_usage: bool) -> bytes:
    """The event stream of a finished chat.completion or text_completion ``body``."""
    chat = body["object"] == "chat.completion"
    head = {
        "id": body["id"],
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": body["created"],
        "model": body["model"],
    }
    usage = {"usage": None} if include_usage else {}
    chunks: list[dict[str, Any]] = []
    for c in body["choices"]:
        if chat:
            message = c["message"]
            delta = {k: v for k, v in message.items() if k != "role"}
            chunks.append(
                {
                    **head,
                    "choices": [
                        {
                            "index": c["index"],
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                    **usage,
                }
            )
            chunks.append(
                {
                    **head,
                    "choices": [
                        {"index": c["index"], "delta": delta, "logprobs": c.get("logprobs"), "finish_reason": None}
                    ],
                    **usage,
                }
            )
            chunks.append(
                {
                    **head,
                    "choices": [
                        {"index": c["index"], "delta": {}, "logprobs": None, "finish_reason": c["finish_reason"]}
                    ],
                    **usage,
                }
            )
        else:
            text = {k: v for k, v in c.items() if k != "finish_reason"}
            chunks.append({**head, "choices": [{**text, "finish_reason": None}], **usage})
            chunks.append(
                {
                    **head,
                    "choices": [
                        {"index": c["index"], "text": "", "logprobs": None, "finish_reason": c["finish_reason"]}
                    ],
                    **usage,
                }
            )
    if include_usage:
        chunks.append({**head, "choices": [], "usage": body["usage"]})
    lines = [
        b"data: " + json.dumps(ch, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n\n" for ch in chunks
    ]
    return b"".join(lines) + b"data: [DONE]\n\n"
