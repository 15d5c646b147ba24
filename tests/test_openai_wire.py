"""The one OpenAI wire format (backends/openai_wire.py): what the client sends, the server reads back as the same
request, and what the server answers, the client reads back as the same completions."""

import json

import pytest

from cotbridge.backends import openai_requests as requests_in
from cotbridge.backends import openai_wire as wire
from cotbridge.backends.base import Completion, Request
from cotbridge.backends.fault_injection import MALFORMED_BODY


def over_the_wire(body: dict) -> dict:
    """A body as the other side reads it: encoded, sent, parsed."""
    return requests_in.parse_body(wire.json_bytes(body))


@pytest.mark.parametrize(
    "api, req, token_param",
    [
        (
            "chat",
            Request(messages=[{"role": "user", "content": "2+2? é"}], n=2, temperature=0.7, top_p=0.9, max_tokens=40),
            "max_completion_tokens",
        ),
        ("completions", Request(prompt="Q: 2+2?\nA:", n=3, temperature=0.5, max_tokens=20, stop=["\n"]), "max_tokens"),
    ],
)
def test_a_request_and_its_answer_survive_the_round_trip(api, req, token_param):
    req.seed = 7
    body = over_the_wire(wire.request_body(req, model="m", api=api, token_param=token_param))
    assert requests_in.check_model(body, "m", any_model=False) == "m"
    route = wire.ROUTES[api]
    (got,) = requests_in.parse_requests(route, body)
    for field in ("prompt", "messages", "n", "temperature", "top_p", "max_tokens", "stop", "seed"):
        assert getattr(got, field) == getattr(req, field), field

    made = [Completion(f"answer {j}\nmore", "length", 12, 5 + j) for j in range(req.n)]
    response = over_the_wire(wire.response_body(route, "m", [got], [made]))
    back = wire.completions_from_body(wire.parse_response(wire.json_bytes(response)), req.stop, 0.0)
    assert [c.text for c in back] == [c.text.split("\n")[0] if req.stop else c.text for c in made]
    assert [c.finish_reason for c in back] == ["stop" if req.stop else "length"] * req.n
    assert sum(c.completion_tokens for c in back) == sum(c.completion_tokens for c in made)
    assert sum(c.prompt_tokens for c in back) == 12  # one prompt, billed once, split over the choices
    assert response["usage"]["total_tokens"] == 12 + sum(c.completion_tokens for c in made)


def test_reasoning_and_cost_are_read_back():
    route = wire.ROUTES["chat"]
    made = [Completion("42", "stop", 10, 4, extra={"reasoning": "6*7"})]
    response = wire.response_body(route, "m", [Request(messages=[{"role": "user", "content": "q"}])], [made])
    (back,) = wire.completions_from_body(response, [], 0.5, cost=lambda p, c, named: (p + c) / 1000)
    assert back.extra == {"reasoning": "6*7", "cost_usd": 0.014} and back.latency_s == 0.5


def test_the_server_side_refuses_in_openai_shape():
    with pytest.raises(wire.BadRequest) as e:
        requests_in.check_model({"model": "other"}, "m", any_model=False)
    assert e.value.status == 404
    assert e.value.body()["error"] == {
        "message": "The model 'other' does not exist: this server serves 'm'",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    with pytest.raises(wire.BadRequest) as e:
        requests_in.check_parameters(
            wire.ROUTES["chat"], {"messages": [{"role": "user", "content": "q"}], "echo": True}
        )
    assert (e.value.status, e.value.param) == (400, "echo")  # the completions API's, not chat's
    assert wire.error_message(e.value.body()).startswith("unsupported parameter 'echo' for /chat/completions")


def test_a_malformed_body_is_malformed_to_the_client():
    with pytest.raises(wire.Malformed, match="invalid JSON"):
        wire.parse_response(MALFORMED_BODY)
    with pytest.raises(wire.Malformed, match="no list of choices"):
        wire.parse_response(json.dumps({"id": "x"}).encode())
