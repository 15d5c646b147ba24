"""Rationale-quality scoring over the eight aspects of LM-guided CoT: the automatic scorers and the judge."""
