"""Serve recorded teacher outputs from JSONL, so a released (or earlier paid) run is reused, not re-bought.

Records are matched to examples by id (``id_field``, optionally through ``id_template`` such as
``"test-{}"``) or by normalised question text (``question_field``). ``text_field`` may point at a
string (one sample) or a list of strings (several samples per question).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from cotbridge.backends.base import BACKENDS, Completion, Request, ResultCallback
from cotbridge.errors import DataError, UserError
from cotbridge.jsonl import get_field, read_jsonl

log = logging.getLogger(__name__)
MISSING = "missing"  # finish_reason of a sample the recording does not have


def normalize_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class ReplayBackend:
    kind = "replay"
    cacheable = False  # worth a cache entry: costs money or minutes to make again

    def __init__(
        self,
        model: str,
        *,
        path: str | None = None,
        text_field: str = "output",
        id_field: str | None = None,
        id_template: str = "{}",
        question_field: str | None = None,
        teacher: str | None = None,
        **_: Any,
    ):
        path = path or model
        if (id_field is None) == (question_field is None):
            raise UserError("replay backend: give exactly one of id_field or question_field to match records")
        self.path = Path(path)
        self.model_id = teacher or f"replay:{self.path.name}"
        self.by_key: dict[str, list[str | None]] = {}
        for line, rec in enumerate(read_jsonl(self.path), 1):
            key_value = get_field(rec, id_field or question_field or "", path=self.path, line=line)
            key = id_template.format(key_value) if id_field else normalize_question(str(key_value))
            texts = get_field(rec, text_field, path=self.path, line=line)
            texts = texts if isinstance(texts, list) else [texts]
            if any(t is not None and not isinstance(t, str) for t in texts):
                raise DataError(self.path, f"field {text_field!r} must hold text or a list of texts", line)
            self.by_key[key] = texts
        self.match_on_id = id_field is not None
        log.info("replay: %d recorded questions from %s", len(self.by_key), self.path)

    def lookup(self, req: Request) -> list[str | None] | None:
        ex = req.meta.get("example")
        if ex is None:
            raise UserError("replay backend needs requests built by cotbridge (with the example attached)")
        return self.by_key.get(ex.id if self.match_on_id else normalize_question(ex.question))

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        out = []
        for i, req in enumerate(requests):
            texts = self.lookup(req) or []
            comps = []
            for j in range(req.first_sample, req.first_sample + req.n):
                text = texts[j] if j < len(texts) else None
                comps.append(Completion(text, "stop") if text else Completion("", MISSING))
            out.append(comps)
            if on_result is not None:
                on_result(i, comps)
        return out


BACKENDS.add("replay", ReplayBackend)
