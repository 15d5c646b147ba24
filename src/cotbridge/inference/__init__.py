"""Inference shared by every method: the rationale -> answer call and the typed records it produces."""
