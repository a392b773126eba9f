"""Gateway selection (CEL rules), failover, reconciliation, breakers and the time budget,
against scripted in-process gateways (the HTTP path with the real SDKs is in
``test_gateway_routing_api.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from checkoutlab.errors import InvalidRequest
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.payments.gateways.base import ChargeRequest, Gateway, GatewayResult
from checkoutlab.payments.models import Payment, PaymentAttempt
from checkoutlab.payments.routing import (
    Budget,
    GatewayPool,
    charge_with_failover,
    check_route,
    select_route,
)

# --- selection ------------------------------------------------------------------------------

CONFIG = MerchantConfig.model_validate(
    {
        "gateways": ["stripe", "sandbox"],
        "gateway_rules": [
            {"when": "amount.currency == 'USD' && amount.value >= 100000", "gateways": ["adyen"]},
            {"when": "country == 'NL'", "gateways": ["adyen", "stripe"]},
            {"when": "card.brand == 'amex'", "gateways": ["sandbox"]},
            {"when": "method == 'ideal'", "gateways": ["sandbox"]},
        ],
    }
)


def activation(value: int = 2500, currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    return {"amount": {"value": value, "currency": currency}, "method": "card"} | extra


@pytest.mark.parametrize(
    ("context", "route", "rule"),
    [
        (activation(), ["stripe", "sandbox"], None),
        (activation(150000, "USD"), ["adyen"], 0),
        (activation(99999, "USD"), ["stripe", "sandbox"], None),
        (activation(country="NL"), ["adyen", "stripe"], 1),
        (activation(150000, "USD", country="NL"), ["adyen"], 0),  # first match wins
        (activation(card={"brand": "amex"}), ["sandbox"], 2),
        (activation() | {"method": "ideal"}, ["sandbox"], 3),
    ],
    ids=["default", "usd-large", "usd-small", "country", "first-wins", "brand", "method"],
)
def test_rules_choose_the_route(context: dict[str, Any], route: list[str], rule: int | None):
    assert select_route(config=CONFIG, default="sandbox", activation=context) == (route, rule)


def test_a_rule_reading_a_missing_field_does_not_apply() -> None:
    # no country, no card: rules 1 and 2 cannot be evaluated and are skipped, not errors
    assert select_route(config=CONFIG, default="sandbox", activation=activation()) == (
        ["stripe", "sandbox"],
        None,
    )


def test_no_configuration_uses_the_platform_default() -> None:
    assert select_route(config=MerchantConfig(), default="stripe", activation=activation()) == (
        ["stripe"],
        None,
    )


def test_routes_are_validated_when_saved() -> None:
    with pytest.raises(ValueError, match="only once"):
        MerchantConfig.model_validate({"gateways": ["stripe", "stripe"]})
    with pytest.raises(ValueError, match="line 1, column"):
        MerchantConfig.model_validate({"gateway_rules": [{"when": "amount >", "gateways": ["a"]}]})
    with pytest.raises(ValueError):
        MerchantConfig.model_validate({"gateways": ["paypal"]})
    with pytest.raises(ValueError):
        MerchantConfig.model_validate({"gateway_rules": [{"when": "true", "gateways": []}]})


# --- scripted gateways ----------------------------------------------------------------------

SUCCEEDED = GatewayResult(status="succeeded", reference="ref_ok")
STOLEN = GatewayResult(status="failed", decline_code="stolen_card", message="Declined.")
PROCESSING_ERROR = GatewayResult(
    status="failed", decline_code="processing_error", message="Try again.", retryable=True
)
REFUSED_CONNECTION = GatewayResult(
    status="failed", decline_code="gateway_unavailable", message="Down.", retryable=True
)
HTTP_500 = GatewayResult(
    status="failed",
    decline_code="gateway_unavailable",
    message="Down.",
    retryable=True,
    outcome_unknown=True,
)


class Scripted(Gateway):
    """Answers charges from a script; "hang" and "charge_then_hang" never answer.

    ``retrieve`` answers the stored outcome of the key when the gateway charged it, else
    ``on_retrieve`` (a result, or "hang").
    """

    def __init__(
        self, name: str, script: list[Any], *, on_retrieve: Any = None, release=None
    ) -> None:
        self.name = name
        self.script = list(script)
        self.on_retrieve = on_retrieve
        self.calls: list[str] = []
        self.charged: dict[str, GatewayResult] = {}
        self.release = release or threading.Event()

    def tokenize_card(self, card: Any) -> Any:
        raise NotImplementedError

    def complete_action(self, **kwargs: Any) -> GatewayResult:
        raise NotImplementedError

    def charge(self, request: ChargeRequest) -> GatewayResult:
        self.calls.append("charge")
        step = self.script.pop(0) if self.script else SUCCEEDED
        if step == "charge_then_hang":
            self.charged[request.idempotency_key] = SUCCEEDED
            step = "hang"
        if step == "hang":
            self.release.wait(30)
            return REFUSED_CONNECTION
        if step.status == "succeeded":
            self.charged[request.idempotency_key] = step
        return step

    def retrieve(self, *, request: ChargeRequest, reference: str | None = None) -> GatewayResult:
        self.calls.append("retrieve")
        if request.idempotency_key in self.charged:
            return self.charged[request.idempotency_key]
        if self.on_retrieve == "hang":
            self.release.wait(30)
            return REFUSED_CONNECTION
        return self.on_retrieve or PROCESSING_ERROR


class FakeDb:
    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, obj: Any) -> None:
        self.added.append(obj)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # wake the abandoned "hanging" calls


def run(
    route: list[Scripted], *, budget: float = 10.0, pool: GatewayPool | None = None
) -> tuple[Any, list[PaymentAttempt]]:
    pool = pool or GatewayPool({g.name: g for g in route}, default=route[0].name)
    db = FakeDb()
    payment = Payment(id="pay_1", merchant_id="mer_1")
    request = ChargeRequest(
        amount=2500, currency="EUR", payment_method="pm_card_visa", idempotency_key="cl_key"
    )
    outcome = charge_with_failover(
        db=db,  # type: ignore[arg-type]
        payment=payment,
        request=request,
        route=route,
        pool=pool,
        budget=Budget(budget),
    )
    assert outcome.attempts == db.added
    return outcome, db.added


def summary(attempts: list[PaymentAttempt]) -> list[tuple[Any, ...]]:
    return [
        (a.attempt_number, a.gateway, a.operation, a.result, a.decline_code, a.reconciled)
        for a in attempts
    ]


# --- failover -------------------------------------------------------------------------------


def test_hard_decline_stops_the_route() -> None:
    first, second = Scripted("a", [STOLEN]), Scripted("b", [])
    outcome, attempts = run([first, second])
    assert outcome.result.decline_code == "stolen_card" and outcome.gateway == "a"
    assert not (outcome.unavailable or outcome.unknown)
    assert second.calls == []
    assert summary(attempts) == [(1, "a", "charge", "failed", "stolen_card", False)]
    assert attempts[0].retryable is False and attempts[0].latency_ms >= 0


def test_retryable_decline_moves_to_the_next_gateway() -> None:
    first, second = Scripted("a", [PROCESSING_ERROR]), Scripted("b", [])
    outcome, attempts = run([first, second])
    assert outcome.result.status == "succeeded" and outcome.gateway == "b"
    assert summary(attempts) == [
        (1, "a", "charge", "failed", "processing_error", False),
        (2, "b", "charge", "succeeded", None, False),
    ]
    assert first.calls == ["charge"]  # a definitive answer needs no reconciliation


def test_connection_refused_moves_on_without_reconciling() -> None:
    first, second = Scripted("a", [REFUSED_CONNECTION]), Scripted("b", [])
    outcome, _ = run([first, second])
    assert outcome.gateway == "b" and outcome.result.status == "succeeded"
    assert first.calls == ["charge"]


def test_unknown_outcome_that_charged_is_reconciled_and_not_charged_again(release) -> None:
    first = Scripted("a", ["charge_then_hang"], release=release)
    second = Scripted("b", [])
    started = time.monotonic()
    outcome, attempts = run([first, second], budget=3)
    assert time.monotonic() - started < 3
    assert outcome.result.status == "succeeded" and outcome.gateway == "a"
    assert second.calls == [], "a second gateway was charged while the first had charged"
    assert len(first.charged) == 1
    assert summary(attempts) == [
        (1, "a", "charge", "unknown", "gateway_timeout", False),
        (2, "a", "retrieve", "succeeded", None, True),
    ]


def test_unknown_outcome_reconciled_as_not_charged_fails_over() -> None:
    first = Scripted("a", [HTTP_500], on_retrieve=PROCESSING_ERROR)
    second = Scripted("b", [])
    outcome, attempts = run([first, second])
    assert first.calls == ["charge", "retrieve"]
    assert outcome.gateway == "b" and outcome.result.status == "succeeded"
    assert [a.result for a in attempts] == ["unknown", "failed", "succeeded"]
    assert attempts[1].reconciled is True


def test_every_gateway_hanging_answers_within_the_budget(release) -> None:
    gateways = [Scripted(n, ["hang"], on_retrieve="hang", release=release) for n in "ab"]
    started = time.monotonic()
    outcome, attempts = run(gateways, budget=2)
    elapsed = time.monotonic() - started
    assert elapsed < 2, elapsed
    # a may have charged and could not be reconciled: b must not be tried
    assert outcome.unknown and outcome.gateway == "a"
    assert outcome.result.status == "processing"
    assert gateways[1].calls == []
    assert [(a.operation, a.result) for a in attempts] == [
        ("charge", "unknown"),
        ("retrieve", "unknown"),
    ]


def test_all_gateways_unavailable_is_not_a_decline() -> None:
    outcome, attempts = run([Scripted(n, [REFUSED_CONNECTION]) for n in "ab"])
    assert outcome.unavailable and not outcome.unknown
    assert outcome.result.status == "failed" and outcome.result.retryable
    assert [a.decline_code for a in attempts] == ["gateway_unavailable"] * 2


def test_issuer_retryable_decline_is_reported_over_a_later_outage() -> None:
    outcome, _ = run([Scripted("a", [PROCESSING_ERROR]), Scripted("b", [REFUSED_CONNECTION])])
    assert not outcome.unavailable
    assert outcome.result.decline_code == "processing_error" and outcome.gateway == "a"


def test_open_breaker_skips_the_gateway_until_it_may_probe() -> None:
    now = [0.0]
    first = Scripted("a", [REFUSED_CONNECTION, REFUSED_CONNECTION])
    second = Scripted("b", [])
    pool = GatewayPool(
        {"a": first, "b": second},
        default="a",
        failure_threshold=2,
        reset_seconds=30,
        clock=lambda: now[0],
    )
    run([first, second], pool=pool)
    run([first, second], pool=pool)
    assert pool.health()[0] | {"retry_in_seconds": None} == {
        "gateway": "a",
        "default": True,
        "state": "open",
        "consecutive_failures": 2,
        "failure_threshold": 2,
        "reset_seconds": 30.0,
        "retry_in_seconds": None,
    }
    outcome, attempts = run([first, second], pool=pool)
    assert first.calls == ["charge", "charge"]  # skipped the third time
    assert outcome.gateway == "b"
    assert summary(attempts)[0] == (1, "a", "charge", "skipped", "circuit_open", False)

    now[0] = 30.0  # the probe goes to a, which answers again: closed
    outcome, _ = run([first, second], pool=pool)
    assert outcome.gateway == "a" and first.calls == ["charge"] * 3
    assert pool.health()[0]["state"] == "closed"


def test_declines_do_not_open_the_breaker() -> None:
    gateway = Scripted("a", [STOLEN] * 10)
    pool = GatewayPool({"a": gateway}, default="a", failure_threshold=2)
    for _ in range(10):
        run([gateway], pool=pool)
    assert pool.health()[0]["state"] == "closed"


def test_exhausted_budget_starts_no_call() -> None:
    gateway = Scripted("a", [])
    outcome, attempts = run([gateway], budget=0.3)
    assert gateway.calls == []
    assert outcome.unavailable
    assert summary(attempts) == [(1, "a", "charge", "skipped", "budget_exhausted", False)]


def test_budget_slices_leave_room_to_reconcile() -> None:
    now = [0.0]
    budget = Budget(15, clock=lambda: now[0])
    assert budget.slice(10) == pytest.approx(7.25)  # half of what is left after the reserve
    now[0] = 14.0
    assert budget.slice(10) == pytest.approx(0.25)
    now[0] = 14.7
    assert budget.slice(10) is None


def test_pool_refuses_an_unconfigured_default() -> None:
    with pytest.raises(ValueError, match="CHECKOUTLAB_STRIPE_API_KEY"):
        GatewayPool({"sandbox": Scripted("sandbox", [])}, default="stripe")


class Refusing(Scripted):
    """A gateway that refuses the request itself (an InvalidRequest), as Stripe does for
    an invalid parameter."""

    def charge(self, request: ChargeRequest) -> GatewayResult:
        self.calls.append("charge")
        raise InvalidRequest("Stripe refused the request: bad parameter")


def test_a_probe_refused_as_invalid_hands_its_slot_back() -> None:
    now = [0.0]
    gateway = Refusing("a", [])
    pool = GatewayPool(
        {"a": gateway}, default="a", failure_threshold=1, reset_seconds=30, clock=lambda: now[0]
    )
    pool.breakers["a"].record_failure()
    now[0] = 30.0
    with pytest.raises(InvalidRequest):
        run([gateway], pool=pool)  # the half-open probe
    assert pool.breakers["a"].allow(), "the next caller must be allowed to probe"


def test_a_5xx_is_reconciled_before_failing_over() -> None:
    first, second = Scripted("a", [HTTP_500], on_retrieve=HTTP_500), Scripted("b", [])
    outcome, attempts = run([first, second])
    assert outcome.unknown and second.calls == []
    assert [a.operation for a in attempts] == ["charge", "retrieve"]


def test_production_pool_has_no_sandbox(settings: Any) -> None:
    production = settings.model_copy(
        update={
            "environment": "production",
            "stripe_api_key": SecretStr("sk_test_x"),
            "gateway": "stripe",
        }
    )
    pool = GatewayPool.from_settings(production)
    assert pool.get("sandbox") is None and pool.get("stripe") is not None
    with pytest.raises(InvalidRequest) as info:
        check_route(["stripe", "sandbox"], pool)
    assert info.value.code == "sandbox_gateway_not_allowed"
    check_route(["stripe"], pool)  # fine

    with pytest.raises(ValueError, match="development and test only"):
        GatewayPool.from_settings(production.model_copy(update={"gateway": "sandbox"}))


@pytest.mark.parametrize("environment", ["development", "test"])
def test_sandbox_is_in_development_and_test_pools(settings: Any, environment: str) -> None:
    pool = GatewayPool.from_settings(settings.model_copy(update={"environment": environment}))
    assert pool.get("sandbox") is not None
    check_route(["sandbox"], pool)


class ConnectTimingOut(Scripted):
    """Hangs at connect until its own (adapter) timeout, then says "never sent", as the
    Stripe and Adyen adapters do for a connect timeout."""

    def with_timeout(self, seconds: float) -> Gateway:
        self.own_timeout = seconds
        return self

    def charge(self, request: ChargeRequest) -> GatewayResult:
        self.calls.append("charge")
        time.sleep(self.own_timeout)
        return REFUSED_CONNECTION


def test_a_connect_timeout_is_classified_by_the_adapter_and_fails_over() -> None:
    """The adapter's timeout ends before the routing's wait, so a connect timeout (never
    sent) fails over instead of being taken for an abandoned, maybe-charged call."""
    first, second = ConnectTimingOut("a", []), Scripted("b", [])
    pool = GatewayPool({"a": first, "b": second}, default="a", call_timeout=0.6)
    outcome, attempts = run([first, second], pool=pool)
    assert first.own_timeout < 0.6
    assert outcome.gateway == "b" and not outcome.unknown
    assert summary(attempts)[0][3] == "failed"  # not "unknown"
