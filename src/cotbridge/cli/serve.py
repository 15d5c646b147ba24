"""``cotbridge serve``: a model behind an OpenAI-compatible HTTP API, with optional injected faults."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

from cotbridge.cli.options import in_range

MAX_BODY_MB = 1024 * 1024  # 1 TiB: a larger limit is a typo


def serve_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="hub id, local folder, .gguf file or embedded name")],
    host: Annotated[
        str,
        typer.Option(metavar="HOST", help="address to listen on (the server has no authentication: keep it local)"),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", callback=in_range(ge=0, le=65535), help="port (0 picks a free one)")
    ] = 8000,
    batch_size: Annotated[
        int, typer.Option(metavar="N", callback=in_range(ge=1), help="sequences per generation batch")
    ] = 16,
    gguf_file: Annotated[
        Optional[str], typer.Option(metavar="FILE", help="GGUF file inside a model folder holding several")
    ] = None,
    faults: Annotated[
        Optional[str],
        typer.Option(
            metavar="SPEC",
            help="inject faults, e.g. rate=0.3,kinds=429,hang,retry_after=1 (kinds: 429, 500, hang, "
            "malformed, drop; other keys: seed, hang_s, max)",
        ),
    ] = None,
    latency_ms: Annotated[
        float,
        typer.Option(
            metavar="MS", callback=in_range(ge=0), help="extra latency per request, slept outside the generation lock"
        ),
    ] = 0.0,
    request_log: Annotated[
        Optional[str],
        typer.Option(
            metavar="FILE",
            help="append every received request to this JSONL file (if it cannot be written, requests are still "
            "answered: one warning, retried every 30 s, dropped lines counted)",
        ),
    ] = None,
    max_body_mb: Annotated[
        float,
        typer.Option(
            metavar="MB",
            callback=in_range("megabytes; 1048576 is 1 TiB", gt=0, lt=MAX_BODY_MB),
            help="refuse request bodies larger than this with a 413, unread",
        ),
    ] = 8.0,
    model_name: Annotated[
        Optional[str],
        typer.Option(
            metavar="NAME", help="the model name clients ask for (default MODEL); requests for another get a 404"
        ),
    ] = None,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    from cotbridge.server import OpenAICompatServer, parse_faults

    spec = parse_faults(faults)  # bad specs fail before the model loads (numbers are range-checked when parsed)
    from cotbridge.backends.hf import HFBackend

    backend = HFBackend(model, gguf_file=gguf_file, batch_size=batch_size)
    server = OpenAICompatServer(
        backend,
        host=host,
        port=port,
        faults=spec,
        latency_ms=latency_ms,
        request_log=request_log,
        model_name=model_name or model,
        max_body_bytes=max(1, int(max_body_mb * 1024 * 1024)),
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        log = logging.getLogger("cotbridge.server")
        log.warning("listening on %s: anyone who can reach it can use the model", host)
    typer.echo(f"serving {model} at {server.url} (OpenAI-compatible; Ctrl-C stops)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopping", err=True)
    finally:
        server.stop()
