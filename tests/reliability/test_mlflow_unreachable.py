"""The MLflow model store unreachable: profiles are served degraded, payments go on, no 5xx.

A server process scores with ``risk_scorer=champion`` against a tracking server that is
first down (a closed port: connection refused), then blackholed (the port completes the
TCP handshake and never answers, as a hung proxy or a dropped route does). Under a few
threads of checkouts, every profile must be 200 from the rules scorer marked ``degraded``
with the conservative verification (CVC and address); a confirm that supplies those steps
is paid (after the 3-D Secure challenge when the profile asks for one), ``/readyz``
reports ``degraded`` but stays ready, and nothing answers 5xx.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx

from .conftest import confirm_body, create_merchant, free_port, migrated_database, server_env

REFUSED_SECONDS, BLACKHOLED_SECONDS = 2.0, 2.5


def _checkouts(base: str, merchant, stop: threading.Event, answers: list, errors: list) -> None:
    with httpx.Client(base_url=base, timeout=20) as client:
        while not stop.is_set():
            try:
                created = client.post(
                    "/v1/checkout_sessions",
                    json={"amount": 4200, "currency": "EUR"},
                    headers=merchant.secret_headers,
                )
                answers.append(("session", created.status_code, created.json()))
                if created.status_code != 201:
                    continue
                checkout = {"session": created.json()}
                profile = client.post(
                    "/v1/payment_profile",
                    json={"client_secret": checkout["session"]["client_secret"], "context": {}},
                    headers=merchant.public_headers,
                )
                answers.append(("profile", profile.status_code, profile.json()))
                if profile.status_code != 200:
                    continue
                checkout["profile"] = profile.json()
                body = confirm_body(checkout) | {
                    "verification": {
                        "cvv": "123",
                        "billing_address": {
                            "line1": "Damrak 1",
                            "postal_code": "1012 LG",
                            "country": "NL",
                        },
                    }
                }
                confirmed = client.post(
                    f"/v1/checkout_sessions/{checkout['session']['id']}/confirm",
                    json=body,
                    headers=merchant.public_headers | {"Idempotency-Key": str(uuid.uuid4())},
                )
                answers.append(("confirm", confirmed.status_code, confirmed.json()))
                payment = confirmed.json()
                if confirmed.status_code == 200 and payment["status"] == "requires_action":
                    challenged = client.post(
                        f"/v1/checkout_sessions/{checkout['session']['id']}/payments/"
                        f"{payment['id']}/challenge",
                        json={
                            "client_secret": checkout["session"]["client_secret"],
                            "outcome": "succeeded",
                        },
                        headers=merchant.public_headers,
                    )
                    answers.append(("challenge", challenged.status_code, challenged.json()))
            except (httpx.HTTPError, ValueError) as exc:  # no answer, or not JSON
                errors.append(repr(exc))


def test_mlflow_unreachable_profiles_are_degraded_and_nothing_5xx(tmp_path, start_server) -> None:
    port = free_port()  # nothing listens there: refused, until the sink below binds it
    mlflow_uri = f"http://127.0.0.1:{port}"
    sink = socket.socket()
    with sink, migrated_database("sqlite", tmp_path) as db_url:
        merchant = create_merchant(db_url)
        env = server_env(
            db_url,
            risk_scorer="champion",
            mlflow_tracking_uri=mlflow_uri,
            champion_poll_seconds="0.5",  # keeps knocking on the dead store during the load
        ) | {"MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        server = start_server(env)
        answers: list = []
        errors: list = []
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_checkouts, args=(server.base_url, merchant, stop, answers, errors)
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(REFUSED_SECONDS)
        sink.bind(("127.0.0.1", port))
        sink.listen(1024)  # never accept(): connects succeed, requests never get an answer
        time.sleep(BLACKHOLED_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)

    assert not errors, errors[:3]
    server_errors = [a for a in answers if a[1] >= 500]
    assert not server_errors, server_errors[:3]
    profiles = [body for kind, status, body in answers if kind == "profile" and status == 200]
    assert len(profiles) >= 10
    assert [a for a in answers if a[0] == "profile" and a[1] != 200] == []
    for profile in profiles:
        risk = profile["risk"]
        assert risk["degraded"] is True and risk["model"] == "rules", risk
        assert risk["level"] in ("elevated", "highest"), risk
        assert profile["verification"]["cvv"] and profile["verification"]["avs"], profile
    confirms = [(status, body) for kind, status, body in answers if kind == "confirm"]
    assert confirms and all(
        status == 200 and body["status"] in ("succeeded", "requires_action")
        for status, body in confirms
    ), confirms[:3]
    challenges = [(status, body) for kind, status, body in answers if kind == "challenge"]
    assert all(status == 200 and body["status"] == "succeeded" for status, body in challenges)
    paid = sum(body["status"] == "succeeded" for _, body in confirms + challenges)
    assert paid == len(confirms)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded", ready.json()
    assert ready.json()["checks"]["fraud_model"]["status"] == "missing", ready.json()
