"""Answer extraction and scoring: answer types, named extraction pipelines, per-sample verdicts."""

from cotbridge.answers.extract import PIPELINES, Extraction, extract_answer
from cotbridge.answers.score import Verdict, score_output
from cotbridge.answers.types import ANSWER_TYPES, AnswerType

__all__ = ["ANSWER_TYPES", "AnswerType", "Extraction", "PIPELINES", "Verdict", "extract_answer", "score_output"]
