"""Client concurrency against `cotbridge serve`: OpenAIBackend at concurrency 1 vs 32, one run.

200 chat requests go to a local OpenAI-compatible server (cotbridge.server.running_server on
127.0.0.1) that injects 100 ms of latency per request — slept outside its generation lock, like
network + queueing time of a real API — over an instant backend defined here, so the numbers
measure overlap, not model speed. Same requests, same server settings on both sides; the server
is restarted between the two runs. By default the server runs in a child process, as a real
server would (``--in-process`` runs it in a thread of this process, sharing the GIL with the
client). Writes bench/results/serve_concurrency.{json,md}.

    .venv/bin/python bench/serve_concurrency.py
    .venv/bin/python bench/serve_concurrency.py --requests 40 --latency-ms 50   # quicker
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


class InstantBackend:
    """Answers at once: the text is a fixed function of the prompt; token counts ~ words."""

    kind = "instant"
    model_id = "instant"

    def generate(self, requests, progress=True, on_result=None):
        from cotbridge.backends.base import Completion

        out = []
        for r in requests:
            prompt = r.prompt if r.prompt is not None else r.messages[-1]["content"]
            text = f"Let's think step by step. {prompt} The answer is 7."
            out.append([Completion(text, "stop", len(prompt.split()), len(text.split())) for _ in range(r.n)])
        return out


def _serve_child(conn, latency_ms: float) -> None:
    from cotbridge.server import running_server

    with running_server(InstantBackend(), latency_ms=latency_ms) as url:
        conn.send(url)
        conn.poll(600)  # until the parent says stop (or 10 minutes pass)


@contextmanager
def server(latency_ms: float, in_process: bool) -> Iterator[str]:
    """running_server over InstantBackend, in this process or in a child process."""
    from cotbridge.server import running_server

    if in_process:
        with running_server(InstantBackend(), latency_ms=latency_ms) as url:
            yield url
        return
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_child, args=(child, latency_ms), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the server process did not start")
        yield parent.recv()
    finally:
        parent.send("stop")
        proc.join(timeout=15)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def run(n_requests: int, latency_ms: float, concurrency: int, in_process: bool = False) -> dict:
    from cotbridge.backends.base import Request
    from cotbridge.backends.openai_api import OpenAIBackend

    requests = [
        Request(messages=[{"role": "user", "content": f"Q{i}: What is 3 + 4?"}], max_tokens=32)
        for i in range(n_requests)
    ]
    calls: list[int] = []
    with server(latency_ms, in_process) as url:
        backend = OpenAIBackend("instant", base_url=url, concurrency=concurrency, timeout_s=30, max_retries=2)
        t0 = time.perf_counter()
        out = backend.generate(requests, progress=False, on_result=lambda i, comps: calls.append(i))
        wall = time.perf_counter() - t0
    assert len(out) == n_requests and all(len(c) == 1 and c[0].text.endswith("The answer is 7.") for c in out)
    assert sorted(calls) == list(range(n_requests))
    return {
        "concurrency": concurrency,
        "requests": n_requests,
        "wall_s": round(wall, 3),
        "requests_per_s": round(n_requests / wall, 2),
        "retries": backend.usage.retries,
        "completion_tokens": backend.usage.completion_tokens,
        "ideal_wall_s": round(-(-n_requests // concurrency) * latency_ms / 1000, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--target", type=float, default=20.0, help="speed-up the run should reach")
    ap.add_argument("--in-process", action="store_true", help="serve from a thread of this process (shares the GIL)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    serial = run(args.requests, args.latency_ms, 1, args.in_process)
    print(f"concurrency 1:  {serial['wall_s']:.2f} s ({serial['requests_per_s']:.1f} req/s)")
    parallel = run(args.requests, args.latency_ms, args.concurrency, args.in_process)
    print(f"concurrency {args.concurrency}: {parallel['wall_s']:.2f} s ({parallel['requests_per_s']:.1f} req/s)")
    ratio = serial["wall_s"] / parallel["wall_s"]
    verdict = "meets" if ratio >= args.target else "misses"
    print(f"speed-up {ratio:.1f}x ({verdict} the {args.target:g}x target)")

    import openai

    result = {
        "bench": "serve_concurrency",
        "requests": args.requests,
        "latency_ms": args.latency_ms,
        "server": "thread in the client's process" if args.in_process else "child process",
        "runs": [serial, parallel],
        "speedup": round(ratio, 2),
        "target": args.target,
        "meets_target": ratio >= args.target,
        "env": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "openai": openai.__version__,
        },
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_concurrency.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rows = "\n".join(
        f"| {r['concurrency']} | {r['requests']} | {r['wall_s']:.2f} | {r['ideal_wall_s']:.2f} | "
        f"{r['requests_per_s']:.1f} | {r['retries']} |"
        for r in (serial, parallel)
    )
    md = f"""# OpenAIBackend concurrency against `cotbridge serve`

{args.requests} chat requests, {args.latency_ms:g} ms latency injected per request by the server (outside its
generation lock), instant backend, server in \
{"a thread of the client's process" if args.in_process else "a child process"};
the same requests at concurrency 1 and {args.concurrency}.
Ideal wall time = ceil(requests / concurrency) x latency.

| concurrency | requests | wall s | ideal s | req/s | retries |
|---|---|---|---|---|---|
{rows}

Speed-up: **{ratio:.1f}x** (target {args.target:g}x: {verdict}).

Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, openai {openai.__version__}.
Reproduce: `.venv/bin/python bench/serve_concurrency.py`
"""
    (RESULTS / "serve_concurrency.md").write_text(md, encoding="utf-8")
    print(f"wrote {RESULTS / 'serve_concurrency.json'} and .md")


if __name__ == "__main__":
    main()
