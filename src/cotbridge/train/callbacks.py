"""Dev accuracy during training: greedy generation with the live student, scored by the task's rules.

Fine-tune-CoT's authors picked the best epoch on the test split; PAPERS.md asks for the honest
protocol, a dev split. :class:`DevAccuracyCallback` scores the model being trained every N epochs
(and after the last step) through the same :func:`~cotbridge.evaluation.scoring.evaluate_examples` path as
``cotbridge eval``, so dev numbers and final evaluation numbers mean the same thing. It logs
``dev_accuracy`` like the loss, and records the best step in ``state.best_metric`` /
``state.best_global_step``: the Trainer then keeps that checkpoint through ``save_total_limit``
rotation, ``trainer_state.json`` carries it across a resume, and ``dev_select_best`` can load it.

Under several processes every rank scores a slice of the dev examples and the records are
all-gathered, so all ranks log the same numbers and take the same code path (the Trainer's
checkpoint code runs a barrier when a best step is recorded; diverging ranks would hang there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from cotbridge.errors import UserError

log = logging.getLogger(__name__)


def _all_gather(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return records
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, records)
    return [r for part in parts for r in part]


class DevAccuracyCallback(TrainerCallback):
    """Greedy dev accuracy every ``every_epochs`` epochs and after the last step.

    ``task``: a Task or a task name. ``examples``: the dev :class:`~cotbridge.tasks.base.Example` list.
    ``mode``: the prompt mode the student is evaluated in (``finetune_cot`` for Fine-tune-CoT students).
    ``backend_factory(model, tokenizer)`` builds the generation backend (default: an HFBackend around the
    live model). Set ``trainer`` (train_student does) to log through ``trainer.log``; otherwise the
    scores go straight into ``state.log_history``.
    """

    def __init__(
        self,
        task: Any,
        examples: list[Any],
        mode: str = "finetune_cot",
        every_epochs: int = 1,
        max_tokens: int | None = None,
        batch_size: int = 16,
        backend_factory: Callable[[Any, Any], Any] | None = None,
    ):
        from cotbridge.prompts.modes import PROMPT_MODES
        from cotbridge.tasks import parse_task_spec

        if every_epochs < 1:
            raise UserError(f"dev_every_epochs must be at least 1, got {every_epochs}")
        PROMPT_MODES.get(mode)  # an unknown mode fails now, not after an epoch of training
        self.task = parse_task_spec(task)[0] if isinstance(task, str) else task
        self.examples, self.mode, self.every = list(examples), mode, every_epochs
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.backend_factory = backend_factory
        self.trainer: Any = None
        self._last_step = -1

    def on_epoch_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        ending = control.should_training_stop or (state.max_steps > 0 and state.global_step >= state.max_steps)
        due = round(state.epoch or 0) % self.every == 0
        if (due or ending) and state.global_step != self._last_step and self.examples:
            self._last_step = state.global_step
            self.score(args, state, model, processing_class)
        return control

    def score(self, args: Any, state: Any, model: Any, tokenizer: Any) -> float:
        """Score the dev examples with ``model`` now; log and return the accuracy."""
        from cotbridge.evaluation.scoring import Decoding, aggregate, evaluate_examples
        from cotbridge.prompts.modes import PromptContext

        shard = self.examples[args.process_index :: args.world_size]
        was_training, side = model.training, tokenizer.padding_side
        model.eval()  # no dropout while generating
        try:
            backend = (self.backend_factory or _live_backend)(model, tokenizer)
            backend.batch_size = self.batch_size
            records = (
                evaluate_examples(
                    self.task,
                    shard,
                    backend,
                    self.mode,
                    PromptContext(task=self.task),
                    Decoding(max_tokens=self.max_tokens),
                    progress=False,
                )[0]
                if shard
                else []
            )
        finally:
            model.train(was_training)
            tokenizer.padding_side = side  # the backend pads on the left; training pads on the right
        metrics = aggregate(self.task, _all_gather(records), 1)
        logs = {
            "dev_accuracy": metrics["accuracy"],
            "dev_correct_format": metrics["correct_format"],
            "dev_n": metrics["n"],
        }
        if self.trainer is not None:
            self.trainer.log(logs)
        else:
            state.log_history.append({**logs, "epoch": state.epoch, "step": state.global_step})
        # Strictly better only: on a tie the earlier epoch stays best (less training for the same score).
        if state.best_metric is None or metrics["accuracy"] > state.best_metric:
            state.best_metric, state.best_global_step = metrics["accuracy"], state.global_step
        log.info(
            "epoch %.2f step %d: dev accuracy %.4f (n=%d)",
            state.epoch or 0,
            state.global_step,
            metrics["accuracy"],
            metrics["n"],
        )
        return metrics["accuracy"]

    @staticmethod
    def summary(state: Any) -> dict[str, Any]:
        """``dev``: the dev history; ``best_dev``: the first entry with the highest accuracy (None without any)."""
        history = [
            {"epoch": h.get("epoch"), "step": h.get("step"), "dev_accuracy": h["dev_accuracy"]}
            for h in state.log_history
            if "dev_accuracy" in h
        ]
        best = max(history, key=lambda h: h["dev_accuracy"], default=None)  # max keeps the first of equals
        if best is not None:
            kept = state.best_model_checkpoint  # set by the Trainer once it saved the best step
            best = {**best, "checkpoint": kept if kept and Path(kept).name == f"checkpoint-{best['step']}" else None}
        return {"dev": history, "best_dev": best}


def _live_backend(model: Any, tokenizer: Any) -> Any:
    from cotbridge.backends.hf import HFBackend
    from cotbridge.models.student_io import encoder_input

    backend = HFBackend("student (training)", model_obj=model, tokenizer=tokenizer)
    if getattr(model.config, "is_encoder_decoder", False):
        # An encoder-decoder student was trained on `{question}`, not the decoder-only `{question} ###`
        # that the student prompt modes write (encoder_input is a no-op on an already stripped prompt).
        render = backend.render
        backend.render = lambda req: encoder_input(render(req))  # type: ignore[method-assign]
    return backend
