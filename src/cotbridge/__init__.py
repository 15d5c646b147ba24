"""cotbridge: transfer chain-of-thought reasoning between language models of different sizes."""

__version__ = "0.1.0"
