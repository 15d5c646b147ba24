"""Secrets (API keys) come from the environment only: options name the variable, never hold the value."""

from __future__ import annotations

from typing import Any

from cotbridge.errors import UserError

SECRET_WORDS = ("key", "secret", "token", "password")


def check_no_literal_secrets(options: dict[str, Any]) -> None:
    """Refuse backend options that look like a literal secret (``api_key: sk-...``); ``api_key_env`` is fine."""
    for key in options:
        if any(w in key.lower() for w in SECRET_WORDS) and not key.lower().endswith("_env"):
            raise UserError(
                f"backend option {key!r}: secrets come from the environment; name the variable with "
                f"'{key}_env' (e.g. api_key_env: OPENAI_API_KEY)"
            )
