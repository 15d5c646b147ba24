"""cotbridge teach: records per (question, sample), resume after a crash, cache, replay, reference teacher."""

from __future__ import annotations

import json

import pytest

from cotbridge.backends.base import Completion
from cotbridge.curate import curate
from cotbridge.errors import DataError, UserError
from cotbridge.record_file import RecordFile
from cotbridge.teach import TeachConfig, run_teach
from tests.conftest import RE2, SHARED_DATA, without_timings


def load(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def strip_time(recs):
    return sorted((without_timings(r) for r in recs), key=lambda r: r["key"])


def test_reference_teacher_filter_matches_known_ground_truth(tmp_path):
    cfg = TeachConfig(
        task="synthetic_arithmetic:k=3",
        limit=40,
        samples=8,
        run_dir=str(tmp_path),
        cache="off",
        teacher={"backend": "reference", "options": {"error_rate": 0.25}},
    )
    summary = run_teach(cfg, progress=False)
    recs = load(tmp_path / "teacher" / "synthetic_arithmetic.jsonl")
    assert len(recs) == summary["records"] == 320
    wrong = [r for r in recs if r["extra"]["error_step"] is not None]
    assert 0.15 < len(wrong) / len(recs) < 0.35  # the error rate is honoured
    # Kept by the correctness filter == exactly the samples written without an injected error.
    assert {r["key"] for r in recs if r["correct"]} == {r["key"] for r in recs if r["extra"]["error_step"] is None}
    assert len({r["extra"]["phrasing"] for r in recs}) >= 3  # diverse reasoning varies the phrasing
    # error_step is the 0-based index of the corrupted operation (it used to hold a raw random draw)
    from cotbridge.tasks import parse_task_spec
    from cotbridge.tasks.synthetic import RENDERERS

    task, params = parse_task_spec("synthetic_arithmetic:k=3")
    by_id = {ex.id: ex for ex in task.load("train", None, **params)}
    for r in wrong[:20]:
        ex = by_id[r["example_id"]]
        assert 0 <= r["extra"]["error_step"] < len(ex.meta["trace"]["ops"])
        assert RENDERERS[task.name](ex, r["extra"]["phrasing"]) != r["rationale"]
    two_stage = recs[0]
    assert two_stage["prompts"]["answer"].endswith("Therefore, the answer (arabic numerals) is")
    assert two_stage["prompts"]["answer"].startswith(two_stage["prompts"]["rationale"])


def test_resume_after_torn_write_finishes_identically(tmp_path, scripted):
    calls = []

    def respond(prompt, req):
        calls.append((req.meta["example"].id, req.first_sample, req.n, req.meta["stage"]))
        if req.meta["stage"] == "answer":
            return [" yes."]
        return [f" reasoning {req.meta['example'].id} sample {req.first_sample + j}" for j in range(req.n)]

    def cfg(run_dir):
        return TeachConfig(
            task="synthetic_coin_flip", limit=10, samples=3, run_dir=str(run_dir), cache="off", chunk_size=4
        )

    run_teach(cfg(tmp_path / "a"), backend=scripted(respond), progress=False)
    reference = strip_time(load(tmp_path / "a" / "teacher" / "synthetic_coin_flip.jsonl"))

    path = tmp_path / "b" / "teacher" / "synthetic_coin_flip.jsonl"
    run_teach(cfg(tmp_path / "b"), backend=scripted(respond), progress=False)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:17]) + lines[17][:40])  # crash in the middle of writing record 18
    calls.clear()
    run_teach(cfg(tmp_path / "b"), backend=scripted(respond), progress=False)
    assert strip_time(load(path)) == reference
    # Only the 13 lost samples were asked for again, each by its own sample index.
    asked = {(ex, first + j) for ex, first, n, stage in calls if stage == "rationale" for j in range(n)}
    assert len(asked) == 30 - 17 and not asked & {(r["example_id"], r["sample"]) for r in reference[:0]}


def test_cached_calls_are_not_paid_twice(tmp_path, scripted):
    n_calls = []

    def respond(prompt, req):
        n_calls.append(req.n)
        return [f" step {req.first_sample + j}. Therefore, the answer is 4" for j in range(req.n)]

    base = dict(
        task="synthetic_arithmetic:k=1", limit=5, mode="zero_shot_cot_single", cache=str(tmp_path / "cache.sqlite")
    )
    run_teach(TeachConfig(samples=2, run_dir=str(tmp_path / "r1"), **base), backend=scripted(respond), progress=False)
    assert sum(n_calls) == 10
    n_calls.clear()
    # A new run directory with the same requests: all from the cache.
    s = run_teach(
        TeachConfig(samples=2, run_dir=str(tmp_path / "r2"), **base), backend=scripted(respond), progress=False
    )
    assert n_calls == [] and s["cache"]["hits"] == 10
    # Raising D to 4 asks only for samples 2 and 3 of each question.
    run_teach(TeachConfig(samples=4, run_dir=str(tmp_path / "r2"), **base), backend=scripted(respond), progress=False)
    assert n_calls == [2] * 5


def test_errors_and_empty_outputs_are_not_cached(tmp_path, scripted):
    from cotbridge.backends.base import Request
    from cotbridge.backends.request_cache import CachedBackend, RequestCache

    cache = RequestCache(tmp_path / "c.sqlite")

    class Failing:
        kind, model_id = "scripted", "m"

        def generate(self, requests, progress=True, on_result=None):
            raise ConnectionError("boom")

    with pytest.raises(ConnectionError):
        CachedBackend(Failing(), cache).generate([Request(prompt="q")])
    assert len(cache) == 0
    empty = scripted(lambda p, r: ["  "])
    empty.kind = "scripted"
    CachedBackend(empty, cache).generate([Request(prompt="q")])
    assert len(cache) == 0
    assert cache.put("k", Completion("fine", "stop")) and cache.get("k").text == "fine"


def test_replay_reproduces_recorded_svamp_accuracy(tmp_path):
    options = {
        "path": str(RE2 / "svamp__gpt-4o-mini-2024-07-18.jsonl"),
        "text_field": "cot.generation.0",
        "id_field": "id",
    }
    accs = []
    for split in ("train", "test"):
        cfg = TeachConfig(
            task="svamp",
            split=split,
            data_dir=str(SHARED_DATA),
            mode="zero_shot_cot_single",
            run_dir=str(tmp_path / split),
            teacher={"backend": "replay", "model": "gpt-4o-mini", "options": options},
        )
        s = run_teach(cfg, progress=False)
        accs.append((s["accuracy"], s["records"]))
        recs = load(tmp_path / split / "teacher" / "svamp.jsonl")
        assert all(r["finish_reason"]["rationale"] == "stop" for r in recs)  # every question was in the recording
        kept, stats = curate(recs)
        assert stats["kept_fraction"] == s["accuracy"] and all(r["correct"] for r in kept)
    overall = sum(a * n for a, n in accs) / sum(n for _, n in accs)
    assert abs(overall - 0.938) <= 0.01 and all(abs(a - 0.938) <= 0.01 for a, _ in accs)


def test_literal_secrets_in_config_are_refused(tmp_path):
    with pytest.raises(UserError, match="secrets come from the environment"):  # as the config is read
        TeachConfig(
            task="synthetic_coin_flip",
            run_dir=str(tmp_path),
            teacher={"backend": "openai", "options": {"api_key": "sk-x"}},
        )
    cfg = TeachConfig(task="synthetic_coin_flip", run_dir=str(tmp_path), teacher={"backend": "openai"})
    cfg.teacher.options["api_key"] = "sk-x"  # set after the config was read: the teacher refuses it too
    with pytest.raises(UserError, match="secrets come from the environment"):
        run_teach(cfg, progress=False)
    assert not list(tmp_path.rglob("*.jsonl"))


def test_dry_run_calls_nothing(tmp_path, scripted):
    backend = scripted(lambda p, r: pytest.fail("a dry run made a call"))
    s = run_teach(
        TeachConfig(task="synthetic_coin_flip", limit=7, samples=2, dry_run=True, run_dir=str(tmp_path)),
        backend=backend,
        progress=False,
    )
    assert s["dry_run"]["samples"] == 14 and s["dry_run"]["questions"] == 7


def test_record_file_repairs_only_a_torn_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "tex')
    assert set(RecordFile(path).records) == {"a", "b"} and path.read_text() == '{"key": "a"}\n{"key": "b"}\n'
    path.write_text('{"key": "a"}\n{oops}\n{"key": "c"}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:2"):
        RecordFile(path)


def test_curation_counts_every_drop_once():
    recs = [
        {
            "example_id": "1",
            "sample": 0,
            "rationale": "3 + 4 = 7",
            "correct": True,
            "finish_reason": {"rationale": "stop"},
        },
        {
            "example_id": "1",
            "sample": 1,
            "rationale": "3 + 4 = 7!",
            "correct": True,
            "finish_reason": {"rationale": "stop"},
        },
        {
            "example_id": "1",
            "sample": 2,
            "rationale": "3 + 4 = 8",
            "correct": False,
            "finish_reason": {"rationale": "length"},
        },
        {"example_id": "2", "sample": 0, "rationale": "", "correct": False, "finish_reason": {"rationale": "missing"}},
        {
            "example_id": "2",
            "sample": 1,
            "rationale": "a long one",
            "correct": True,
            "finish_reason": {"rationale": "length"},
        },
    ]
    from cotbridge.curate import CurateSettings

    kept, stats = curate(recs, CurateSettings(filters=["has_output", "correct", "complete"], dedupe=True))
    assert [(r["example_id"], r["sample"]) for r in kept] == [("1", 0)]
    assert stats["dropped"] == {"duplicate": 1, "correct": 1, "has_output": 1, "complete": 1}
    assert stats["kept"] + sum(stats["dropped"].values()) == stats["records"]


def test_answer_f1_filter_grades_span_answers_against_every_alias():
    from cotbridge.curate import CurateSettings

    recs = [  # golds: the record's aliases where given (set by the caller), else its single gold
        {
            "example_id": "1",
            "sample": 0,
            "rationale": "r",
            "prediction": "the Eiffel Tower in Paris",
            "gold": "Eiffel Tower",
        },
        {
            "example_id": "2",
            "sample": 0,
            "rationale": "r",
            "prediction": "NYC",
            "gold": "New York City",
            "golds": ["New York City", "NYC"],
        },
        {"example_id": "3", "sample": 0, "rationale": "r", "prediction": "London", "gold": "Paris"},
        {"example_id": "4", "sample": 0, "rationale": "", "prediction": "Paris", "gold": "Paris"},
    ]
    kept, stats = curate(recs, CurateSettings(filters=["has_output", "answer_f1"], min_answer_f1=0.5))
    assert [r["example_id"] for r in kept] == ["1", "2"]  # F1 0.67 (not an exact match) and an alias
    assert stats["dropped"] == {"answer_f1": 1, "has_output": 1}
    kept, _ = curate(recs, CurateSettings(filters=["answer_f1"], min_answer_f1=0.8))
    assert [r["example_id"] for r in kept] == ["2", "4"]


def test_records_whose_fingerprint_was_lost_are_not_extended_by_another_teacher(tmp_path):
    """Issue #24 (2): records without their fingerprint file were resumed by any other teacher, mixing in silently."""

    def cfg(error_rate):
        return TeachConfig(
            task="synthetic_coin_flip",
            limit=6,
            run_dir=str(tmp_path),
            cache="off",
            teacher={"backend": "reference", "options": {"error_rate": error_rate}},
        )

    run_teach(cfg(0.0), progress=False)
    records = tmp_path / "teacher" / "synthetic_coin_flip.jsonl"
    before = records.read_bytes()
    with pytest.raises(UserError, match="holds 6 records .*error_rate: 0.0 -> 0.5.*--force-new"):
        run_teach(cfg(0.5), progress=False)  # the fingerprint names what changed
    (tmp_path / "teacher" / "synthetic_coin_flip.fingerprint.json").unlink()
    with pytest.raises(
        UserError, match=r"holds 6 records .*\(no record of the settings that made them\); .*--force-new"
    ):
        run_teach(cfg(0.5).model_copy(update={"limit": 9}), progress=False)
    assert records.read_bytes() == before  # nothing appended


@pytest.mark.parametrize("mode", [None, "zero_shot_cot_single", "few_shot_cot"])
@pytest.mark.parametrize("chat", [False, True])
def test_the_oracle_teacher_is_always_right_in_every_teach_mode(tmp_path, mode, chat):
    """The oracle used to score 0% in the default mode: stage 2 repeated its rationale, whose first number is the
    sample index, and zero-shot-CoT's answer stage reads the first number."""
    few_shot = tmp_path / "few_shot.json"
    few_shot.write_text(
        json.dumps({"synthetic_arithmetic": {"prompt": "Q: What is 1 plus 9?\nA: 1 + 9 = 10. The answer is 10."}})
    )
    chosen = {"mode": mode} if mode else {}  # None: the default mode
    cfg = TeachConfig(
        task="synthetic_arithmetic:k=5",
        limit=6,
        samples=2,
        chat=chat,
        run_dir=str(tmp_path),
        cache="off",
        teacher={"backend": "oracle"},
        few_shot_prompts=str(few_shot) if mode == "few_shot_cot" else None,
        **chosen,
    )
    assert cfg.mode == (mode or "zero_shot_cot")
    summary = run_teach(cfg, progress=False)
    recs = load(tmp_path / "teacher" / "synthetic_arithmetic.jsonl")
    assert len(recs) == 12 and summary["accuracy"] == 1.0
    assert all(r["correct"] and r["prediction"] == r["gold"] for r in recs)
    assert len({r["rationale"] for r in recs}) == 12  # diverse samples stay distinct
