"""Secrets (API keys) come from the environment only: options name the variable, never hold the value.

A literal secret in an option would be written wherever options are: the teach stage's config, record fingerprints,
run directories. So it is refused before anything is written — under a secret-sounding name (``api_key``), or inside
a URL (``http://user:sk-...@host/v1``, ``?api_key=...``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cotbridge.errors import UserError

# The last word of a name that holds a secret: "api_key", "access_token", "client_secret", "hf_token", "apiKey".
# Only the last word: "max_tokens_param", "max_tokens", "tokenizer", "key_field" name no secret.
SECRET_WORDS = frozenset(
    {"key", "apikey", "secret", "token", "password", "passwd", "pwd", "passphrase", "credential", "credentials"}
    | {"keys", "apikeys", "secrets", "passwords"}  # a list of them (api_keys: [...]); "tokens" is a count
)
SECRET_NAMES = frozenset({"auth", "authorization", "bearer", "cookie", "sig", "signature"})  # the whole name


def is_secret_name(name: str) -> bool:
    """Whether an option (or URL query parameter) named ``name`` would hold a secret; ``*_env`` names a variable."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()  # apiKey -> api_key
    parts = [w for w in re.split(r"[^a-z0-9]+", words) if w]
    if not parts or parts[-1] == "env":
        return False
    return parts[-1] in SECRET_WORDS or "".join(parts) in SECRET_WORDS | SECRET_NAMES


def url_credentials(url: str) -> bool:
    """Whether an http(s) URL holds credentials: ``user:pass@`` or a query parameter named like a secret."""
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            return False
        return bool(parts.username or parts.password) or any(is_secret_name(k) for k, _ in parse_qsl(parts.query))
    except ValueError:  # not a URL (a bad port): the backend says what is wrong with it
        return False


def mask_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***`` (user name kept), safe to print."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.password else "***@" if parts.username else ""
        query = "&".join(f"{k}=***" if is_secret_name(k) else f"{k}={v}" for k, v in parse_qsl(parts.query, True))
        return urlunsplit((parts.scheme, user + host, parts.path, query, parts.fragment))
    except ValueError:
        return "***"


def _urls(value: Any, at: str) -> list[tuple[str, str]]:
    """(where, URL) for every string in ``value`` (a URL, a list of them, ``{url, concurrency}`` entries)."""
    if isinstance(value, str):
        return [(at, value)]
    if isinstance(value, Mapping):
        return [u for k, v in value.items() for u in _urls(v, f"{at}.{k}")]
    if isinstance(value, (list, tuple)):
        return [u for i, v in enumerate(value) for u in _urls(v, f"{at}[{i}]")]
    return []


def check_no_literal_secrets(options: Mapping[str, Any], where: str | None = None) -> None:
    """Refuse backend options that hold a literal secret (``api_key: sk-...``, a key in ``base_url``);
    ``api_key_env`` is fine. ``where``: the config key holding the options, for the error."""
    for key, value in options.items():
        name = f"{where}.{key}" if where else f"backend option {key!r}"
        if is_secret_name(str(key)):
            raise UserError(
                f"{name}: secrets come from the environment; name the variable with '{key}_env' "
                "(e.g. api_key_env: OPENAI_API_KEY)"
            )
        for at, url in _urls(value, f"{where}.{key}" if where else str(key)):
            if url_credentials(url):
                raise UserError(credentials_in_url(at, url))


def secret_free(where: str) -> Any:
    """The type of a config's backend options, checked as the config is read: a recipe records its config in the
    run directory before any stage builds a backend, so a key checked only then would already be on disk."""
    from pydantic import AfterValidator

    def check(options: dict[str, Any]) -> dict[str, Any]:
        check_no_literal_secrets(options, where)  # a UserError: pydantic passes it on as it is
        return options

    return Annotated[dict[str, Any], AfterValidator(check)]


def credentials_in_url(at: str, url: str) -> str:
    """The error for a URL holding credentials (the URL shown masked)."""
    return (
        f"{at}: {mask_url(url)} holds credentials; remove them from the URL and put the key in an environment "
        "variable named by api_key_env (e.g. api_key_env: OPENAI_API_KEY)"
    )
