"""Several teachers' demonstrations: released layouts become replayable records, and merging filters,
deduplicates across teachers, caps, balances and keeps provenance on every example."""

from __future__ import annotations

import json

import pytest

from cotbridge.errors import UserError
from cotbridge.jsonl import read_jsonl
from cotbridge.recipes.instruct.config import InstructConfig, MergeSpec, TeacherSpec
from cotbridge.recipes.instruct.multiteacher import merge_demonstrations, record_path, teach_all
from cotbridge.recipes.instruct.released import ReleasedSpec, convert_released
from cotbridge.tasks import get_task
from tests.conftest import RE2, SHARED_DATA

A = TeacherSpec(name="gpt", family="openai-gpt", backend="replay")
B = TeacherSpec(name="palm", family="google-palm", backend="replay")


def rec(qid: str, rationale: str, correct: bool = True, teacher: str = "m", sample: int = 0) -> dict:
    return {
        "key": f"{qid}#{sample}",
        "task": "svamp",
        "split": "train",
        "example_id": qid,
        "sample": sample,
        "question": f"question {qid}",
        "gold": "1",
        "rationale": rationale,
        "correct": correct,
        "teacher": {"backend": "replay", "model": teacher},
    }


def test_merge_filters_dedupes_across_teachers_and_keeps_provenance():
    a = [rec("1", "One plus zero is 1."), rec("2", "Wrong.", correct=False), rec("3", "Three minus two is 1.")]
    b = [rec("1", "one plus  ZERO is 1"), rec("3", "Another way: 3 - 2 = 1."), rec("4", "", correct=True)]
    demos, stats = merge_demonstrations([(A, a), (B, b)], MergeSpec())
    assert sorted((d["example_id"], d["provenance"]["teacher"]) for d in demos) == [
        ("1", "gpt"),
        ("3", "gpt"),
        ("3", "palm"),
    ]
    first = next(d for d in demos if d["example_id"] == "1")
    # the same rationale (up to case, spacing and punctuation) from the second teacher is credited, not repeated
    assert first["provenance"]["also_from"] == ["palm"]
    for d in demos:
        p = d["provenance"]
        assert {p["teacher"], p["family"]} in ({"gpt", "openai-gpt"}, {"palm", "google-palm"})
        assert (
            p["record"] == d["key"]
            and p["split"] == "train"
            and p["teacher_correct"] is True
            and p["backend"] == "replay"
        )
    assert stats["teachers"]["gpt"]["dropped"] == {"correct": 1} and stats["teachers"]["palm"]["dropped"] == {
        "has_output": 1
    }
    assert stats["teachers"]["palm"]["duplicates"] == 1 and stats["demonstrations"] == 3

    no_dedupe, _ = merge_demonstrations([(A, a), (B, b)], MergeSpec(dedupe=False))
    assert len(no_dedupe) == 4


def test_merge_caps_per_question_and_per_row_taking_teachers_in_turn():
    a = [rec(str(i), f"gpt reasoning {i}.") for i in range(10)]
    b = [rec(str(i), f"palm reasoning {i}.") for i in range(10)]
    demos, stats = merge_demonstrations([(A, a), (B, b)], MergeSpec(max_per_question=1, max_demonstrations=6, seed=3))
    assert len(demos) == 6
    assert len({d["example_id"] for d in demos}) == 6  # one demonstration per question
    assert stats["teachers"]["gpt"]["selected"] == 3 and stats["teachers"]["palm"]["selected"] == 3
    again, _ = merge_demonstrations([(A, a), (B, b)], MergeSpec(max_per_question=1, max_demonstrations=6, seed=3))
    assert [d["key"] for d in again] == [d["key"] for d in demos]  # deterministic for a seed


def test_re2_layout_maps_ids_onto_task_examples(tmp_path):
    """CommonsenseQA dev ids of the Re2 release are offsets into the test split (9741 + id)."""
    out = tmp_path / "csqa.jsonl"
    opts = convert_released(
        ReleasedSpec(layout="re2", path=str(RE2 / "commonsenseqa_dev__gpt-3.5-turbo.jsonl")),
        "commonsense_qa",
        out,
        str(SHARED_DATA),
    )
    assert opts == {"path": str(out), "id_field": "example_id", "text_field": "text"}
    rows = list(read_jsonl(out))
    assert len(rows) == 1221
    test = {e.id: e for e in get_task("commonsense_qa").load("test", str(SHARED_DATA))}
    for row in rows[:50]:
        assert test[row["example_id"]].question.startswith(row["question"])  # the stem begins the task question
    gsm = convert_released(
        ReleasedSpec(layout="re2", path=str(RE2 / "gsm8k_test__gpt-3.5-turbo.jsonl")),
        "gsm8k",
        tmp_path / "gsm.jsonl",
        str(SHARED_DATA),
    )
    gtest = {e.id: e for e in get_task("gsm8k").load("test", str(SHARED_DATA))}
    for row in list(read_jsonl(gsm["path"]))[:50]:
        assert gtest[row["example_id"]].question == row["question"]
    with pytest.raises(UserError, match="no id mapping for task 'aqua'"):
        convert_released(
            ReleasedSpec(layout="re2", path=str(RE2 / "gsm8k_test__gpt-3.5-turbo.jsonl")),
            "aqua",
            tmp_path / "x.jsonl",
            str(SHARED_DATA),
        )


def test_palm_layout_matches_questions_and_cuts_run_on(tmp_path):
    folder = SHARED_DATA / "teacher_rationales" / "distilling_step_by_step" / "svamp"
    opts = convert_released(
        ReleasedSpec(layout="palm_sbs", path=str(folder)), "svamp", tmp_path / "p.jsonl", str(SHARED_DATA)
    )
    rows = {r["example_id"]: r for r in read_jsonl(opts["path"])}
    train = get_task("svamp").load("train", str(SHARED_DATA))
    assert all(e.id in rows for e in train)  # PaLM's 800 + 200 questions cover the whole Fine-tune-CoT train split
    luke = next(r for r in rows.values() if r["question"].startswith("Luke scored 84 points"))
    assert luke["text"].endswith("The answer is (84 / 2).") and "\nQ:" not in luke["text"]
    meta = json.loads((tmp_path / "p.source.json").read_text())
    assert meta["layout"] == "palm_sbs" and meta["records"] == len(rows)


def test_teach_all_replays_released_outputs_per_teacher(tmp_path):
    re2 = {"layout": "re2", "path": str(RE2 / "svamp__gpt-4o-mini-2024-07-18.jsonl")}
    palm = {
        "layout": "palm_sbs",
        "path": str(SHARED_DATA / "teacher_rationales" / "distilling_step_by_step" / "svamp"),
    }
    cfg = InstructConfig(
        run_dir=str(tmp_path),
        data_dir=str(SHARED_DATA),
        tasks=["svamp"],
        teachers=[
            {
                "name": "gpt-4o-mini",
                "family": "openai-gpt",
                "backend": "replay",
                "model": "gpt-4o-mini",
                "tasks": {"svamp": {"limit": 6, "released": re2}},
            },
            {
                "name": "palm",
                "family": "google-palm",
                "backend": "replay",
                "model": "palm-540b",
                "tasks": {"svamp": {"limit": 6, "released": palm}},
            },
        ],
    )
    summaries = teach_all(cfg, progress=False)
    assert set(summaries) == {"svamp.gpt-4o-mini", "svamp.palm"}
    for name, model in (("gpt-4o-mini", "gpt-4o-mini"), ("palm", "palm-540b")):
        records = list(read_jsonl(record_path(tmp_path, "svamp", name)))
        assert len(records) == 6 and {r["teacher"]["model"] for r in records} == {model}
        assert sum(r["correct"] for r in records) >= 4  # real teachers: mostly right, scored by the task's rules
    assert [r.label() for r in cfg.resolved_rows()] == ["svamp.gpt-4o-mini", "svamp.palm"]


def test_config_errors_name_the_problem():
    from cotbridge.config import load_config

    with pytest.raises(UserError, match="unknown teacher"):
        load_config(
            InstructConfig,
            None,
            ["tasks=[svamp]", "teachers=[{name: a, family: x}]", "rows=[{task: svamp, teachers: [b]}]"],
        )
    with pytest.raises(UserError, match="not in tasks"):
        load_config(InstructConfig, None, ["tasks=[svamp]", "teachers=[{name: a, family: x, tasks: {gsm8k: {}}}]"])
    with pytest.raises(UserError, match="family"):
        load_config(InstructConfig, None, ["tasks=[svamp]", "teachers=[{name: a}]"])


def test_instruction_tuning_recipes_are_valid_configs():
    from pathlib import Path

    from cotbridge.config import load_config

    paths = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("instruction_tuning_*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        cfg = load_config(InstructConfig, path)
        families = {t.family for t in cfg.teachers}
        assert len(families) >= 2 and len(cfg.matrix_tasks()) >= 3, path.name  # the paper's shape


def test_teach_config_takes_per_teacher_settings_over_run_defaults(tmp_path):
    from cotbridge.recipes.instruct.multiteacher import teach_config

    cfg = InstructConfig(
        run_dir=str(tmp_path),
        tasks=["svamp", "gsm8k"],
        teach_max_tokens=200,
        teachers=[
            {
                "name": "small",
                "family": "smollm",
                "backend": "hf",
                "model": "m",
                "chat": True,
                "options": {"batch_size": 8},
                "tasks": {
                    "svamp": {"max_tokens": 96, "limit": 5, "options": {"batch_size": 40}},
                    "gsm8k": {"split": "test"},
                },
            }
        ],
    )
    t = cfg.teachers[0]
    svamp, gsm = teach_config(cfg, t, "svamp"), teach_config(cfg, t, "gsm8k")
    assert (svamp.max_tokens, svamp.chat, svamp.limit, svamp.split, svamp.tag) == (96, True, 5, "train", "small")
    assert svamp.teacher.options == {"batch_size": 40} and gsm.teacher.options == {"batch_size": 8}
    assert (gsm.max_tokens, gsm.split, gsm.pipeline) == (200, "test", "default")
    assert record_path(tmp_path, "svamp", "small") == tmp_path / "teacher" / "svamp.small.jsonl"
