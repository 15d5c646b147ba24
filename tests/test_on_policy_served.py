"""On-policy distillation from a served teacher (#27.2, #27.3): cotbridge serve over conftest's tiny Llama stands in
for a vLLM teacher; TRL's ServerDistillationTrainer grades the student's samples through it, and the pre-flight
compares its log-probs with the in-process teacher's."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cotbridge.backends.hf import HFBackend
from cotbridge.errors import UserError
from cotbridge.server import running_server
from tests.test_on_policy import EXAMPLES, on_policy_config

pytest.importorskip("openai")


@pytest.fixture(scope="module")
def student_dir(tiny_model_dir, tmp_path_factory):
    from cotbridge.models.truncated import truncated_copy

    return truncated_copy(str(tiny_model_dir), tmp_path_factory.mktemp("student"), layers=1)


@pytest.fixture(scope="module")
def teacher_url(tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "requests.jsonl"
    backend = HFBackend(str(tiny_model_dir), batch_size=4, dtype="float32")
    with running_server(backend, model_name="teacher", request_log=log) as url:
        yield url, log


def test_preflight_compares_the_served_teacher_with_the_in_process_one(
    student_dir, tiny_model_dir, tmp_path, teacher_url
):
    from cotbridge.train.on_policy import check_pair

    url, _ = teacher_url
    checks = {
        c["name"]: c for c in check_pair(on_policy_config(student_dir, tiny_model_dir, tmp_path, teacher_url=url))
    }
    assert (
        checks["served_teacher"]["status"] == "pass"
        and "0.000 nats a token from the in-process teacher" in checks["served_teacher"]["detail"]
    )
    without = {c["name"]: c for c in check_pair(on_policy_config(student_dir, tiny_model_dir, tmp_path))}
    assert without["served_teacher"]["status"] == "skip"


def test_preflight_refuses_a_server_of_other_weights(student_dir, tiny_model_dir, tmp_path):
    """The same architecture and tokenizer with other weights (the student, served as if it were the teacher). A
    random tiny model's distributions are near uniform (differences of hundredths of a nat), so the tolerance here
    is tight; the in-process and served copies of one model agree to 0.000 (the test above)."""
    from cotbridge.train.on_policy import check_pair

    with running_server(HFBackend(str(student_dir), dtype="float32"), model_name="impostor") as url:
        cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, teacher_url=url, served_tolerance=0.001)
        with pytest.raises(
            UserError, match=r"impostor\) and the in-process teacher disagree by \d+\.\d+ nats a token"
        ):
            check_pair(cfg)


def test_preflight_names_an_unreachable_teacher(student_dir, tiny_model_dir, tmp_path):
    from cotbridge.train.on_policy import check_pair

    cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, teacher_url="http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match=r"cannot reach the served teacher at http://127.0.0.1:9/v1 .*cotbridge serve"):
        check_pair(cfg)


def test_a_served_teacher_grades_every_step_and_the_student_moves(student_dir, tiny_model_dir, tmp_path, teacher_url):
    pytest.importorskip("trl.experimental.server_distillation")
    from cotbridge.train.on_policy import build_on_policy_trainer

    url, log = teacher_url
    before = log.read_text().count("prompt_logprobs") if log.exists() else 0
    cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, teacher_url=url, max_steps=2, batch_size=2)
    trainer = build_on_policy_trainer(cfg, EXAMPLES)
    assert getattr(trainer, "teacher_model", None) is None  # no teacher in this process
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    moved = [n for n, p in trainer.model.named_parameters() if n in weights and not torch.equal(p, weights[n])]
    assert moved and len(moved) == len(weights)
    graded = [json.loads(line) for line in log.read_text().splitlines() if "prompt_logprobs" in line][before:]
    assert len(graded) >= 2  # at least one grading request a step
    assert all(isinstance(r["body"]["prompt"][0], list) for r in graded)  # the student's tokens, as ids


def test_a_served_teacher_is_on_policy_only(student_dir, tiny_model_dir, tmp_path, teacher_url):
    pytest.importorskip("trl.experimental.server_distillation")
    from cotbridge.train.on_policy import build_on_policy_trainer

    cfg = on_policy_config(student_dir, tiny_model_dir, tmp_path, teacher_url=teacher_url[0], lmbda=0.5)
    with pytest.raises(UserError, match="grades the student's own samples only: set distill.lmbda=1"):
        build_on_policy_trainer(cfg, EXAMPLES)


def test_a_teacher_that_stops_answering_ends_the_run_in_one_line_and_the_rerun_resumes(
    student_dir, tiny_model_dir, tmp_path, monkeypatch
):
    pytest.importorskip("trl.experimental.server_distillation")
    from transformers import TrainerCallback
    from urllib3.util.retry import Retry

    from cotbridge.server import OpenAICompatServer
    from cotbridge.train.on_policy import train_on_policy

    monkeypatch.setattr(Retry, "get_backoff_time", lambda self: 0)  # TRL's client retries 5 times: no waiting here
    backend = HFBackend(str(tiny_model_dir), batch_size=4, dtype="float32")
    server = OpenAICompatServer(backend, port=0, model_name="teacher").start()
    port = server.port

    class StopTheTeacher(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                server.stop()

    cfg = on_policy_config(
        student_dir,
        tiny_model_dir,
        tmp_path,
        teacher_url=f"http://127.0.0.1:{port}/v1",
        max_steps=3,
        batch_size=2,
        save_strategy="steps",
        save_steps=1,
    )
    with pytest.raises(UserError, match=rf"served teacher at http://127.0.0.1:{port}/v1 stopped answering at step 1 "):
        train_on_policy(cfg, EXAMPLES, callbacks=[StopTheTeacher()])
    assert (tmp_path / "out" / "checkpoint-1").is_dir()
    with OpenAICompatServer(backend, port=port, model_name="teacher"):
        stats = train_on_policy(cfg, EXAMPLES)
    assert stats["resumed_from"].endswith("checkpoint-1") and stats["global_step"] == 3
