"""The transfer matrix: decontaminated test sets, the in-domain/out-of-domain arithmetic, family tables,
the rendered outputs, and the student options (QLoRA fallback, merging an adapter in full precision)."""

from __future__ import annotations

import logging

import pytest

from cotbridge.recipes.instruct.config import StudentConfig
from cotbridge.recipes.instruct.report import matrix_markdown, plot_heatmap, rate_markdown
from cotbridge.recipes.instruct.transfer import build_matrix, family_comparison, relation_to_student, select_test_sets


def m(acc: float, n: int = 10) -> dict:
    return {"accuracy": acc, "accuracy_stderr": 0.05, "n": n}


ROWS = [
    {"name": "base", "tuned_on": None, "teachers": [], "families": [], "relation": None, "demonstrations": 0},
    {
        "name": "gsm8k.gpt",
        "tuned_on": "gsm8k",
        "teachers": ["gpt"],
        "families": ["gpt"],
        "relation": "cross-family",
        "demonstrations": 100,
    },
    {
        "name": "csqa.gpt",
        "tuned_on": "csqa",
        "teachers": ["gpt"],
        "families": ["gpt"],
        "relation": "cross-family",
        "demonstrations": 100,
    },
    {
        "name": "csqa.palm",
        "tuned_on": "csqa",
        "teachers": ["palm"],
        "families": ["palm"],
        "relation": "cross-family",
        "demonstrations": 90,
    },
    {
        "name": "csqa.small",
        "tuned_on": "csqa",
        "teachers": ["small"],
        "families": ["smol"],
        "relation": "same-family",
        "demonstrations": 50,
    },
]
CELLS = {
    "base": {"gsm8k": m(0.02), "csqa": m(0.20), "svamp": m(0.10)},
    "gsm8k.gpt": {"gsm8k": m(0.06), "csqa": m(0.22), "svamp": m(0.16)},
    "csqa.gpt": {"gsm8k": m(0.03), "csqa": m(0.40), "svamp": m(0.12)},
    "csqa.palm": {"gsm8k": m(0.01), "csqa": m(0.30), "svamp": m(0.08)},
    "csqa.small": {"gsm8k": m(0.02), "csqa": m(0.25)},  # one cell missing
}
COLS = ["gsm8k", "csqa", "svamp"]


def test_matrix_in_domain_out_of_domain_and_deltas():
    mat = build_matrix(ROWS, COLS, CELLS)
    rows = {r["name"]: r for r in mat["rows"]}
    g = rows["gsm8k.gpt"]
    assert g["cells"]["gsm8k"]["in_domain"] and not g["cells"]["csqa"]["in_domain"]
    assert g["in_domain"] == pytest.approx(0.06) and g["in_domain_delta"] == pytest.approx(0.04)
    assert g["out_of_domain_mean"] == pytest.approx((0.22 + 0.16) / 2)
    assert g["out_of_domain_delta"] == pytest.approx(((0.22 - 0.20) + (0.16 - 0.10)) / 2)
    assert g["cells"]["svamp"]["n"] == 10 and g["cells"]["svamp"]["stderr"] == 0.05
    base = rows["base"]
    assert base["in_domain"] is None and all(c["delta_vs_base"] is None for c in base["cells"].values())
    small = rows["csqa.small"]
    assert "svamp" not in small["cells"] and small["out_of_domain_mean"] == pytest.approx(
        0.02
    )  # only present cells count


def test_family_comparison_groups_teachers_and_relations():
    fam = family_comparison(build_matrix(ROWS, COLS, CELLS))
    assert [e["row"] for e in fam["by_task"]["csqa"]] == ["csqa.gpt", "csqa.palm", "csqa.small"]
    assert fam["tasks_with_several_families"] == ["csqa"]
    shared = fam["by_family_on_shared_tasks"]
    assert set(shared) == {"gpt", "palm", "smol"} and shared["gpt"]["tasks"] == ["csqa"]  # gsm8k had one family only
    assert shared["gpt"]["in_domain_delta"] == pytest.approx(0.20) and shared["palm"][
        "in_domain_delta"
    ] == pytest.approx(0.10)
    assert fam["by_family"]["gpt"]["rows"] == 2 and fam["by_family"]["gpt"]["in_domain"] == pytest.approx(
        (0.06 + 0.40) / 2
    )
    rel = fam["by_relation"]
    assert rel["same-family"]["rows"] == 1 and rel["cross-family"]["rows"] == 3
    assert rel["same-family"]["in_domain_delta"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    "families,student,expected",
    [
        (["llama"], "llama", "same-family"),
        (["gpt"], "llama", "cross-family"),
        (["gpt", "llama"], "llama", "mixed"),
        (["gpt"], None, "unknown"),
    ],
)
def test_relation_to_student(families, student, expected):
    assert relation_to_student(families, student) == expected


def test_test_sets_drop_every_trained_question_and_are_shared_by_rows():
    from tests.conftest import SHARED_DATA

    data = str(SHARED_DATA)
    trained = [{"task": "gsm8k", "example_id": f"test-{i}"} for i in range(5)]
    # a training question under another id (the same text) counts as trained-on too
    from cotbridge.tasks import get_task

    svamp_test = get_task("svamp").load("test", data)
    trained.append({"task": "other", "example_id": "x", "question": svamp_test[0].question.upper() + "  "})
    sets = select_test_sets(["gsm8k", "svamp"], "test", 7, data, trained)
    assert sets["gsm8k"]["ids"] == [f"test-{i}" for i in range(5, 12)] and sets["gsm8k"]["excluded_trained"] == 5
    assert svamp_test[0].id not in sets["svamp"]["ids"] and sets["svamp"]["excluded_trained"] == 1
    assert len(sets["svamp"]["ids"]) == 7


def test_markdown_and_heatmap(tmp_path):
    mat = build_matrix(ROWS, COLS, CELLS)
    md = matrix_markdown(mat)
    assert (
        "| gsm8k ← gpt (gpt) | 100 | **6.0 ± 5.0 (n=10)** | 22.0 ± 5.0 (n=10) | 16.0 ± 5.0 (n=10) "
        "| +4.0 | 19.0 | +4.0 |" in md
    )
    assert "| base (untuned) |" in md
    done = rate_markdown(
        build_matrix(ROWS, COLS, {k: {c: {**v, "complete": 0.5} for c, v in cs.items()} for k, cs in CELLS.items()}),
        "complete",
    )
    assert "| csqa ← small (smol) | 50.0 | 50.0 | – |" in done
    png = plot_heatmap(mat, tmp_path / "m.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with pytest.raises(ValueError):
        plot_heatmap({"columns": [], "rows": []}, tmp_path / "e.png")


def test_4bit_without_cuda_falls_back_with_a_message(caplog, tiny_model_dir):
    import torch

    from cotbridge.recipes.instruct.student import load_student, qlora_unavailable

    if torch.cuda.is_available():
        pytest.skip("this machine could run QLoRA")
    cfg = StudentConfig(model=str(tiny_model_dir), quantization="4bit")
    assert qlora_unavailable(cfg) == "no CUDA GPU is available"
    with caplog.at_level(logging.WARNING, logger="cotbridge.recipes.instruct.student"):
        model, tok, quantized = load_student(cfg)
    assert not quantized and not getattr(model, "is_loaded_in_4bit", False)
    assert "4bit (QLoRA) requested but no CUDA GPU is available" in caplog.text and "full-precision" in caplog.text
    assert qlora_unavailable(cfg.model_copy(update={"lora": False})).startswith("QLoRA trains LoRA")


def test_adapter_merged_in_full_precision_equals_the_trained_student(tmp_path, tiny_model_dir):
    """The QLoRA path merges the saved adapter into a fresh full-precision base; on CPU that must reproduce
    exactly the student train_student saved (LoRA merged in memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    from cotbridge.recipes.instruct.student import merge_adapter, train_row

    ex = {
        "prompt": [{"role": "user", "content": "Tom has 3 apples. How many?"}],
        "completion": [{"role": "assistant", "content": "3 apples.\nThe answer is 3"}],
    }
    cfg = StudentConfig(model=str(tiny_model_dir), max_steps=3, lr=1e-2, batch_size=2, logging_steps=1)
    stats = train_row(cfg, [ex] * 4, tmp_path / "student")
    assert stats["quantization"] is None and stats["global_step"] == 3
    merge_adapter(str(tiny_model_dir), None, tmp_path / "student" / "adapter", tmp_path / "remerged")
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "student").state_dict()
    remerged = AutoModelForCausalLM.from_pretrained(tmp_path / "remerged").state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert trained.keys() == remerged.keys()
    assert all(torch.allclose(trained[k], remerged[k], atol=1e-6) for k in trained)
    assert any(not torch.equal(trained[k], base[k]) for k in trained)  # training changed the weights
