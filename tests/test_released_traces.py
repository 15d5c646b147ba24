"""Released reasoning-trace datasets (OpenThoughts-114k, Mixture-of-Thoughts, OpenR1-Math layouts, small files
generated here) become teacher records with provenance, then curate into <think> students."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cotbridge.errors import DataError
from cotbridge.released_traces import import_traces

QUESTION = "What is $\\frac{1}{2} + \\frac{1}{4}$?"
ROWS = {
    "openthoughts": [
        {
            "system": "You are a helpful assistant.",
            "conversations": [
                {"from": "user", "value": QUESTION},
                {
                    "from": "assistant",
                    "value": "<|begin_of_thought|>\n\nHalves and quarters: 2/4 + 1/4 = 3/4.\n\n"
                    "<|end_of_thought|>\n\n<|begin_of_solution|>\n\nThe sum is $\\boxed{\\frac{3}{4}}$.\n\n"
                    "<|end_of_solution|>",
                },
            ],
            "ground_truth_solution": "\\frac{3}{4}",
        }
    ],
    "mixture_of_thoughts": [
        {
            "messages": [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "<think>\n2/4 + 1/4 = 3/4\n</think>\n\nSo the answer is $0.75$."},
            ],
            "source": "math",
        }
    ],
    "openr1_math": [
        {
            "problem": QUESTION,
            "answer": "\\frac{3}{4}",
            "generations": [
                "<think>1/2 = 2/4, plus 1/4.</think>\nThus \\boxed{\\frac34}.",
                "<think>Maybe 2/6 = 1/3</think>\n\\boxed{\\frac{1}{3}}",
                "<think>Let me add 1/2 and 1/4 slowly: first",
            ],
            "correctness_math_verify": [True, False, False],
        }
    ],
}


def write(tmp_path, layout):
    path = tmp_path / f"{layout}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[layout]))
    return path


@pytest.mark.parametrize("layout", list(ROWS))
def test_each_layout_becomes_teacher_records_with_provenance(tmp_path, layout):
    out = tmp_path / "teacher" / "traces.jsonl"
    summary = import_traces(str(write(tmp_path, layout)), layout, "math500", out)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    first = recs[0]
    assert first["question"] == QUESTION and "1/4" in first["thinking"]
    assert "<think>" not in first["rationale"] and "begin_of_solution" not in first["rationale"]
    assert first["provenance"]["layout"] == layout and first["provenance"]["row"] == 0
    if layout == "mixture_of_thoughts":  # no gold answer in this layout: unverified, not assumed right
        assert first["correct"] is None and summary["unverified"] == 1
    else:
        assert first["correct"] is True  # checked by math-verify against the dataset's answer
    if layout == "openr1_math":
        assert [r["correct"] for r in recs] == [True, False, False] and recs[2]["thinking_complete"] is False
        assert [r["source_correct"] for r in recs] == [True, False, False]
    again = import_traces(str(write(tmp_path, layout)), layout, "math500", out)
    assert again["new"] == 0 and again["records"] == len(recs)  # resumable: nothing imported twice


def test_traces_to_a_student_dataset_that_keeps_think(tmp_path):
    records = tmp_path / "teacher.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "traces",
            str(write(tmp_path, "openr1_math")),
            "--layout",
            "openr1_math",
            "--task",
            "math500",
            "-o",
            str(records),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 records" in done.stdout and "1 correct" in done.stdout
    cur = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "curate",
            str(records),
            "-o",
            str(tmp_path / "data"),
            "--format",
            "chat",
            "--rationale",
            "both",
            "--no-decontaminate",
            "--compare-checker",
            "number",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cur.returncode == 0, cur.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 1  # the wrong trace and the unfinished one are not trained on
    answer = rows[0]["completion"][0]["content"]
    assert answer.startswith("<think>\n1/2 = 2/4, plus 1/4.\n</think>") and "\\boxed{\\frac34}" in answer
    stats = json.loads((tmp_path / "data" / "curation.json").read_text())
    assert stats["dropped"] == {"incomplete_thinking": 1, "correct": 1}
    # the records' verdicts (math-verify) against the plain numeric rules on the same outputs: \\frac34 is no number
    table = stats["checker_table"]
    assert sum(table[k] for k in ("both_correct", "only_rules", "only_checker", "both_wrong")) == 3
    assert table["only_rules"] == 1 and "records' verdicts vs number" in cur.stdout


def openr1_row(**changes):
    return {**ROWS["openr1_math"][0], **changes}


def test_a_null_gold_answer_is_unverified_not_the_gold_none(tmp_path):
    """`answer: null` used to become the gold "None": every trace scored wrong against it, the real gold lost."""
    source = tmp_path / "null_answer.jsonl"
    source.write_text(json.dumps(openr1_row(answer=None)) + "\n")
    out = tmp_path / "teacher.jsonl"
    summary = import_traces(str(source), "openr1_math", "math500", out)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["gold"] for r in recs] == [None, None, None]
    assert [r["correct"] for r in recs] == [None, None, None]  # unverified: the correct filter drops them
    assert [r["source_correct"] for r in recs] == [True, False, False]  # the dataset's own verdicts are kept
    assert summary["unverified"] == 3 and summary["correct"] == 0  # counted: the CLI prints "3 without a gold answer"
    trusted = import_traces(str(source), "openr1_math", "math500", tmp_path / "trusted.jsonl", assume_correct=True)
    assert trusted["correct"] == 1  # --assume-correct keeps the source's own verdicts, not all three
    blank = tmp_path / "blank_answer.jsonl"
    blank.write_text(json.dumps(openr1_row(answer="  ")) + "\n")
    assert import_traces(str(blank), "openr1_math", "math500", tmp_path / "blank.jsonl")["unverified"] == 3


def cli_traces(source, layout, out):
    return subprocess.run(
        [sys.executable, "-m", "cotbridge", "traces", str(source), "--layout", layout, "--task", "math500", "-o", out],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generations_as_a_string_are_refused_with_the_row_and_field(tmp_path):
    """A string where OpenR1-Math lists its generations used to become one record per character."""
    source = tmp_path / "string_generations.jsonl"
    # as a JSON-encoded list: read as one trace it would train on brackets and quotes
    source.write_text(json.dumps(openr1_row(generations=json.dumps(ROWS["openr1_math"][0]["generations"]))) + "\n")
    out = tmp_path / "teacher.jsonl"
    done = cli_traces(source, "openr1_math", out)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # (above it: the datasets library's progress bars)
    assert f"{source}: row 0: 'generations' is a str, not a list of traces" in last
    assert "one-element list" in last  # what to do
    assert not out.exists()  # nothing half-imported
    source.write_text(json.dumps(openr1_row(generations=["<think>1/2 + 1/4</think> \\boxed{\\frac34}", None])) + "\n")
    with pytest.raises(DataError, match=r"row 0: 'generations'\[1\] is null"):
        import_traces(str(source), "openr1_math", "math500", out)


def test_a_malformed_jsonl_line_is_named_by_file_and_line(tmp_path):
    """datasets only says that a JSON file failed to load; the one line names the line to fix."""
    source = tmp_path / "traces.jsonl"
    good = json.dumps(ROWS["mixture_of_thoughts"][0])
    source.write_text(f"{good}\n{good}\n{good[:-5]}\n{good}\n")
    out = tmp_path / "teacher.jsonl"
    with pytest.raises(DataError) as err:
        import_traces(str(source), "mixture_of_thoughts", "math500", out)
    assert str(source) in str(err.value) and ":3" in str(err.value) and "invalid JSON" in str(err.value)
    assert not out.exists()


def test_bad_local_sources_are_one_line_without_asking_the_hub(tmp_path):
    """A missing file name went to the hub (20+ s offline, "couldn't reach"); an empty file raised IndexError; a
    malformed .json said only "an error occurred"; the datasets library's own ERROR lines came first."""
    empty, bad_json, out = tmp_path / "empty.jsonl", tmp_path / "bad.json", tmp_path / "t.jsonl"
    empty.write_text("")
    bad_json.write_text('[{"problem": "1+1"},\n{"problem": \n')
    cases = {
        tmp_path / "nope.jsonl": "no such file or folder",
        empty: "empty (no rows to import)",
        bad_json: f"{bad_json}:3: invalid JSON",
    }
    for source, message in cases.items():
        done = cli_traces(source, "openthoughts", out)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr and "Hub" not in done.stderr
        assert not out.exists()
