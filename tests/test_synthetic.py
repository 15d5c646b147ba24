"""The built-in synthetic tasks: deterministic disjoint splits, gold answers and exact (or wrong) rationales."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import cotbridge.tasks.synthetic  # noqa: F401  (registers the tasks)
from cotbridge.errors import UserError
from cotbridge.tasks.registry import TASKS
from cotbridge.tasks.synthetic import N_PHRASINGS, RENDERERS

# --- independent solvers: they read only the question text ------------------------------------------


def solve_last_letter(q: str) -> str:
    words = re.search(r'words in "([^"]+)"', q).group(1).split()
    return "".join(w[-1] for w in words)


def solve_coin_flip(q: str) -> str:
    assert q.startswith("A coin is heads up.")
    flips = len(re.findall(r"\b\w+ flips the coin\.", q))
    return "yes" if flips % 2 == 0 else "no"


def solve_shuffled(q: str) -> str:
    players = (
        re.match(r"(.+?) are playing a game\.", q).group(1).replace(", and ", ", ").replace(" and ", ", ").split(", ")
    )
    options = re.findall(r"\(([A-Z])\) (.+?)(?=, \([A-Z]\)|\.$)", q)
    intro = q.split(": ", 1)[1].split(". As the game progresses")[0]
    holding = {}
    for p in players:
        item = re.search(rf"\b{p} has (?:an? )?(.+?)(?:,| and |$)", intro).group(1)
        holding[p] = item
    for a, b in re.findall(r"(\w+) and (\w+) swap", q):
        holding[a], holding[b] = holding[b], holding[a]
    target = re.search(r"what does (\w+) have\?", q).group(1)
    return next(letter for letter, text in options if text == holding[target])


WORD_TIMES = {"twice": 2, "three": 3, "four": 4, "five": 5}


def solve_arithmetic(q: str) -> str:
    sentences = re.split(r"(?<=[.?])\s+", q)
    assert sentences[-1].startswith("How many")
    value = int(re.search(r" has (\d+) ", sentences[0]).group(1))
    for s in sentences[1:-1]:
        if "as many as before" in s:
            value *= WORD_TIMES[re.search(r"(twice|three|four|five)", s).group(1)]
        elif "equally into" in s:
            d = int(re.search(r"equally into (\d+)", s).group(1))
            assert value % d == 0, s
            value //= d
        elif " more " in s:
            value += int(re.search(r"\d+", s).group())
        else:
            value -= int(re.search(r"\d+", s).group())
        assert 0 <= value < 1000
    return str(value)


# --- what a rationale states as its result ----------------------------------------------------------


def last_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip())[-1]


def stated_string(r: str) -> str:
    return re.findall(r'"([^"]*)"', last_sentence(r))[-1]


def stated_yesno(r: str) -> str:
    return re.findall(r"\b(yes|no)\b", last_sentence(r))[-1]


def stated_choice(r: str) -> str:
    return re.findall(r"\(([A-Z])\)", last_sentence(r))[-1]


def stated_number(r: str) -> str:
    return re.findall(r"\d+", last_sentence(r))[-1]


@dataclass
class Spec:
    name: str
    solve: Callable[[str], str]
    stated: Callable[[str], str]
    size: Callable[[str], int]  # the structural size k read off a question
    k_values: tuple[int, int]


SPECS = [
    Spec(
        "synthetic_last_letter",
        solve_last_letter,
        stated_string,
        lambda q: len(re.search(r'words in "([^"]+)"', q).group(1).split()),
        (2, 6),
    ),
    Spec(
        "synthetic_coin_flip",
        solve_coin_flip,
        stated_yesno,
        lambda q: len(re.findall(r"flips? the coin\.", q)),
        (2, 7),
    ),
    Spec(
        "synthetic_shuffled_objects", solve_shuffled, stated_choice, lambda q: len(re.findall(r"\([A-Z]\)", q)), (3, 5)
    ),
    Spec(
        "synthetic_arithmetic",
        solve_arithmetic,
        stated_number,
        lambda q: len(re.split(r"(?<=[.?])\s+", q)) - 2,
        (2, 5),
    ),
]


@pytest.fixture(params=SPECS, ids=lambda s: s.name)
def spec(request: pytest.FixtureRequest) -> Spec:
    return request.param


def load(name: str, split: str, **params: object):
    return TASKS.get(name).load(split, **params)


def test_registered_with_metadata(spec: Spec) -> None:
    task = TASKS.get(spec.name)
    assert task.family == "synthetic" and task.version.startswith("1.")
    assert set(task.params) >= {"k", "n_train", "n_test", "seed"}
    assert task.sizes == {"train": task.params["n_train"], "test": task.params["n_test"]}
    assert task.answer_trigger.startswith("Therefore")
    assert spec.name in RENDERERS and N_PHRASINGS[spec.name] >= 3


def test_deterministic_and_seed_dependent(spec: Spec) -> None:
    a = load(spec.name, "test", n_test=40, seed=3)
    b = load(spec.name, "test", n_test=40, seed=3)
    c = load(spec.name, "test", n_test=40, seed=4)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert [e.question for e in a] != [e.question for e in c]
    assert [e.id for e in a] == [f"test-{i}" for i in range(40)]
    assert len({e.question for e in a}) == 40


def test_train_test_disjoint_and_test_independent_of_n_train(spec: Spec) -> None:
    test = load(spec.name, "test", n_train=30, n_test=60)
    assert [e.question for e in load(spec.name, "test", n_train=500, n_test=60)] == [e.question for e in test]
    train = load(spec.name, "train", n_train=300, n_test=60)
    assert [e.id for e in train[:2]] == ["train-0", "train-1"]
    assert len(train) == 300 and len({e.question for e in train}) == 300
    assert not {e.question for e in train} & {e.question for e in test}
    # a longer train split extends the shorter one
    assert [e.question for e in load(spec.name, "train", n_train=100, n_test=60)] == [e.question for e in train[:100]]


def test_difficulty_changes_structure(spec: Spec) -> None:
    for k in spec.k_values:
        examples = load(spec.name, "test", k=k, n_test=20)
        assert all(spec.size(e.question) == k for e in examples), k
        assert all(e.meta["k"] == k for e in examples)


def test_shuffled_swaps_param() -> None:
    examples = load("synthetic_shuffled_objects", "test", k=4, swaps=6, n_test=20)
    assert all(len(re.findall(r" swap (?:balls|presents|books)\.", e.question)) == 6 for e in examples)
    assert all(e.meta["choice_letters"] == "ABCD" and e.answer in "ABCD" for e in examples)


def test_gold_matches_independent_solver(spec: Spec) -> None:
    for k in (None, *spec.k_values):
        params = {"n_test": 100, "seed": 7} | ({"k": k} if k else {})
        for e in load(spec.name, "test", **params):
            assert spec.solve(e.question) == e.answer, e.question


def test_reference_rationales(spec: Spec) -> None:
    n = N_PHRASINGS[spec.name]
    for e in load(spec.name, "test", n_test=50, seed=1):
        json.dumps(e.meta)  # the trace is JSON-serialisable
        assert len(e.rationales) == n >= 3 and len(set(e.rationales)) == n
        for p, r in enumerate(e.rationales):
            assert RENDERERS[spec.name](e, p) == r == RENDERERS[spec.name](e, p + n)
            assert "answer is" not in r.lower()
            assert spec.stated(r) == e.answer, r
            if spec.name == "synthetic_arithmetic":
                assert e.answer in re.findall(r"\d+", last_sentence(r))


def test_error_step_gives_wrong_result(spec: Spec) -> None:
    render, n = RENDERERS[spec.name], N_PHRASINGS[spec.name]
    for e in load(spec.name, "test", n_test=30, seed=2):
        tr = e.meta["trace"]
        steps = len(tr.get("swaps") or tr.get("ops") or tr.get("words") or tr["people"])
        for step in range(steps):
            for p in range(n):
                wrong = render(e, p, error_step=step)
                assert wrong != e.rationales[p]
                assert "answer is" not in wrong.lower()
                assert spec.stated(wrong) != e.answer, wrong
                # the same error is made every time unless the caller brings an rng
                assert render(e, p, error_step=step) == wrong
        render(e, 0, error_step=0, rng=random.Random(5))


def test_unknown_param_is_user_error(spec: Spec) -> None:
    with pytest.raises(UserError, match="bogus"):
        TASKS.get(spec.name).load("test", k=3, bogus=1)


def test_bad_values_are_user_errors(spec: Spec) -> None:
    with pytest.raises(UserError):
        load(spec.name, "test", k=0)
    with pytest.raises(UserError):
        load(spec.name, "test", k="many")


def test_too_few_distinct_questions_is_user_error() -> None:
    # one-word last-letter questions: there are only ~200 names
    with pytest.raises(UserError, match="distinct"):
        load("synthetic_last_letter", "test", k=1, n_test=500)
