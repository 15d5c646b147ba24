"""Decontamination: find training questions that overlap a benchmark's test questions, so a student is never trained
on what it will be tested on.

Two checks against an index of test questions, as open-r1 and OpenThoughts decontaminate:

- **n-gram**: a training text shares a word n-gram (13 by default) with a test question. A test question shorter
  than n words is matched as a whole: it must appear inside the training text. Both texts are lower-cased, with
  punctuation removed and whitespace collapsed first.
- **exact**: the same words (the repeats MultiArith has across its official train/test indices);
- **fuzzy**: the Jaccard similarity of the word-trigram sets is at least ``fuzzy`` (0.7 by default: one word
  changed in the middle of a 19-word question leaves no 13-gram but 0.7 of the trigrams). This catches a reworded
  copy, such as another number format or a word changed. Only test questions that share a word 5-gram
  with the text are compared, so the check stays linear in the data.

The index covers the test split of every registered task whose data can be read (``--data-dir`` or the hub copy
that is already cached). A task that cannot be loaded is skipped, and the report says so.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)
_WORD = re.compile(r"[a-z0-9]+")
# Tasks whose questions come from one template (names and counts vary): n-grams say nothing there.
TEMPLATED = frozenset({"coin_flip", "last_letter_concatenation", "tracking_shuffled_objects"})


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class Match:
    task: str
    test_id: str
    kind: str  # "exact" (the same words), "ngram" or "fuzzy"
    score: float  # 1.0 for an n-gram match; the Jaccard similarity for a fuzzy one
    test_question: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TestIndex:
    """Test questions of one or more tasks, indexed for the n-gram and fuzzy checks."""

    def __init__(self, n: int = 13, fuzzy: float | None = 0.7, candidate_n: int = 5):
        self.n, self.fuzzy, self.candidate_n = n, fuzzy, candidate_n
        self.entries: list[tuple[str, str, str, list[str]]] = []  # (task, id, question, words)
        self.by_ngram: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.short: dict[tuple[str, ...], set[int]] = defaultdict(set)  # whole questions shorter than n words
        self.by_candidate: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.exact: dict[tuple[str, ...], set[int]] = defaultdict(set)  # every question, verbatim
        self.skipped: dict[str, str] = {}  # task -> why its test split is not in the index
        self.exact_only: set[str] = set()  # templated tasks: checked for verbatim repeats only

    def add(self, task: str, test_id: str, question: str, exact_only: bool = False) -> None:
        """``exact_only``: a templated task's question (generators, coin flip) shares n-grams with every other
        question of its task by construction, so only a verbatim repeat counts."""
        toks = words(question)
        if not toks:
            return
        i = len(self.entries)
        self.entries.append((task, test_id, question, toks))
        self.exact[tuple(toks)].add(i)
        if exact_only:
            return
        if len(toks) < self.n:
            self.short[tuple(toks)].add(i)
        for g in ngrams(toks, self.n):
            self.by_ngram[g].add(i)
        for g in ngrams(toks, min(self.candidate_n, len(toks))):
            self.by_candidate[g].add(i)

    def add_task(self, task: Any, examples: list[Any]) -> None:
        """A task's questions; a templated task's (generators, coin flip) count only as verbatim repeats."""
        exact_only = task.family == "synthetic" or task.name in TEMPLATED
        if exact_only:
            self.exact_only.add(task.name)
        for ex in examples:
            self.add(task.name, ex.id, ex.question, exact_only=exact_only)

    def matches(self, text: str) -> list[Match]:
        """Every test question that ``text`` overlaps, n-gram matches first."""
        toks = words(text)
        found: dict[int, Match] = {i: self._match(i, "exact", 1.0) for i in self.exact.get(tuple(toks), ())}
        for g in ngrams(toks, self.n):
            for i in self.by_ngram.get(g, ()):
                found.setdefault(i, self._match(i, "ngram", 1.0))
        for length in {len(q) for q in self.short}:  # a short test question inside the text, as a whole
            for g in ngrams(toks, length):
                for i in self.short.get(g, ()):
                    found.setdefault(i, self._match(i, "ngram", 1.0))
        if self.fuzzy is not None:
            candidates: set[int] = set()
            for g in ngrams(toks, self.candidate_n):
                candidates |= self.by_candidate.get(g, set())
            mine = ngrams(toks, 3)
            for i in candidates - set(found):
                theirs = ngrams(self.entries[i][3], 3)
                jaccard = len(mine & theirs) / max(1, len(mine | theirs))
                if jaccard >= self.fuzzy:
                    found[i] = self._match(i, "fuzzy", round(jaccard, 3))
        order = {"exact": 0, "ngram": 1, "fuzzy": 2}
        return sorted(found.values(), key=lambda m: (order[m.kind], -m.score, m.task, m.test_id))

    def _match(self, i: int, kind: str, score: float) -> Match:
        task, test_id, question, _ = self.entries[i]
        return Match(task, test_id, kind, score, question)


def build_index(
    tasks: list[str] | None = None,
    data_dir: str | None = None,
    split: str = "test",
    n: int = 13,
    fuzzy: float | None = 0.7,
) -> TestIndex:
    """An index of the ``split`` questions of ``tasks`` (default: every registered task that can be loaded)."""
    from cotbridge.errors import UserError
    from cotbridge.tasks import TASKS, parse_task_spec
    from cotbridge.tasks.base import resolve_data_dir

    index = TestIndex(n=n, fuzzy=fuzzy)
    local = resolve_data_dir(data_dir)
    for spec in tasks or list(TASKS):
        try:
            task, params = parse_task_spec(spec)
            if local is None and task.family != "synthetic":  # never a hub download from here
                index.skipped[spec] = "no local data: pass --data-dir (or set COTBRIDGE_DATA_DIR) to check it"
                continue
            examples = task.load(split, data_dir, **params)
        except UserError as e:  # no data here (hub-only task offline, unknown task): said in the report
            index.skipped[spec] = str(e).splitlines()[0][:200]
            continue
        index.add_task(task, examples)
    log.info(
        "decontamination index: %d %s questions of %d tasks (%d skipped)",
        len(index.entries),
        split,
        len({e[0] for e in index.entries}),
        len(index.skipped),
    )
    return index


def decontaminate(
    records: list[dict[str, Any]], index: TestIndex, field: str = "question"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records that overlap no test question, a report row for each one dropped: what it matched and why)."""
    kept, dropped = [], []
    memo: dict[str, list[Match]] = {}
    for rec in records:
        text = str(rec.get(field) or "")
        if text not in memo:
            memo[text] = index.matches(text)
        if memo[text]:
            first = memo[text][0]
            dropped.append(
                {
                    "example_id": rec.get("example_id"),
                    "sample": rec.get("sample"),
                    "question": text,
                    "matches": [m.to_dict() for m in memo[text][:3]],
                    "reason": f"{first.kind} overlap with {first.task} test question {first.test_id}",
                }
            )
        else:
            kept.append(rec)
    return kept, dropped
