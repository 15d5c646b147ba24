"""Prompt modes (zero-shot, two-stage zero-shot-CoT, few-shot-CoT, student modes) and student training formats."""
