"""Secrets never reach disk: an option named like a secret, or a URL holding one (user:key@, ?api_key=), is refused
before anything is written; option names that only look alike (max_tokens_param) are not secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cotbridge.backends import get_backend
from cotbridge.backends.secrets import check_no_literal_secrets, is_secret_name, mask_url
from cotbridge.errors import UserError

KEY = "sk-test-SECRET123"


@pytest.mark.parametrize(
    "name",
    ["api_key", "apiKey", "access_token", "hf_token", "client_secret", "password", "key", "api_keys", "secrets"],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens_param", "max_tokens", "tokenizer", "api_key_env", "key_field", "monkey"])
def test_names_that_only_look_like_secrets(name):
    assert not is_secret_name(name)


def test_max_tokens_param_is_an_ordinary_option():
    check_no_literal_secrets({"max_tokens_param": "max_tokens"}, "teacher.options")
    b = get_backend("openai", model="m", base_url="http://127.0.0.1:9/v1", max_tokens_param="max_tokens")
    assert b.token_param == "max_tokens"


@pytest.mark.parametrize(
    "options, where",
    [
        ({"base_url": f"http://user:{KEY}@127.0.0.1:9/v1"}, "teacher.options.base_url"),
        ({"base_url": f"http://{KEY}@127.0.0.1:9/v1"}, "teacher.options.base_url"),
        (
            {"base_url": ["http://127.0.0.1:8/v1", f"http://127.0.0.1:9/v1?api_key={KEY}"]},
            "teacher.options.base_url[1]",
        ),
        ({"endpoints": [{"url": f"http://u:{KEY}@127.0.0.1:9/v1"}]}, "teacher.options.endpoints[0].url"),
    ],
)
def test_credentials_in_a_url_are_refused_and_not_echoed(options, where):
    with pytest.raises(UserError) as e:
        check_no_literal_secrets(options, "teacher.options")
    assert str(e.value).startswith(f"{where}: ") and "api_key_env" in str(e.value) and KEY not in str(e.value)
    with pytest.raises(UserError) as e:  # the backend itself refuses them too (callers that skip the check above)
        get_backend("openai", model="m", **options)
    assert KEY not in str(e.value)


def test_credentials_in_openai_base_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:9/v1?token={KEY}")
    with pytest.raises(UserError, match=r"^OPENAI_BASE_URL: http://127\.0\.0\.1:9/v1\?token=\*\*\* holds credentials"):
        get_backend("openai", model="m")


def test_mask_url():
    assert (
        mask_url(f"http://user:{KEY}@h:9/v1?api-version=1&key={KEY}") == "http://user:***@h:9/v1?api-version=1&key=***"
    )


def test_a_key_in_base_url_reaches_no_file(tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotbridge",
            "teach",
            "--teacher",
            "openai",
            "--teacher-model",
            "gpt-4o-mini",
            "--limit",
            "2",
            "--run-dir",
            str(run_dir),
            "--set",
            f"cache={cache}",
            "--set",
            f"teacher.options.base_url=http://user:{KEY}@127.0.0.1:9/v1",
            "--set",
            "teacher.options.max_retries=0",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OPENAI_API_KEY": KEY},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "teacher.options.base_url: http://user:***@127.0.0.1:9/v1 holds credentials" in done.stderr
    assert KEY not in done.stderr + done.stdout
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []


@pytest.mark.parametrize(
    "command,config",
    [
        ("run", "name: x\nteacher: {backend: openai, model: m, options: {base_url: 'http://u:KEY@127.0.0.1:9/v1'}}\n"),
        ("run", "name: x\nteacher: {backend: openai, model: m, options: {api_key: KEY}}\n"),
        (
            "lmguided",
            "name: x\nlarge: {backend: openai, model: m, options: {base_url: 'http://u:KEY@127.0.0.1:9/v1'}}\n",
        ),
    ],
)
def test_a_recipe_refuses_a_key_before_its_run_directory_records_the_config(tmp_path, command, config):
    """The recipes write config.yaml before any stage builds a backend: the check is on the config as it is read."""
    path = tmp_path / "cfg.yaml"
    path.write_text(config.replace("KEY", KEY))
    done = subprocess.run(
        [sys.executable, "-m", "cotbridge", command, str(path), "--set", f"run_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and KEY not in done.stderr, done.stderr
    said = "holds credentials" in done.stderr or "secrets come from the environment" in done.stderr
    assert said and ".options." in done.stderr and not (tmp_path / "run").exists()
