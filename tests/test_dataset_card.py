"""`cotbridge curate --hf-dataset` / `--push-to-hub` writes a dataset card: teacher, prompts, filters with their drop
counts, decontamination result and the source data's license."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cotbridge.cli import app
from cotbridge.reporting.dataset_card import source_license

TEACHER = "reference/reference(error_rate=0.3)"


def teach(tmp_path: Path) -> Path:
    """12 teacher records on 6 coin-flip questions, some wrong; one of the right ones asks a test question."""
    args = ["teach", "--task", "synthetic_coin_flip", "--limit", "6", "--run-dir", str(tmp_path), "-D", "2"]
    res = CliRunner().invoke(app, args + ["--set", "teacher.options.error_rate=0.3"], prog_name="cotbridge")
    assert res.exit_code == 0, res.output
    path = tmp_path / "teacher" / "synthetic_coin_flip.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    from cotbridge.tasks import get_task

    leaked = next(r for r in records if r["correct"])
    leaked["question"] = get_task("synthetic_coin_flip").load("test")[0].question  # verbatim: decontamination's
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def curate(records: Path, out: Path, *extra: str) -> None:
    res = CliRunner().invoke(
        app, ["curate", str(records), "-o", str(out), "--hf-dataset", *extra], prog_name="cotbridge"
    )
    assert res.exit_code == 0, res.output


def test_the_hf_dataset_gets_a_card_naming_teacher_filters_decontamination_and_license(tmp_path):
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard

    records_path = teach(tmp_path)
    records = [json.loads(x) for x in records_path.read_text().splitlines()]
    wrong = sum(not r["correct"] for r in records)
    assert 0 < wrong < len(records)
    curate(records_path, tmp_path / "data")
    folder = tmp_path / "data" / "hf_dataset"
    stats = json.loads((tmp_path / "data" / "curation.json").read_text())
    assert stats["dropped"] == {"correct": wrong} and stats["decontamination"]["dropped"] == 1

    card = DatasetCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0"  # the synthetic questions are cotbridge's own output
    assert {"chain-of-thought", "distillation"} <= set(card.data.tags)
    assert "text-generation" in card.data.task_categories
    text = card.text
    assert f"`{TEACHER}`" in text and "Prompt mode: `zero_shot_cot`; temperature 0.7" in text
    assert "| `has_output` | the teacher wrote no rationale | 0 |" in text
    assert f"| `correct` | the teacher's answer is wrong | {wrong} |" in text
    assert "| `decontaminate` | overlaps a test question (see below) | 1 |" in text
    checked = len(records) - wrong
    assert f"**1 of {checked}** records dropped (synthetic_coin_flip: 1)" in text
    assert f"Kept **{stats['kept']} of {len(records)}** records" in text
    summary = json.loads((records_path.with_name("synthetic_coin_flip.summary.json")).read_text())
    assert f"{summary['prompt_tokens']} prompt and {summary['completion_tokens']} completion tokens" in text
    first = json.loads((tmp_path / "data" / "train.jsonl").read_text().splitlines()[0])
    shown = next(r for r in records if (r["example_id"], r["sample"]) == (first["example_id"], first["sample"]))
    assert f"```text\n{shown['prompts']['rationale']}\n```" in text  # the prompt of a kept rationale
    assert "Task `synthetic_coin_flip`, version 1.1, split train" in text
    assert len(load_from_disk(str(folder))) == stats["examples"]  # the card does not get in the dataset's way


def test_a_card_says_when_decontamination_did_not_run(tmp_path):
    records = tmp_path / "teacher" / "synthetic_coin_flip.jsonl"
    records.parent.mkdir()
    rec = {
        "key": "a#0",
        "task": "synthetic_coin_flip",
        "split": "train",
        "example_id": "a",
        "sample": 0,
        "question": "A coin is heads up. Ann flips the coin. Is the coin still heads up?",
        "gold": "no",
        "teacher": {"backend": "openai", "model": "gpt-4o-mini"},
        "mode": "chat_cot",
        "temperature": 0.0,
        "prompts": {"rationale": [{"role": "user", "content": "Ann flips ```the coin```."}], "answer": None},
        "rationale": "Ann flips it once, so no.",
        "prediction": "no",
        "correct": True,
    }
    records.write_text(json.dumps(rec) + "\n")
    curate(records, tmp_path / "data", "--no-decontaminate")
    text = (tmp_path / "data" / "hf_dataset" / "README.md").read_text()
    assert "Not run: turned off (`--no-decontaminate`)" in text and "was **not** checked" in text
    assert "`openai/gpt-4o-mini`" in text and "teach run's summary" not in text  # no summary beside these records
    assert "````text\n[user] Ann flips ```the coin```.\n````" in text  # a fence the prompt cannot close


def test_push_to_hub_sends_the_card_before_the_dataset(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    from cotbridge.curate import CurateSettings, curate_file

    calls = []
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo, **kw: calls.append(("repo", repo, kw["repo_type"]))
    )
    monkeypatch.setattr(
        huggingface_hub.DatasetCard, "push_to_hub", lambda self, repo, **kw: calls.append(("card", repo, str(self)))
    )
    monkeypatch.setattr(
        datasets.Dataset, "push_to_hub", lambda self, repo, **kw: calls.append(("data", repo, len(self)))
    )
    records_path = teach(tmp_path)
    stats = curate_file(
        records_path, tmp_path / "data", "finetune_cot", "yesno", CurateSettings(), push_to_hub="me/coin-rationales"
    )
    card = (tmp_path / "data" / "hf_dataset" / "README.md").read_text()
    # datasets' push_to_hub keeps a README already in the repo and adds its split metadata, so the card goes first
    assert calls == [
        ("repo", "me/coin-rationales", "dataset"),
        ("card", "me/coin-rationales", card),
        ("data", "me/coin-rationales", stats["examples"]),
    ]


def test_licenses_come_from_the_sources_or_are_said_to_be_unknown():
    assert source_license("hotpotqa", "multihop", "1.0-local")[0] == "cc-by-sa-4.0"
    hub_id, text = source_license("gsm8k", "finetune_cot", "1.0")
    assert hub_id == "mit" and "reasoning-teacher (MIT)" in text
    assert source_license("commonsense_qa", "finetune_cot", "1.0")[0] == "unknown"
    hub_id, text = source_license("math500", "reasoning", "HuggingFaceH4/MATH-500@test")
    assert hub_id == "unknown" and "HuggingFaceH4/MATH-500" in text
    assert source_license("synthetic_arithmetic", "synthetic", "1.0")[0] == "apache-2.0"
