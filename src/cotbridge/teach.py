"""``cotbridge teach``: a teacher answers a task split with (diverse) chain-of-thought; one record per
(question, sample) lands in ``<run_dir>/teacher/<task>.jsonl``.

Re-running the same command resumes: finished samples are skipped, and calls that were paid for but
not yet recorded come back from the request cache. Records are appended whole and fsynced per chunk.
"""

from __future__ import annotations

import functools
import inspect
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from tqdm.auto import tqdm

from cotbridge.answers.score import score_output
from cotbridge.backends import BACKENDS, get_backend
from cotbridge.backends.base import Request
from cotbridge.backends.request_cache import CachedBackend, RequestCache, contiguous_runs, default_cache_path
from cotbridge.backends.secrets import check_no_literal_secrets
from cotbridge.config import StrictModel, dump_config
from cotbridge.errors import UserError
from cotbridge.folder_lock import folder_lock
from cotbridge.inference.records import TeacherRecord
from cotbridge.inference.two_stage import TwoStageSample, generate_two_stage, sampling_temperature
from cotbridge.jsonl import read_json, write_json
from cotbridge.prompts.modes import (
    PROMPT_MODES,
    PromptContext,
    PromptMode,
    answer_request,
    first_request,
    load_few_shot,
)
from cotbridge.record_file import RecordFile
from cotbridge.run_record import refuse_if_changed
from cotbridge.tasks import Example, parse_task_spec
from cotbridge.tasks.base import answer_choices, choice_letters

log = logging.getLogger(__name__)
# What determines a record: a rerun with other values would mix records of two settings in one file.
# (limit and samples may grow: the records already made stay valid.)
FINGERPRINT_KEYS = (
    "task",
    "split",
    "teacher",
    "mode",
    "temperature",
    "max_tokens",
    "answer_max_tokens",
    "generic_trigger",
    "few_shot_prompts",
    "chat",
    "pipeline",
    "seed",
)
TEACH_MODES = ("zero_shot_cot", "zero_shot_cot_single", "few_shot_cot")
AnswerBuilder = Callable[[Example, Request, str], Request]  # (example, stage-1 request, rationale) -> answer request


class TeacherConfig(StrictModel):
    backend: str = "reference"
    model: str | None = None
    options: dict[str, Any] = {}  # passed to the backend: base_url, api_key_env, concurrency, path, error_rate, ...


class TeachConfig(StrictModel):
    task: str = "synthetic_arithmetic"
    split: str = "train"
    data_dir: str | None = None
    limit: int | None = Field(default=None, ge=1)  # the first N questions; None: all of them
    teacher: TeacherConfig = TeacherConfig()
    mode: str = "zero_shot_cot"
    samples: int = 1  # D: rationales per question (diverse reasoning when > 1)
    temperature: float | None = None  # None: 0 for one sample, 0.7 for diverse reasoning
    max_tokens: int = 128
    answer_max_tokens: int = 32
    generic_trigger: bool = False
    few_shot_prompts: str | None = None
    chat: bool = False
    pipeline: str | None = None
    seed: int = 0
    run_dir: str = "runs/teach"
    cache: str | None = (
        None  # SQLite file; default $COTBRIDGE_CACHE or ~/.cache/cotbridge/requests.sqlite; "off" disables
    )
    chunk_size: int = 64  # questions per chunk; records are made durable after each chunk
    max_cost: float | None = None  # USD; the run stops cleanly before a chunk that could pass it
    dry_run: bool = False
    tag: str | None = None  # names the record file <task>.<tag>.jsonl, so runs with other settings sit side by side
    batch_export: str | None = None  # write the missing calls as OpenAI Batch API input JSONL, call nothing
    batch_import: str | None = None  # load Batch API output into the cache, then run (two-stage: export again)
    force_new: bool = False  # records made with other settings are kept aside (<stem>.replaced-<time>.jsonl)


class Teacher:
    """Builds requests for one task, runs them through a (cached) backend and writes records."""

    def __init__(
        self,
        cfg: TeachConfig,
        backend: Any = None,
        progress: bool = True,
        examples: list[Example] | None = None,
        answer_request: AnswerBuilder | None = None,
    ):
        """``examples``: the questions to teach instead of the task split's (e.g. with trimmed contexts);
        ``answer_request(example, first_request, rationale)``: how stage 2 asks for the answer instead of the prompt
        mode's own (LM-guided CoT asks exactly as its evaluation does). ``backend``: a ready backend object."""
        if cfg.mode not in TEACH_MODES:
            raise UserError(f"teach mode {cfg.mode!r} is not one of {', '.join(TEACH_MODES)}")
        check_no_literal_secrets(cfg.teacher.options)
        self.cfg, self.progress = cfg, progress
        self.task, params = parse_task_spec(cfg.task)
        if examples is None:
            examples = self.task.load(cfg.split, cfg.data_dir, **params)
            examples = examples[: cfg.limit] if cfg.limit else examples
        self.examples = examples
        self._answer_request = answer_request
        self.mode: PromptMode = PROMPT_MODES.get(cfg.mode)
        few_shot = (
            load_few_shot(cfg.few_shot_prompts, self.task.name)
            if self.mode.needs_few_shot and cfg.few_shot_prompts
            else None
        )
        self.ctx = PromptContext(self.task, few_shot=few_shot, generic_trigger=cfg.generic_trigger)
        self.pipeline = cfg.pipeline or ("answer_stage" if self.mode.second else "default")
        self.temperature = sampling_temperature(cfg.temperature, cfg.samples)
        self.run_dir = Path(cfg.run_dir)
        self.stem = f"{self.task.name}.{cfg.tag}" if cfg.tag else self.task.name
        self.folder = self.run_dir / "teacher"
        if cfg.force_new:
            self.set_aside()
        self.records = RecordFile(self.folder / f"{self.stem}.jsonl")
        self.backend = backend
        self.cache: RequestCache | None = None
        self.spent = sum(r.get("cost_usd") or 0.0 for r in self.records.records.values())

    # -- which settings made the records -------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        fp = self.cfg.model_dump(mode="json", include=set(FINGERPRINT_KEYS))
        fp["temperature"] = self.temperature
        return fp

    def check_fingerprint(self) -> None:
        """Refuse to add records made with other settings to this record file (naming what changed), or to add to
        records whose settings are not on record (a lost fingerprint file: another teacher's records would mix in
        silently). Claims an empty record file for these settings at once, before any record can be written."""
        path = self.folder / f"{self.stem}.fingerprint.json"
        if not len(self.records):
            write_json(path, self.fingerprint())
            return
        made_with = "made with other settings" if path.exists() else "whose settings are not on record"
        refuse_if_changed(
            read_json(path) if path.exists() else None,
            self.fingerprint(),
            holder=f"{self.records.path} holds {len(self.records)} records {made_with}",
            remedy="rerun with --force-new to keep them aside and start over, or use another --run-dir",
        )

    def set_aside(self) -> None:
        """``--force-new``: move this record file and its companions to ``<stem>.replaced-<time>.*`` (nothing lost)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in (".jsonl", ".summary.json", ".fingerprint.json", ".config.yaml"):
            old = self.folder / f"{self.stem}{suffix}"
            if old.exists():
                new = self.folder / f"{self.stem}.replaced-{stamp}{suffix}"
                old.rename(new)
                log.warning("--force-new: kept %s as %s", old.name, new.name)

    # -- what is left -----------------------------------------------------------------------------
    def missing(self) -> list[tuple[Example, list[int]]]:
        todo = []
        for ex in self.examples:
            need = [j for j in range(self.cfg.samples) if record_key(ex, j) not in self.records]
            if need:
                todo.append((ex, need))
        return todo

    # -- requests -----------------------------------------------------------------------------------
    def first_request(self, ex: Example, samples: list[int]) -> Request:
        return first_request(
            ex,
            self.mode,
            self.ctx,
            n=len(samples),
            first_sample=samples[0],
            temperature=self.temperature,
            max_tokens=self.cfg.max_tokens,
            seed=self.cfg.seed,
            chat=self.cfg.chat,
        )

    def answer_request(self, ex: Example, first: Request, rationale: str) -> Request:
        if self._answer_request is not None:
            return self._answer_request(ex, first, rationale)
        return answer_request(
            ex, first, rationale, self.mode, self.ctx, max_tokens=self.cfg.answer_max_tokens, seed=self.cfg.seed
        )

    # -- running ------------------------------------------------------------------------------------
    def open_backend(self) -> Any:
        if self.backend is None:
            t = self.cfg.teacher
            options = dict(t.options)
            # Backends that read the task themselves (oracle) get the task being taught unless told otherwise.
            takes = inspect.signature(BACKENDS.get(t.backend)).parameters
            for key, value in (("task", self.cfg.task), ("split", self.cfg.split), ("data_dir", self.cfg.data_dir)):
                if key in takes and key not in options:
                    options[key] = value
            self.backend = get_backend(t.backend, model=t.model or t.backend, **options)
        if (
            self.cfg.cache != "off"
            and getattr(self.backend, "cacheable", True)
            and not isinstance(self.backend, CachedBackend)
        ):
            self.cache = RequestCache(self.cfg.cache or default_cache_path())
            self.backend = CachedBackend(self.backend, self.cache)
        return self.backend

    @functools.cached_property
    def price_table(self) -> Any:
        """The teacher's ``prices`` option read once (None: the built-in table)."""
        from cotbridge.backends import pricing

        prices = self.cfg.teacher.options.get("prices")
        return pricing.load_price_table(prices) if prices is not None else None

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens at the teacher model's price (None: a model without a price)."""
        from cotbridge.backends import pricing

        model = self.cfg.teacher.model or self.cfg.teacher.backend
        return pricing.cost(model, prompt_tokens, completion_tokens, self.price_table)

    def estimate_cost(self, todo: list[tuple[Example, list[int]]]) -> dict[str, Any]:
        """Upper bound for a dry run: prompt tokens ~ chars/4, every sample using all its max tokens."""
        prompt_tokens = completion_tokens = 0
        for ex, samples in todo:
            p = len(self.mode.first(ex, self.ctx)) // 4 + 1
            prompt_tokens += p * (1 + (len(samples) if self.mode.second else 0))
            completion_tokens += len(samples) * (
                self.cfg.max_tokens + (self.cfg.answer_max_tokens if self.mode.second else 0)
            )
            prompt_tokens += len(samples) * self.cfg.max_tokens if self.mode.second else 0
        cost = self.price(prompt_tokens, completion_tokens)
        return {
            "questions": len(todo),
            "samples": sum(len(s) for _, s in todo),
            "prompt_tokens": prompt_tokens,
            "completion_tokens_max": completion_tokens,
            "cost_usd_max": cost,
        }

    # -- OpenAI Batch API: export what is missing, import results into the cache ----------------------
    def pending_requests(self) -> list[tuple[str, Request]]:
        """(cache key, one-sample request) for every call still needed; two-stage answers once rationales exist."""
        backend = self.open_backend()
        if not isinstance(backend, CachedBackend):
            raise UserError("batch export needs the request cache (cache must not be 'off')")
        from cotbridge.backends.request_cache import request_key

        inner, cache = backend.backend, backend.cache
        pending = []
        for ex, samples in self.missing():
            for j in samples:
                first = self.first_request(ex, [j])
                key = request_key(inner.kind, inner.model_id, first, j)
                got = cache.get(key)
                if got is None:
                    pending.append((key, first))
                elif self.mode.second:
                    answer = self.answer_request(ex, first, got.text)
                    if cache.get(akey := request_key(inner.kind, inner.model_id, answer, 0)) is None:
                        pending.append((akey, answer))
        return list(dict(pending).items())  # identical calls (same rationale twice) are asked once

    def export_batch(self, path: str | Path) -> int:
        pending = self.pending_requests()
        inner = self.backend.backend  # type: ignore[union-attr]
        if not hasattr(inner, "export_batch_jsonl"):
            raise UserError(f"the {inner.kind} backend has no Batch API; use the openai backend")
        if self.cfg.max_cost is not None:
            pending = self.within_budget(pending)
        inner.export_batch_jsonl([r for _, r in pending], path, custom_ids=[k for k, _ in pending])
        log.info("wrote %d batch requests to %s", len(pending), path)
        return len(pending)

    def within_budget(self, pending: list[tuple[str, Request]]) -> list[tuple[str, Request]]:
        """The first pending calls whose worst-case cost (prompt ~ chars/4, every max token used) fits what is left of
        ``max_cost``: a Batch API export is capped like a live run."""
        left, kept = (self.cfg.max_cost or 0.0) - self.spent, []
        for key, req in pending:
            text = req.prompt if req.prompt is not None else " ".join(m["content"] for m in req.messages or [])
            cost = self.price(len(text) // 4 + 1, req.max_tokens) or 0.0
            if cost > left:
                log.warning(
                    "--max-cost %s USD: exported %d of %d pending calls (the rest could pass the cap); raise it "
                    "and export again for the rest",
                    self.cfg.max_cost,
                    len(kept),
                    len(pending),
                )
                break
            left -= cost
            kept.append((key, req))
        return kept

    def import_batch(self, path: str | Path) -> int:
        """Put Batch API results into the request cache; the next ``teach`` run then calls nothing for them."""
        backend = self.open_backend()
        inner = backend.backend
        by_key = dict(self.pending_requests())
        results = inner.import_batch_results(path, requests=by_key)
        stored = 0
        for key, comps in results.items():
            if key not in by_key:
                log.warning("%s: custom_id %s is not a pending request of this run; ignored", path, key[:12])
                continue
            stored += backend.cache.put(key, comps[0])
        log.info("imported %d of %d batch results into the cache", stored, len(results))
        return stored

    def run(self) -> dict[str, Any]:
        with folder_lock(self.run_dir, "--run-dir"):
            return self._run()

    def _run(self) -> dict[str, Any]:
        before, spent_before = len(self.records), self.spent
        try:
            return self._teach()
        except KeyboardInterrupt:
            # Every record is appended whole, and the calls in flight were cached as they arrived: say what was
            # kept, what it cost and how to go on; the CLI then exits 130.
            log.warning(
                "stopped: %d records in %s (%d new this run, %.4f USD spent this run); the same command resumes: %s",
                len(self.records),
                self.records.path,
                len(self.records) - before,
                self.spent - spent_before,
                resume_command(),
            )
            raise

    def _teach(self) -> dict[str, Any]:
        self.check_fingerprint()
        todo = self.missing()
        done_before = len(self.records)
        if self.cfg.dry_run:
            est = self.estimate_cost(todo)
            log.info("dry run: %s", est)
            return {"dry_run": est, "records": done_before}
        if not todo:
            log.info("%s: all %d records already present; nothing to do", self.task.name, done_before)
            summary_path = self.run_dir / "teacher" / f"{self.stem}.summary.json"
            # A resumed run that calls nothing leaves the record of the run that did the work as it was.
            return read_json(summary_path) if summary_path.exists() else self.summarize(stopped=None)
        # The teach stage's own settings, beside its records: a run directory's config.yaml belongs to the recipe.
        (self.run_dir / "teacher").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "teacher" / f"{self.stem}.config.yaml").write_text(dump_config(self.cfg), encoding="utf-8")
        backend = self.open_backend()
        total = sum(len(s) for _, s in todo)
        bar = tqdm(total=total, desc=f"teach {self.task.name}", unit="sample", disable=not self.progress)
        tokens = 0  # completion tokens of this run, all chunks
        try:
            stopped = None
            for start in range(0, len(todo), self.cfg.chunk_size):
                chunk = todo[start : start + self.cfg.chunk_size]
                if self.cfg.max_cost is not None:
                    upcoming = self.estimate_cost(chunk)["cost_usd_max"] or 0.0
                    if self.spent + upcoming > self.cfg.max_cost:
                        stopped = (
                            f"max_cost {self.cfg.max_cost} USD: spent {self.spent:.4f}, "
                            f"next chunk could cost {upcoming:.4f}"
                        )
                        log.warning(
                            "stopping cleanly at the cost cap (%s); rerun with a higher --max-cost to continue",
                            stopped,
                        )
                        break
                done_before_chunk = bar.n
                new = self.run_chunk(backend, chunk, on_done=bar.update)  # the bar moves per finished sample
                self.records.append(new)
                self.spent += sum(r.get("cost_usd") or 0.0 for r in new)
                tokens += sum(r["usage"]["completion_tokens"] for r in new)
                bar.update(done_before_chunk + len(new) - bar.n)  # backends that report no progress
                bar.set_postfix(
                    calls=getattr(backend, "misses", len(new)),
                    cache_hits=getattr(backend, "hits", 0),
                    tokens=tokens,
                    cost=f"{self.spent:.4f}",
                )
        finally:  # closed before any error message, so the message is the last line
            bar.close()
        return self.summarize(stopped)

    def run_chunk(
        self, backend: Any, chunk: list[tuple[Example, list[int]]], on_done: Callable[[int], Any] | None = None
    ) -> list[dict[str, Any]]:
        firsts: list[tuple[Example, list[int], Request]] = []
        for ex, samples in chunk:
            for run in contiguous_runs(samples):
                firsts.append((ex, run, self.first_request(ex, run)))
        ask = (
            (lambda i, req, rationale: self.answer_request(firsts[i][0], req, rationale)) if self.mode.second else None
        )
        outputs = generate_two_stage(backend, [r for _, _, r in firsts], ask, progress=False, on_done=on_done)
        return [
            self.make_record(ex, j, s).to_dict()
            for (ex, run, _), samples in zip(firsts, outputs)
            for j, s in zip(run, samples)
        ]

    def make_record(self, ex: Example, sample: int, s: TwoStageSample) -> TeacherRecord:
        v = score_output(
            s.final.text,
            ex.golds,
            self.task.answer_type,
            letters=choice_letters(self.task, ex),
            choices=answer_choices(self.task, ex),
            pipeline=self.pipeline,
            finish_reason=s.output.finish_reason,
        )
        return TeacherRecord.from_sample(
            s,
            v,
            key=record_key(ex, sample),
            task=self.task.name,
            split=self.cfg.split,
            example_id=ex.id,
            sample=sample,
            question=ex.question,
            gold=ex.answer,
            mode=self.cfg.mode,
            temperature=self.temperature,
            teacher={"backend": self.cfg.teacher.backend, "model": getattr(self.backend, "model_id", None)},
        )

    def summarize(self, stopped: str | None) -> dict[str, Any]:
        recs = [r for r in self.records.records.values()]
        by_q: dict[str, bool] = {}
        for r in recs:
            by_q[r["example_id"]] = by_q.get(r["example_id"], False) or r["correct"]
        summary = {
            "task": self.task.name,
            "task_version": self.task.version,
            "split": self.cfg.split,
            "teacher": {
                "backend": self.cfg.teacher.backend,
                "model": getattr(self.backend, "model_id", self.cfg.teacher.model),
            },
            "records": len(recs),
            "expected_records": len(self.examples) * self.cfg.samples,
            "accuracy": sum(r["correct"] for r in recs) / max(1, len(recs)),
            "questions": len(by_q),
            "questions_with_a_correct_sample": sum(by_q.values()),
            "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in recs),
            "completion_tokens": sum(r["usage"]["completion_tokens"] for r in recs),
            "cost_usd": round(sum(r.get("cost_usd") or 0.0 for r in recs), 6),
            "cache": {"hits": getattr(self.backend, "hits", 0), "calls": getattr(self.backend, "misses", 0)},
            "stopped": stopped,
        }
        write_json(self.run_dir / "teacher" / f"{self.stem}.summary.json", summary)
        return summary


def resume_command() -> str:
    """The command line that started this process, to paste again (``cotbridge teach ...``)."""
    args = sys.argv[1:]
    return "cotbridge " + shlex.join(args) if args else "(rerun the same call)"


def record_key(ex: Example, sample: int) -> str:
    return f"{ex.id}#{sample}"


def run_teach(cfg: TeachConfig, backend: Any = None, progress: bool = True) -> dict[str, Any]:
    """The teach command: the run directory is locked from before the records are read until the last is written."""
    with folder_lock(cfg.run_dir, "--run-dir"):
        teacher = Teacher(cfg, backend=backend, progress=progress)
        if cfg.batch_export:
            teacher.check_fingerprint()
            return {"batch_exported": teacher.export_batch(cfg.batch_export), "path": cfg.batch_export}
        if cfg.batch_import:
            teacher.check_fingerprint()
            imported = teacher.import_batch(cfg.batch_import)
            return {**teacher.run(), "batch_imported": imported}
        return teacher.run()
