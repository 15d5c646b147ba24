"""Answer types: how to find candidate answers in text and when a candidate equals the gold."""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from cotbridge.answers.squad import exact_match, normalize_answer
from cotbridge.registry import Registry

NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
YESNO_WORDS = ("yes", "no")


@dataclass(frozen=True)
class AnswerType:
    """``candidates(text, letters)`` lists answers in reading order; ``same(pred, gold)`` compares them."""

    name: str
    candidates: Callable[[str, str], list[str]]
    same: Callable[[str, str], bool]
    # Without any marker, spans are the model's first line (explanations follow); others the last candidate.
    fallback_first: bool = False
    raw_latex: bool = False  # candidates see the LaTeX as written (math answers), not a plain-text rendering


ANSWER_TYPES: Registry[AnswerType] = Registry("answer type")


# --- numbers -----------------------------------------------------------------


def number_candidates(text: str, letters: str = "") -> list[str]:
    # Thousands separators go first ("1,000" is one number); a trailing "." ends a sentence, not a decimal.
    cleaned = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    found = [_canonical_number(m) for m in NUMBER_RE.findall(cleaned)]
    # PaLM writes "The answer is (10 * 45)." — an expression right at the start is its value.
    value = leading_expression_value(cleaned)
    return [value, *found] if value is not None else found


EXPRESSION_RE = re.compile(r"\s*\$?([\d\.\s\+\-\*/\(\)]+?)\s*(?:[\.,;]?\s*$|[\.,;]\s|\n)")


def leading_expression_value(text: str) -> str | None:
    """Value of an arithmetic expression that starts the text (only + - * / and parentheses)."""
    m = EXPRESSION_RE.match(text)
    if not m or not re.search(r"\d\s*[\+\-\*/]\s*[\d\(]", m.group(1)):
        return None
    try:
        value = _eval_arithmetic(ast.parse(m.group(1).strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None
    return _canonical_number(f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value)))


def _eval_arithmetic(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_arithmetic(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval_arithmetic(node.left), _eval_arithmetic(node.right))
    raise ValueError("not plain arithmetic")


_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def _canonical_number(s: str) -> str:
    return s[:-2] if s.endswith(".0") else s


def same_number(pred: str, gold: str, tol: float = 1e-6) -> bool:
    try:
        p = float(str(pred).replace(",", ""))
        g = float(str(gold).replace(",", ""))
    except ValueError:
        return False
    return abs(p - g) <= tol * max(1.0, abs(g))


ANSWER_TYPES.add("number", AnswerType("number", number_candidates, same_number))


# --- multiple choice ---------------------------------------------------------


def choice_candidates(text: str, letters: str = "ABCDE") -> list[str]:
    """Letters in the allowed range. Marked letters ("(B)", "B)", PaLM's "(b)") win over bare ones,
    so that the article "A" in running text does not count when the model wrote "(C)" somewhere."""
    letters = letters or "ABCDE"
    cls = f"[{re.escape(letters)}{re.escape(letters.lower())}]"
    marked = re.findall(rf"\(({cls})\)|(?<![A-Za-z])({cls})\)", text)
    if marked:
        return [(a or b).upper() for a, b in marked]
    return re.findall(rf"(?<![A-Za-z])[{re.escape(letters)}](?![A-Za-z'])", text)


def same_choice(pred: str, gold: str) -> bool:
    return pred.strip().strip("()").upper() == gold.strip().strip("()").upper()


ANSWER_TYPES.add("choice", AnswerType("choice", choice_candidates, same_choice))


# --- yes / no ----------------------------------------------------------------


def yesno_candidates(text: str, letters: str = "") -> list[str]:
    words = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation))).split()
    return [w for w in words if w in YESNO_WORDS]


def same_yesno(pred: str, gold: str) -> bool:
    return pred.strip().lower() == gold.strip().lower()


ANSWER_TYPES.add("yesno", AnswerType("yesno", yesno_candidates, same_yesno))


# --- free strings (last-letter concatenation) ---------------------------------


def string_candidates(text: str, letters: str = "") -> list[str]:
    """Quoted strings first, else words; each cleaned of quotes and punctuation."""
    quoted = re.findall(r"[\"“']([^\"”'\n]+)[\"”']", text)
    pieces = quoted or text.split()
    out = [clean_string(p) for p in pieces]
    return [p for p in out if p]


def clean_string(s: str) -> str:
    return re.sub(r"[\"'“”‘’.,:;!?*`\s]", "", s).strip()


def same_string(pred: str, gold: str) -> bool:
    return clean_string(pred).lower() == clean_string(gold).lower()


ANSWER_TYPES.add("string", AnswerType("string", string_candidates, same_string))


# --- extractive spans (multi-hop QA) -----------------------------------------


def span_candidates(text: str, letters: str = "") -> list[str]:
    """One candidate per non-empty line: its first sentence (run-on explanations are cut off)."""
    out = []
    for line in text.strip().split("\n"):
        first = re.split(r"(?<=[a-z0-9\)])\.\s", line.strip())[0].strip().rstrip(".").strip()
        if normalize_answer(first):
            out.append(first)
    return out


ANSWER_TYPES.add("span", AnswerType("span", span_candidates, exact_match, fallback_first=True))


# --- math answers (MATH-500, AIME): equivalence by math-verify -------------------------------------------------


def math_candidates(text: str, letters: str = "") -> list[str]:
    """The answer math-verify extracts from the text, as written: a short segment (what a boxed or "the answer is"
    marker held: ``\\frac{1}{2}``, ``[1, 2)``) is read as LaTeX; prose by math-verify's own extraction (the last
    $...$, boxed or "= value")."""
    segment = text.strip().rstrip(".").strip()
    if not segment:
        return []
    try:
        from math_verify import parse

        short = "\n" not in segment and len(segment.split()) <= 4 and "$" not in segment
        parsed = (parse(f"${segment}$") if short else []) or parse(segment)
    except Exception:  # noqa: BLE001  (math-verify could not read it: the plain numeric rules decide)
        parsed = []
    if len(parsed) >= 2 and str(parsed[1]).strip():
        return [str(parsed[1]).strip()]
    return number_candidates(segment)[-1:]


def same_math(pred: str, gold: str) -> bool:
    """math-verify's equivalence (LaTeX, fractions, intervals, units, sets) of the prediction and the gold; the
    numeric rules when it cannot parse either (it then returns False, never a false positive)."""
    try:
        from math_verify import parse, verify

        gold_parsed, pred_parsed = parse(f"${gold}$"), parse(f"${pred}$")
        if gold_parsed and pred_parsed:
            return bool(verify(gold_parsed, pred_parsed))
    except Exception:  # noqa: BLE001  (an unparseable answer is a wrong answer, not a crash)
        pass
    return same_number(pred, gold) if NUMBER_RE.fullmatch(pred.strip()) else pred.strip() == gold.strip()


ANSWER_TYPES.add("math", AnswerType("math", math_candidates, same_math, raw_latex=True))
