"""Request ids and structured logs: one checkout can be followed by the id the widget sends."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from datetime import timedelta

import pytest
from bandits.test_learner import Log  # tests/ is the import root (no __init__.py)

from checkoutlab.bandits.learner import Learner
from checkoutlab.db import utcnow
from checkoutlab.observability.logging import (
    JsonFormatter,
    TextFormatter,
    install_record_factory,
    logging_config,
)
from checkoutlab.observability.request_id import (
    MAX_LENGTH,
    bind_request_id,
    current_request_id,
    valid_request_id,
)


def _record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    install_record_factory()
    return logging.getLogger("checkoutlab.test").makeRecord(
        "checkoutlab.test",
        logging.INFO,
        __file__,
        1,
        message,
        args or ("world",),
        None,
        extra=extra,
    )


def test_client_request_id_is_echoed_and_attached_to_the_requests_log_lines(
    client, new_checkout, caplog
) -> None:
    caplog.set_level(logging.INFO)
    checkout = new_checkout()
    checkout.profile({"device": {"type": "desktop"}}, **{"X-Request-Id": "chk-7f3a.widget:1"})
    served = [r for r in caplog.records if r.name == "checkoutlab.profile.router"]
    assert len(served) == 1
    assert served[0].request_id == "chk-7f3a.widget:1"
    access = [r for r in caplog.records if r.name == "checkoutlab.access"]
    assert [r.request_id for r in access][-1] == "chk-7f3a.widget:1"
    assert access[-1].route == "/v1/payment_profile"
    response = client.get("/livez", headers={"X-Request-Id": "chk-7f3a.widget:1"})
    assert response.headers["X-Request-Id"] == "chk-7f3a.widget:1"
    assert current_request_id() is None  # nothing leaks out of the request


@pytest.mark.parametrize(
    "sent",
    [
        "x" * (MAX_LENGTH + 1),
        "has space",
        'quote"and{json}',
        "line\tbreak",
        "",
        "abc\n",  # "^...$" matches before a final newline
        "abc\r\n",
    ],
)
def test_an_unacceptable_client_id_is_replaced_not_refused(client, sent) -> None:
    response = client.get("/livez", headers={"X-Request-Id": sent})
    assert response.status_code == 200
    rid = response.headers["X-Request-Id"]
    assert rid != sent and rid.startswith("req_") and valid_request_id(rid) == rid


def test_a_trailing_newline_is_not_a_valid_request_id() -> None:
    assert valid_request_id("abc\n") is None
    assert valid_request_id("abc") == "abc"


def test_each_request_without_an_id_gets_its_own(client) -> None:
    ids = {client.get("/livez").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


def test_errors_carry_the_request_id_too(client) -> None:
    response = client.get("/v1/checkout_sessions/cs_nope", headers={"X-Request-Id": "r-401"})
    assert response.status_code == 401
    assert response.headers["X-Request-Id"] == "r-401"


def test_json_lines_have_time_level_logger_pid_message_and_request_id() -> None:
    with bind_request_id("req-json-1"):
        record = _record(decision_id="prof_1")
    line = JsonFormatter().format(record)
    parsed = json.loads(line)
    assert parsed["message"] == "hello world"
    assert parsed["level"] == "INFO"
    assert parsed["logger"] == "checkoutlab.test"
    assert parsed["request_id"] == "req-json-1"
    assert parsed["decision_id"] == "prof_1"
    assert isinstance(parsed["pid"], int)
    assert parsed["time"].endswith("Z")
    assert "\n" not in line


def test_text_lines_show_the_request_id_or_a_dash() -> None:
    with bind_request_id("req-text-1"):
        inside = TextFormatter().format(_record())
    outside = TextFormatter().format(_record())
    assert "[req-text-1] hello world" in inside
    assert "[-] hello world" in outside


def test_logging_config_routes_uvicorn_and_app_records_through_one_formatter() -> None:
    stream = io.StringIO()
    config = logging_config("json", "info")
    config["handlers"]["default"]["stream"] = stream
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(config)
        install_record_factory()
        with bind_request_id("req-cfg"):
            logging.getLogger("uvicorn.error").info("started")
            logging.getLogger("checkoutlab.x").info("served")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["request_id"]) for line in lines] == [
        ("uvicorn.error", "req-cfg"),
        ("checkoutlab.x", "req-cfg"),
    ]
    with pytest.raises(ValueError, match="log format"):
        logging_config("xml")  # type: ignore[arg-type]


def test_the_learner_logs_the_request_id_of_the_event_it_applies(
    database, make_merchant, caplog
) -> None:
    """Events that carry ``request_id`` (profile_served does) tag the learner's reward line."""
    caplog.set_level(logging.INFO, logger="checkoutlab.bandits.learner")
    config = {"ordering_policy": "thompson", "ordering_params": {"seed": 1}}
    log = Log(database, make_merchant("Traced", config).id, config)
    t0 = utcnow() - timedelta(hours=2)
    decision = log.serve(t0)
    with database.session() as db:
        log._event(db, "payment_succeeded", None, decision, t0, {"request_id": "chk-trace-9"})
        db.commit()
    Learner(database, now=t0 + timedelta(minutes=5)).run_once()
    rewards = [r for r in caplog.records if "reward" in r.getMessage()]
    assert [(r.request_id, r.decision_id) for r in rewards] == [("chk-trace-9", decision)]


def test_profile_served_events_store_the_request_id(client, new_checkout, database) -> None:
    from checkoutlab.events.service import read_since

    checkout = new_checkout()
    profile = checkout.profile(**{"X-Request-Id": "chk-event-1"})
    with database.session() as db:
        events = read_since(db=db, types=["profile_served"])
    assert [(e.decision_id, e.properties["request_id"]) for e in events] == [
        (profile["id"], "chk-event-1")
    ]


def test_payment_events_store_the_request_id_of_the_confirm(client, new_checkout, database) -> None:
    """Every server event is stamped in one place, so payment results carry it as well."""
    from checkoutlab.events.service import read_since

    checkout = new_checkout()
    token = checkout.profile()["token"]
    response = client.post(
        f"/v1/checkout_sessions/{checkout.id}/confirm",
        json={
            "client_secret": checkout.session["client_secret"],
            "profile_token": token,
            "payment_method": {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "cvc": "123",
                },
            },
        },
        headers=checkout.merchant.public_headers
        | {"Idempotency-Key": "trace", "X-Request-Id": "chk-pay-1"},
    )
    assert response.status_code == 200, response.text
    with database.session() as db:
        events = read_since(db=db, types=["payment_succeeded"])
    assert [e.properties.get("request_id") for e in events] == ["chk-pay-1"]


def test_httpx_request_lines_with_webhook_tokens_are_not_logged() -> None:
    """httpx logs each request's URL at INFO; a merchant's webhook URL carries its token."""
    stream = io.StringIO()
    config = logging_config("text", "info")
    config["handlers"]["default"]["stream"] = stream
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    try:
        logging.config.dictConfig(config)
        logging.getLogger("httpx").info("HTTP Request: POST https://shop.example/hook?token=s3cret")
        logging.getLogger("httpcore.connection").debug("connect_tcp.started host=shop.example")
        logging.getLogger("httpx").warning("retrying")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    out = stream.getvalue()
    assert "s3cret" not in out and "connect_tcp" not in out
    assert "retrying" in out


def test_logged_database_errors_do_not_show_statement_parameters(database, caplog) -> None:
    """api/errors.py logs unhandled errors with their message: no client secret in it."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from checkoutlab.api.errors import _log_unhandled

    secret = "cs_secret_do_not_log_0123456789"
    with database.engine.connect() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE t_hidden (id VARCHAR(40) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t_hidden (id) VALUES (:id)"), {"id": secret})
        with pytest.raises(IntegrityError) as duplicate:
            conn.execute(text("INSERT INTO t_hidden (id) VALUES (:id)"), {"id": secret})
        conn.rollback()
        with pytest.raises(DBAPIError) as missing:
            conn.execute(text("SELECT * FROM no_such_table WHERE x = :x"), {"x": secret})
        conn.rollback()
    for error in (duplicate.value, missing.value):
        assert "parameters hidden" in str(error) and secret not in str(error).split("\n[SQL")[1]
        # as api/errors.py logs it when it reaches the app (PostgreSQL's own DETAIL line
        # repeats the duplicate key's value, so that message is not logged either)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="checkoutlab.api.errors"):
            _log_unhandled(error)
        assert caplog.records and type(error).__name__ in caplog.text
        assert "test_logging.py" in caplog.text  # the traceback's frames are there
        assert secret not in caplog.text
