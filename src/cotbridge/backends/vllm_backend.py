"""vLLM's offline engine for GPU users (``pip install 'cotbridge[vllm]'``); imported only when asked for."""

from __future__ import annotations

import time
from typing import Any

from cotbridge.backends.base import BACKENDS, Completion, Request, ResultCallback, truncate_at_stop
from cotbridge.errors import UserError


class VLLMBackend:
    kind = "vllm"
    cacheable = True

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        **engine_kwargs: Any,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("the vllm backend needs vLLM and a GPU: pip install 'cotbridge[vllm]'") from None
        from cotbridge.models.loading import resolve_model_source

        source, gguf = resolve_model_source(model, gguf_file)
        self.model_id = model
        self.llm = LLM(
            model=f"{source}/{gguf}" if gguf else source,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            **engine_kwargs,
        )

    def generate(
        self, requests: list[Request], progress: bool = True, on_result: ResultCallback | None = None
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        tokenizer = self.llm.get_tokenizer()
        prompts = [
            r.prompt
            if r.prompt is not None
            else tokenizer.apply_chat_template(
                r.messages,
                tokenize=False,
                add_generation_prompt=not r.continue_final,
                continue_final_message=r.continue_final,
            )
            for r in requests
        ]
        params = [
            SamplingParams(
                n=r.n,
                temperature=r.temperature,
                top_p=r.top_p,
                max_tokens=r.max_tokens,
                stop=r.stop or None,
                seed=(r.seed * 100_003 + r.first_sample) if r.temperature > 0 else None,
            )
            for r in requests
        ]
        t0 = time.perf_counter()
        results = self.llm.generate(prompts, params, use_tqdm=progress)  # vLLM schedules the whole list itself
        latency = (time.perf_counter() - t0) / max(1, len(requests))
        out = []
        for i, (req, res) in enumerate(zip(requests, results)):
            comps = []
            for o in res.outputs:
                text, _ = truncate_at_stop(o.text, req.stop)
                comps.append(
                    Completion(
                        text,
                        "length" if o.finish_reason == "length" else "stop",
                        len(res.prompt_token_ids or []),
                        len(o.token_ids),
                        latency,
                    )
                )
            out.append(comps)
            if on_result is not None:
                on_result(i, comps)
        return out


BACKENDS.add("vllm", VLLMBackend)
