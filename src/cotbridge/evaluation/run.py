"""``cotbridge eval``: run a model over tasks, write results.json, per-sample JSONL and a table."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from cotbridge import __version__
from cotbridge.backends import get_backend
from cotbridge.config import SEED_MAX, TEMPERATURE_MAX, StrictModel
from cotbridge.errors import UserError
from cotbridge.evaluation.scoring import Decoding, evaluate_examples
from cotbridge.fileio import write_text
from cotbridge.folder_lock import folder_lock
from cotbridge.inference.two_stage import sampling_temperature
from cotbridge.jsonl import read_json, read_jsonl, write_json, write_jsonl
from cotbridge.models.loading import resolve_model_source
from cotbridge.prompts.modes import PROMPT_MODES, PromptContext, load_few_shot
from cotbridge.reporting.tables import markdown_table
from cotbridge.run_record import refuse_if_changed
from cotbridge.tasks import parse_task_spec

log = logging.getLogger(__name__)


class EvalConfig(StrictModel):
    model: str | None = None  # hub id, local folder, .gguf file or embedded name
    backend: str = "hf"  # how the model is run
    gguf_file: str | None = None  # the .gguf file inside a hub repo or folder that holds several
    batch_size: int = Field(default=16, ge=1)  # sequences per generation batch
    dtype: str = "auto"
    tasks: list[str] = ["synthetic_arithmetic"]  # task names, or name:key=value for synthetic tasks
    split: str = "test"  # which split is evaluated
    data_dir: str | None = None  # folder with task data; default $COTBRIDGE_DATA_DIR, else the HF hub
    limit: int | None = Field(default=None, ge=1)  # evaluate the first N examples of each task
    # task name -> exactly these example ids, in this order (a recipe's test set, trained-on questions left out)
    ids: dict[str, list[str]] | None = None
    mode: str = "zero_shot_cot"  # prompt mode
    k: int = Field(default=1, ge=1)  # samples per question; k>1 is self-consistency
    # None: 0 for k=1, 0.7 for self-consistency
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)  # max new tokens of stage 1 (None: the mode's)
    answer_max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    chat: bool = False  # wrap prompts in the model's chat template
    generic_trigger: bool = False
    few_shot_prompts: str | None = None  # few-shot exemplars JSON ({task: {prompt}}) for few_shot_cot
    pipeline: str | None = None  # answer-extraction pipeline (default: the mode's)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    # default runs/eval/<model>/<mode>[-k<k>] (a local folder's parent joins its name: students/a and students/b
    # never share a folder); evaluations of other models never collide
    output: str | None = None
    # Request cache: default <output>/requests.sqlite, so a rerun after a crash (or of a finished evaluation) asks
    # the model only for what is not there yet: no paid call twice. "off" disables it.
    cache: str | None = None

    def output_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        path = Path(self.model or "model")
        name = f"{path.parent.name}_{path.name}" if path.is_dir() and path.parent.name else path.name
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", name.removesuffix(".gguf")).strip("_")
        return Path("runs") / "eval" / (model or "model") / (self.mode + (f"-k{self.k}" if self.k > 1 else ""))

    def decoding(self) -> Decoding:
        temperature = sampling_temperature(self.temperature, self.k)
        return Decoding(
            k=self.k,
            temperature=temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            answer_max_tokens=self.answer_max_tokens,
            stop=self.stop,
            chat=self.chat,
            seed=self.seed,
            pipeline=self.pipeline,
        )


def software_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"cotbridge": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def run_eval(cfg: EvalConfig, backend: Any = None, progress: bool = True) -> dict[str, Any]:
    mode = PROMPT_MODES.get(cfg.mode)
    if cfg.chat and not mode.chat_ok:
        raise UserError(f"prompt mode {cfg.mode!r} is a fine-tuned student format; it takes no chat template")
    specs = [parse_task_spec(t) for t in cfg.tasks]  # validate every task before loading a model
    if backend is None and cfg.model:
        resolve_model_source(cfg.model, cfg.gguf_file)  # a local folder must exist and hold weights
    datasets = []
    for task, params in specs:
        examples = chosen(task.load(cfg.split, cfg.data_dir, **params), (cfg.ids or {}).get(task.name), task.name)
        datasets.append((task, params, examples[: cfg.limit] if cfg.limit else examples))
        if mode.needs_few_shot and cfg.few_shot_prompts:  # its exemplars readable before a model loads (~10 s)
            load_few_shot(cfg.few_shot_prompts, task.name)
    if backend is None:
        if not cfg.model:
            raise UserError("no model given: pass --model (a hub id, a local folder or a .gguf file)")
        backend = get_backend(
            cfg.backend, model=cfg.model, gguf_file=cfg.gguf_file, batch_size=cfg.batch_size, dtype=cfg.dtype
        )
    warn_if_trained_on(cfg.model, datasets)
    out = cfg.output_dir()
    with folder_lock(out, "--output"):
        check_output(out, cfg)
        cached = with_request_cache(backend, cfg)
        summary = _evaluate_into(out, cfg, mode, datasets, cached, progress)
        if cached is not backend:
            log.info(
                "%s: %d completions from the request cache, %d generated",
                cached.cache.path,
                cached.hits,
                cached.misses,
            )
        return summary


def chosen(examples: list[Any], ids: list[str] | None, task: str) -> list[Any]:
    """The examples named by ``ids`` (all of them when None), in the order of ``ids``."""
    if ids is None:
        return examples
    by_id = {ex.id: ex for ex in examples}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise UserError(f"ids: {task} has no example {missing[0]!r} in this split ({len(missing)} ids missing)")
    return [by_id[i] for i in ids]


def with_request_cache(backend: Any, cfg: EvalConfig) -> Any:
    """The backend behind the evaluation's request cache, unless it is off or the backend's outputs are not worth
    keeping (recorded or scripted ones)."""
    from cotbridge.backends.request_cache import CachedBackend, RequestCache

    if cfg.cache == "off" or not getattr(backend, "cacheable", True):
        return backend
    # The keys name the model, not its weights or numerics: those go in as a salt, so completions of weights
    # written since (a local folder's files, a hub model's commit), or of another dtype, are never served (in this
    # cache or a shared one). The batch size is left out: a rerun with fewer rows after running out of memory resumes.
    model = getattr(backend, "model", None)
    generated_by = {
        "model_files": model_files(cfg.model, cfg.gguf_file),
        "hub_commit": getattr(getattr(model, "config", None), "_commit_hash", None),
        "dtype": str(getattr(model, "dtype", None) or cfg.dtype),
    }
    salt = json.dumps(generated_by, sort_keys=True)
    return CachedBackend(backend, RequestCache(cfg.cache or cfg.output_dir() / CACHE_FILE), salt=salt)


CACHE_FILE = "requests.sqlite"


def model_files(model: str | None, gguf_file: str | None) -> list[list[Any]] | None:
    """Name, size and modification time of a local model's weight files (None for a hub id): the request cache is
    keyed by the model's name, so completions of weights written since must not be served."""
    from cotbridge.models.loading import files_stamp, weights_stamp

    path = Path(model or "")
    if not model or not path.exists():
        return None
    if not path.is_dir():  # a GGUF file
        return files_stamp([path])
    gguf = [path / gguf_file] if gguf_file and (path / gguf_file).is_file() else []
    return weights_stamp(path) + files_stamp(gguf)


# What makes two evaluations the same: rerunning one overwrites its files, anything else must not share a folder
# (a new results.json beside another model's per-task JSONL would mix them).
SAME_EVALUATION = (
    "model",
    "backend",
    "gguf_file",
    "tasks",
    "split",
    "data_dir",
    "limit",
    "ids",
    "mode",
    "k",
    "temperature",
    "top_p",
    "max_tokens",
    "answer_max_tokens",
    "stop",
    "chat",
    "generic_trigger",
    "few_shot_prompts",
    "pipeline",
    "seed",
)


def warn_if_trained_on(model: str | None, datasets: list[Any]) -> int:
    """Warn when the model's recorded training prompts (``training_prompts.jsonl``, written by ``cotbridge train``)
    overlap the questions it is about to be tested on; returns how many test questions they overlap."""
    from cotbridge.decontaminate import TestIndex

    trained = Path(model or "") / "training_prompts.jsonl"
    if not model or not trained.is_file():
        return 0
    index = TestIndex()
    for task, _params, examples in datasets:
        index.add_task(task, examples)
    hit: set[tuple[str, str]] = set()
    for rec in read_jsonl(trained):
        hit.update((m.task, m.test_id) for m in index.matches(str(rec.get("prompt") or "")))
    if hit:
        log.warning(
            "%s was trained on %d of the %d questions it is tested on (13-gram / exact overlap with its "
            "training_prompts.jsonl): its accuracy on them measures memory, not reasoning",
            model,
            len(hit),
            len(index.entries),
        )
    return len(hit)


def check_output(out: Path, cfg: EvalConfig) -> None:
    """Refuse an output folder that holds another evaluation's files; record this one's settings in it."""
    marker, previous = out / "evaluation.json", out / "results.json"
    recorded = marker if marker.exists() else previous if previous.exists() else None
    new = cfg.model_dump(mode="json")
    if recorded is None:
        stale = sorted(p.name for p in out.glob("*.jsonl"))
        if stale:
            raise UserError(f"{out} already holds {', '.join(stale[:3])} from another run; choose another --output")
    else:
        old = read_json(recorded).get("config") or {}
        refuse_if_changed(
            {k: old.get(k) for k in SAME_EVALUATION},
            {k: new.get(k) for k in SAME_EVALUATION},
            holder=f"{out} holds the files of another evaluation",
            remedy="choose another --output (without one, each model and mode gets its own folder under runs/eval/)",
        )
    write_json(marker, {"config": new})


def _evaluate_into(
    out: Path, cfg: EvalConfig, mode: Any, datasets: list[Any], backend: Any, progress: bool
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    task_info: dict[str, Any] = {}
    for task, params, examples in datasets:
        few_shot = (
            load_few_shot(cfg.few_shot_prompts, task.name) if mode.needs_few_shot and cfg.few_shot_prompts else None
        )
        ctx = PromptContext(task=task, few_shot=few_shot, generic_trigger=cfg.generic_trigger)
        log.info(
            "evaluating %s on %s (%d examples, mode %s, k=%d)",
            backend.model_id,
            task.name,
            len(examples),
            cfg.mode,
            cfg.k,
        )
        t0 = time.perf_counter()
        records, metrics = evaluate_examples(task, examples, backend, cfg.mode, ctx, cfg.decoding(), progress=progress)
        metrics["wall_time_s"] = round(time.perf_counter() - t0, 2)
        say_skipped(task.name, metrics, backend.model_id)
        write_jsonl(out / f"{task.name}.jsonl", records)
        results[task.name] = metrics
        task_info[task.name] = {
            "version": task.version,
            "answer_type": task.answer_type,
            "split": cfg.split,
            "params": params,
        }
    summary = {
        "model": backend.model_id,
        "mode": cfg.mode,
        "results": results,
        "tasks": task_info,
        "config": cfg.model_dump(mode="json"),
        "versions": software_versions(),
    }
    write_json(out / "results.json", summary)
    write_text(out / "results.md", markdown_table(results, title=f"{backend.model_id} — {cfg.mode}, k={cfg.k}"))
    write_inspect_logs_softly(out)
    return summary


def say_skipped(task: str, metrics: dict[str, Any], model: str) -> None:
    """One warning for the questions whose prompt does not fit the model's context window (recorded in their
    records and counted in results.json: wrong, never left out of accuracy); an error when that is every question."""
    skipped = metrics.get("skipped")
    if not skipped:
        return
    if skipped["count"] == metrics["n"]:
        raise UserError(
            f"{task}: none of the {metrics['n']} prompts fits {model}'s context window ({skipped['reason']}, question "
            f"{skipped['first_ids'][0]}): nothing was evaluated; use a shorter prompt mode (fewer few-shot exemplars) "
            "or a model with a longer context window"
        )
    log.warning(
        "%s: %d of %d questions not asked (%d samples not generated) because their prompt does not fit %s's context "
        "window, e.g. %s (question %s): counted as wrong; see 'skipped' in results.json and in their records",
        task,
        skipped["count"],
        metrics["n"],
        skipped["samples"],
        model,
        skipped["reason"],
        skipped["first_ids"][0],
    )


def write_inspect_logs_softly(out: Path) -> None:
    """Inspect logs beside the results (``inspect view`` opens them): an export for another tool's viewer, so a
    failure costs a warning, never the evaluation."""
    from cotbridge.evaluation.inspect_log import write_inspect_logs

    try:
        write_inspect_logs(out)
    except Exception as e:  # noqa: BLE001
        log.warning("no Inspect log written in %s: %s: %s", out, type(e).__name__, e)
