"""Evaluation: prompts -> two-stage inference -> extraction -> vote -> metrics (scoring.py), the `cotbridge eval` job
(run.py), recorded outputs scored without a model (predictions.py), majority vote and pass@k (metrics.py)."""
