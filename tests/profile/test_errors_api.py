"""Every 4xx has one shape, {"error": {type, code, message, param}}, saying what to fix."""

from __future__ import annotations

from typing import Any

import pytest

JSON = {"Content-Type": "application/json"}


def check_error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert isinstance(error["type"], str) and error["type"].endswith("_error")
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and len(error["message"]) > 15
    assert error["param"] is None or isinstance(error["param"], str)
    return error


@pytest.fixture
def secret(new_checkout) -> str:
    return new_checkout().session["client_secret"]


def profile_post(client, merchant, **kwargs: Any):
    headers = merchant.public_headers | kwargs.pop("headers", {})
    return client.post("/v1/payment_profile", headers=headers, **kwargs)


@pytest.mark.parametrize(
    "content", [b'{"client_secret": ', b"{bad json}", b"\xff\xfe", b"{'a': 1}"]
)
def test_bad_json(client, merchant, content: bytes) -> None:
    error = check_error(profile_post(client, merchant, content=content, headers=JSON), 400)
    assert error["code"] == "invalid_json"
    assert error["param"] is None
    assert "not valid JSON" in error["message"]
    assert "JSON object" in error["message"]


@pytest.mark.parametrize("content", [b"", b"[]", b'"text"', b"42"])
def test_body_that_is_not_an_object(client, merchant, content: bytes) -> None:
    error = check_error(profile_post(client, merchant, content=content, headers=JSON), 400)
    assert error["param"] is None
    assert "JSON object" in error["message"]
    assert "None" not in error["message"]


def test_form_encoded_body(client, merchant) -> None:
    response = profile_post(
        client,
        merchant,
        content=b"client_secret=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    error = check_error(response, 400)
    assert "application/json" in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "hint"),
    [
        ({"client_secret": 5}, "client_secret", "valid string"),
        ({"client_secret": "x", "context": []}, "context", "dictionary"),
        (
            {"client_secret": "x", "context": {"device": {"type": "watch"}}},
            "context.device.type",
            "'mobile', 'tablet' or 'desktop'",
        ),
        (
            {"client_secret": "x", "context": {"device": {"biometric": "maybe"}}},
            "context.device.biometric",
            "boolean",
        ),
        ({"client_secret": "x", "context": {"country": "Japan"}}, "context.country", "pattern"),
        ({"client_secret": "x", "surprise": 1}, "surprise", "not permitted"),
    ],
)
def test_wrong_types_name_the_parameter(client, merchant, body, param, hint) -> None:
    error = check_error(profile_post(client, merchant, json=body), 400)
    assert error["code"] == "parameter_invalid"
    assert error["param"] == param
    assert error["message"].startswith(f"Invalid value for {param}: ")
    assert hint in error["message"]


def test_missing_client_secret(client, merchant) -> None:
    error = check_error(profile_post(client, merchant, json={"context": {}}), 400)
    assert error["code"] == "parameter_missing"
    assert error["param"] == "client_secret"
    assert error["message"] == "Missing required parameter: client_secret"


@pytest.mark.parametrize("mangle", ["append", "other_session", "no_separator"])
def test_wrong_client_secret(client, merchant, new_checkout, secret, mangle) -> None:
    wrong = {
        "append": secret + "x",
        "other_session": "cs_0000_secret_" + secret.partition("_secret_")[2],
        "no_separator": "nope",
    }[mangle]
    error = check_error(profile_post(client, merchant, json={"client_secret": wrong}), 400)
    assert error["code"] == "invalid_client_secret"
    assert error["param"] == "client_secret"
    assert (
        "Pass the client_secret returned when your server created the session" in (error["message"])
    )


def test_client_secret_of_another_merchant(client, make_merchant, secret) -> None:
    other = make_merchant("Other Shop")
    error = check_error(profile_post(client, other, json={"client_secret": secret}), 400)
    assert error["code"] == "invalid_client_secret"


def test_unknown_route(client, merchant) -> None:
    error = check_error(client.get("/v1/no_such_thing", headers=merchant.public_headers), 404)
    assert error["code"] == "not_found"
    assert "GET /v1/no_such_thing" in error["message"]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_wrong_method(client, merchant, method: str) -> None:
    response = getattr(client, method)("/v1/payment_profile", headers=merchant.public_headers)
    error = check_error(response, 405)
    assert error["code"] == "method_not_allowed"
    assert method.upper() in error["message"]
    assert "use POST" in error["message"]
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_api_key"),
        ({"Authorization": "Basic abc"}, 401, "missing_api_key"),
        ({"Authorization": "Bearer pk_test_unknown"}, 401, "invalid_api_key"),
    ],
)
def test_missing_or_unknown_key(client, secret, headers, status, code) -> None:
    response = client.post("/v1/payment_profile", json={"client_secret": secret}, headers=headers)
    assert check_error(response, status)["code"] == code


def test_secret_key_on_a_browser_route(client, merchant, secret) -> None:
    response = client.post(
        "/v1/payment_profile", json={"client_secret": secret}, headers=merchant.secret_headers
    )
    assert check_error(response, 403)["code"] == "publishable_key_required"


def test_publishable_key_on_a_server_route(client, merchant) -> None:
    response = client.post(
        "/v1/checkout_sessions",
        json={"amount": 100, "currency": "EUR"},
        headers=merchant.public_headers,
    )
    assert check_error(response, 403)["code"] == "secret_key_required"


def test_elements_bad_requests(client, merchant) -> None:
    missing = check_error(
        client.post("/v1/elements", json={}, headers=merchant.public_headers), 400
    )
    assert missing["param"] == "token"
    invalid = check_error(
        client.post("/v1/elements", json={"token": "x.y.z"}, headers=merchant.public_headers), 400
    )
    assert invalid["code"] == "profile_token_invalid"
    assert "request a new profile" in invalid["message"]
