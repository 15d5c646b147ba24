"""Backend and scorer options are checked against the constructor they go to, before it runs: a wrong type or an
unknown option is one UserError naming the config key (it used to be a TypeError traceback from inside)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cotbridge.backends import get_backend
from cotbridge.errors import UserError
from cotbridge.quality.scoring import build_scorers

LOCAL = {"base_url": "http://127.0.0.1:9/v1"}  # a local server: no API key needed, nothing is called


def openai(**options):
    return get_backend("openai", where="teacher.options", model="gpt-4o-mini", **LOCAL, **options)


def test_reference_error_rate_of_the_wrong_type_names_the_key():
    with pytest.raises(UserError, match=r"^teacher\.options\.error_rate: expected a number, got 'abc'$"):
        get_backend("reference", where="teacher.options", model="reference", error_rate="abc")
    with pytest.raises(UserError, match="error_rate: expected a number, got True"):  # YAML's true is no number
        get_backend("reference", where="teacher.options", model="reference", error_rate=True)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("concurrency", "abc", "a whole number"),
        ("concurrency", 2.5, "a whole number"),
        ("timeout_s", "abc", "a number"),
        ("max_retries", "abc", "a whole number"),
        ("endpoint_pause_s", "abc", "a number"),
        ("backoff_base_s", [1], "a number"),
        ("rpm", "abc", "a number or null"),
        ("tpm", "abc", "a number or null"),
        ("api_key_env", 123, "a string"),
    ],
)
def test_openai_options_of_the_wrong_type(key, value, expected):
    with pytest.raises(
        UserError, match=rf"^teacher\.options\.{key}: expected {expected}, got {value!r}".replace("[", r"\[")
    ):
        openai(**{key: value})


def test_a_wrong_item_inside_a_list_is_named_by_its_index():
    with pytest.raises(UserError, match=r"teacher\.options\.base_url\[1\]: expected a string, got 5"):
        get_backend("openai", where="teacher.options", model="m", base_url=["http://127.0.0.1:9/v1", 5])


def test_values_of_the_right_type_still_build():
    b = openai(timeout_s=5, rpm=None, tpm=600, concurrency=2, max_tokens_param="max_tokens")  # an int for a float
    assert b.timeout_s == 5 and b.token_param == "max_tokens"


def test_unknown_backend_option_lists_the_accepted_ones():
    with pytest.raises(
        UserError, match=r"teacher\.options\.error_rat: .*did you mean 'error_rate'.*known: error_rate"
    ):
        get_backend("reference", where="teacher.options", model="reference", error_rat=0.2)


def test_scorer_options_are_checked_before_the_scorer_is_built():
    with pytest.raises(UserError, match=r"^options\.flesch\.bogus: the flesch .* takes no options"):
        build_scorers(["flesch"], {"flesch": {"bogus": 1}})
    # lm_fluency would load a model: the check comes first, and names what it takes
    with pytest.raises(
        UserError, match=r"options\.lm_fluency\.modle: .*did you mean 'model'.*known: batch_size, model"
    ):
        build_scorers(["lm_fluency"], {"lm_fluency": {"modle": "x"}})
    with pytest.raises(UserError, match=r"options\.embedding_relevance\.batch_size: expected a whole number, got 'x'"):
        build_scorers(["embedding_relevance"], {"embedding_relevance": {"batch_size": "x"}})
    with pytest.raises(UserError, match=r"options\.judge\.reading: expected one of 'scale', 'yes_no', got 'maybe'"):
        build_scorers(["judge"], {"judge": {"reading": "maybe"}})


def test_judge_backend_options_are_checked_under_their_key():
    judge = {"backend": "openai", "model": "m", "options": {**LOCAL, "timeout_s": "abc"}}
    with pytest.raises(UserError, match=r"^options\.judge\.options\.timeout_s: expected a number, got 'abc'$"):
        build_scorers(["judge"], {"judge": judge})


def test_cli_says_it_in_one_line_with_exit_status_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cotbridge", "teach", "--set", "teacher.options.error_rate=abc"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: teacher.options.error_rate: expected a number, got 'abc'"


def test_lm_guided_reward_scorers_are_checked_under_their_config_key():
    from cotbridge.recipes.lm_guided.rewards import build_rewards
    from cotbridge.train.rl import RLConfig

    cfg = RLConfig(weights={"readability": 1.0}, scorer_options={"flesch": {"bogus": 1}})
    with pytest.raises(UserError, match=r"^rl\.scorer_options\.flesch\.bogus: the flesch .* takes no options"):
        build_rewards(cfg, {}, None, lambda x: x)
