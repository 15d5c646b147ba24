"""``cotbridge serve``: a model behind an OpenAI-compatible HTTP API, with optional injected faults.

Each option stands for a ServeConfig key (OPTIONS); its help is that key's comment, rendered from the config class.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Optional

import typer

from cotbridge.cli.help_format import config_flags
from cotbridge.cli.options import ConfigOpt, set_option
from cotbridge.errors import UserError

SETTINGS = "cotbridge.server:ServeConfig"
SetOpt = set_option("port=8001")
OPTIONS = {
    k: k
    for k in (
        "model",
        "host",
        "port",
        "batch_size",
        "gguf_file",
        "faults",
        "latency_ms",
        "request_log",
        "max_body_mb",
        "model_name",
    )
}
Str = Optional[str]


def serve_cmd(
    model: Annotated[Str, typer.Argument(metavar="MODEL")] = None,
    host: Annotated[Str, typer.Option(metavar="HOST")] = None,
    port: Annotated[Optional[int], typer.Option(metavar="PORT")] = None,
    batch_size: Annotated[Optional[int], typer.Option(metavar="N")] = None,
    gguf_file: Annotated[Str, typer.Option(metavar="FILE")] = None,
    faults: Annotated[Str, typer.Option(metavar="SPEC")] = None,
    latency_ms: Annotated[Optional[float], typer.Option(metavar="MS")] = None,
    request_log: Annotated[Str, typer.Option(metavar="FILE")] = None,
    max_body_mb: Annotated[Optional[float], typer.Option(metavar="MB")] = None,
    model_name: Annotated[Str, typer.Option(metavar="NAME")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    from cotbridge.config import load_config
    from cotbridge.server import OpenAICompatServer, ServeConfig, check_can_listen, parse_faults

    cfg = load_config(ServeConfig, config, set_, config_flags(locals(), OPTIONS))
    if cfg.model is None:
        raise UserError("serve needs MODEL (or the key model in --config)")
    spec = parse_faults(cfg.faults)  # bad specs fail before the model loads (numbers are range-checked when parsed)
    check_can_listen(cfg.host, cfg.port)  # so do a port in use and a bad host
    from cotbridge.backends.hf import HFBackend

    backend = HFBackend(cfg.model, gguf_file=cfg.gguf_file, batch_size=cfg.batch_size)
    server = OpenAICompatServer(
        backend,
        host=cfg.host,
        port=cfg.port,
        faults=spec,
        latency_ms=cfg.latency_ms,
        request_log=cfg.request_log,
        model_name=cfg.model_name or cfg.model,
        max_body_bytes=max(1, int(cfg.max_body_mb * 1024 * 1024)),
    )
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("cotbridge.server").warning(
            "listening on %s: anyone who can reach it can use the model", cfg.host
        )
    typer.echo(f"serving {cfg.model} at {server.url} (OpenAI-compatible; Ctrl-C stops)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopping", err=True)
    finally:
        server.stop()
