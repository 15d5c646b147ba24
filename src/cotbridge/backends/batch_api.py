"""OpenAI Batch API files: export requests as Batch input JSONL, import Batch output (any order) by custom_id.

A mixin of OpenAIBackend: each line's body is the backend's request body, and each result is read as a response
(backends/openai_wire.py, the one wire format).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cotbridge.backends.base import Completion, Request
from cotbridge.backends.openai_wire import ROUTES, Malformed, check_shape
from cotbridge.errors import DataError, UserError
from cotbridge.fileio import write_text

log = logging.getLogger(__name__)


class BatchAPIMixin:
    api: str
    request_body: Any
    _completions: Any
    _account: Any
    _redact: Any

    def export_batch_jsonl(
        self, requests: list[Request], path: str | Path, custom_ids: list[str] | None = None
    ) -> Path:
        """Write OpenAI Batch API input: one ``{"custom_id", "method", "url", "body"}`` line per request."""
        ids = list(custom_ids) if custom_ids is not None else [f"request-{i}" for i in range(len(requests))]
        if len(ids) != len(requests):
            raise UserError(f"{len(ids)} custom_ids for {len(requests)} requests")
        if len(set(ids)) != len(ids) or not all(isinstance(c, str) and c for c in ids):
            raise UserError("custom_ids must be distinct non-empty strings")
        url = "/v1" + ROUTES[self.api]
        lines = [
            json.dumps(
                {"custom_id": cid, "method": "POST", "url": url, "body": self.request_body(req)}, ensure_ascii=False
            )
            for cid, req in zip(ids, requests)
        ]
        return write_text(path, "".join(line + "\n" for line in lines))

    def import_batch_results(
        self,
        path: str | Path,
        requests: Mapping[str, Request] | None = None,
        *,
        strict: bool = True,
        price_factor: float = 0.5,
    ) -> dict[str, list[Completion]]:
        """Read OpenAI Batch API output (any line order) into ``{custom_id: [Completion, ...]}``.

        ``requests`` (custom_id → Request) lets stop strings beyond the API's 4 be applied. A failed
        request raises a DataError naming file and line (``strict=False``: skipped with a warning).
        ``price_factor`` is the Batch API discount applied to ``cost_usd`` (0.5 as of writing).
        """
        p = Path(path)
        if not p.is_file():
            raise UserError(f"batch results file {p} does not exist")
        results: dict[str, list[Completion]] = {}
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(p, f"not valid JSON: {e.msg}", line=lineno) from None
                if not isinstance(rec, dict) or not isinstance(rec.get("custom_id"), str):
                    raise DataError(p, "a batch result line needs a custom_id string", line=lineno)
                cid = rec["custom_id"]
                if cid in results:
                    raise DataError(p, f"custom_id {cid!r} appears twice", line=lineno)
                resp = rec.get("response") if isinstance(rec.get("response"), dict) else {}
                status = resp.get("status_code")
                if rec.get("error") or status != 200:
                    err = rec.get("error") or (resp.get("body") or {}).get("error") or {}
                    msg = err.get("message") if isinstance(err, dict) else err
                    problem = (
                        f"custom_id {cid!r} failed (status {status}): {self._redact(str(msg or 'no message'))[:300]}"
                    )
                    if strict:
                        raise DataError(p, problem, line=lineno)
                    log.warning("%s:%d: %s; skipped", p, lineno, problem)
                    continue
                body = resp.get("body")
                try:
                    check_shape(body)
                except Malformed as e:
                    raise DataError(p, f"custom_id {cid!r}: response body: {e}", line=lineno) from None
                req = (requests or {}).get(cid)
                comps = self._completions(body, list(req.stop) if req else [], 0.0, price_factor)  # type: ignore[arg-type]
                if req is not None and len(comps) != req.n:
                    raise DataError(
                        p, f"custom_id {cid!r}: {len(comps)} choices for a request with n={req.n}", line=lineno
                    )
                self._account(comps)
                results[cid] = comps
        return results
