"""Which gateways a payment goes to, and failover between them within a time budget.

**Selection.** The merchant's configuration names gateways in failover order
(``gateways``) and CEL ``gateway_rules`` that pick another order for some payments (by
currency, country, amount, method, card brand); the first rule that matches wins, a rule
that cannot be evaluated does not apply. Credentials are platform settings, so a merchant
can name only gateways the platform has set up (:class:`GatewayPool`).

**Failover.** Gateways are tried in order. A hard decline (stolen card, insufficient
funds, ...) ends the payment: another gateway would only ask the same issuer again. A
retryable failure (timeout, connection error, 5xx, ``processing_error``, issuer
unavailable) moves to the next gateway, except when the gateway may have charged
(``GatewayResult.outcome_unknown``): that attempt is first reconciled with ``retrieve``
under the same idempotency key, and if the outcome stays unknown no other gateway is
tried, so a shopper is never charged twice.

**Time budget.** Every gateway call runs in a helper thread and is abandoned when its slice
of the remaining budget is spent (the adapter's own HTTP timeout is lowered to the slice
too), so confirm answers in time even when every gateway hangs. An abandoned call counts as
an unknown outcome and is reconciled like a timeout.

**Circuit breakers** (:mod:`checkoutlab.payments.breaker`) skip a gateway that keeps
failing; skipped gateways are recorded as attempts with result ``skipped``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import celpy
from celpy import celtypes
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from checkoutlab.config import Settings
from checkoutlab.db import utcnow
from checkoutlab.errors import CheckoutLabError, InvalidRequest, NotFound
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.observability.metrics import gateway_result, observe_gateway_attempt
from checkoutlab.payments.breaker import CircuitBreaker
from checkoutlab.payments.gateways import Gateway, get_gateway
from checkoutlab.payments.gateways.base import ActionOutcome, ChargeRequest, GatewayResult
from checkoutlab.payments.models import Payment, PaymentAttempt
from checkoutlab.profile.rules import _program  # the one CEL compile cache

__all__ = [
    "SANDBOX_ENVIRONMENTS",
    "TRANSPORT_CODES",
    "Budget",
    "GatewayPool",
    "RouteOutcome",
    "charge_with_failover",
    "check_route",
    "complete_action",
    "reconcile",
    "record_attempt",
    "select_route",
]

log = logging.getLogger(__name__)

TRANSPORT_CODES: Final = frozenset(
    {"gateway_timeout", "gateway_unavailable", "gateway_invalid_response"}
)
"""Failures of the gateway itself (not the issuer's answer): they count for its breaker."""

SANDBOX_ENVIRONMENTS: Final = frozenset({"development", "test"})
"""Where the sandbox gateway (no money moves) may be in the pool."""

_COMMIT_RESERVE: Final = 0.5  # seconds kept back from the budget to record the answer
_MIN_SLICE: Final = 0.2  # a gateway call shorter than this cannot succeed; don't start it
_ADAPTER_MARGIN: Final = 0.25  # seconds the adapter's own timeout ends before the wait

_UNKNOWN_MESSAGE: Final = (
    "The payment provider did not confirm this payment in time. Do not pay again yet: "
    "the payment's outcome is being reconciled with the provider."
)
_SKIPPED_MESSAGE: Final = "The payment provider is unavailable. Try again in a moment."
_NOT_FOUND: Final = GatewayResult(
    status="failed",
    decline_code="processing_error",
    message="The payment provider has no record of this payment; nothing was charged.",
    retryable=True,
)


class Budget:
    """The time a confirm may take, counted from when the request arrived.

    Examples
    --------
    >>> budget = Budget(15.0, clock=lambda: 100.0)
    >>> budget.remaining()
    15.0
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._deadline - self._clock())

    def slice(self, cap: float) -> float | None:
        """Seconds for the next gateway call: at most ``cap`` and half of what is left, so
        a call that times out still leaves time to reconcile it; None when too little."""
        usable = self.remaining() - _COMMIT_RESERVE
        seconds = min(cap, usable / 2 if usable > 2 * _MIN_SLICE else usable)
        return seconds if seconds >= _MIN_SLICE else None


class GatewayPool:
    """The gateways the platform has credentials for, with one breaker each, per process.

    Parameters
    ----------
    adapters
        Gateway name → adapter.
    default
        The gateway of merchants whose configuration names none (``CHECKOUTLAB_GATEWAY``).
    """

    def __init__(
        self,
        adapters: Mapping[str, Gateway],
        *,
        default: str,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        call_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if default not in adapters:
            raise ValueError(
                f"The default gateway {default!r} is not configured; set its credentials "
                f"(CHECKOUTLAB_{default.upper()}_API_KEY, ...) or choose another "
                "CHECKOUTLAB_GATEWAY."
            )
        self.adapters = dict(adapters)
        self.default = default
        self.call_timeout = call_timeout
        self.breakers = {
            name: CircuitBreaker(
                failure_threshold=failure_threshold, reset_seconds=reset_seconds, clock=clock
            )
            for name in self.adapters
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayPool:
        """Stripe and Adyen when their credentials are set; the sandbox in development and
        test only.

        The sandbox moves no money and takes raw card numbers server-side: in a production
        pool a provider outage would "succeed" on it. Merchant configuration cannot know the
        environment, so the pool is where it is left out (see :func:`check_route`).
        """
        adapters: dict[str, Gateway] = {}
        if settings.environment in SANDBOX_ENVIRONMENTS:
            adapters["sandbox"] = get_gateway("sandbox")
        elif settings.gateway == "sandbox":
            raise ValueError(
                "The sandbox gateway moves no money and is available in development and test "
                f"only (CHECKOUTLAB_ENVIRONMENT={settings.environment}): set "
                "CHECKOUTLAB_GATEWAY to stripe or adyen and its credentials."
            )
        timeout = settings.gateway_timeout_seconds
        if settings.stripe_api_key is not None:
            adapters["stripe"] = get_gateway(
                "stripe",
                api_key=settings.stripe_api_key,
                base_url=settings.stripe_api_base,
                return_url=settings.stripe_return_url,
                timeout=timeout,
                webhook_secret=settings.stripe_webhook_secret,
                webhook_tolerance=settings.stripe_webhook_tolerance_seconds,
            )
        if settings.adyen_api_key is not None:
            if not (settings.adyen_merchant_account and settings.adyen_return_url):
                raise ValueError(
                    "CHECKOUTLAB_ADYEN_API_KEY is set: also set "
                    "CHECKOUTLAB_ADYEN_MERCHANT_ACCOUNT and CHECKOUTLAB_ADYEN_RETURN_URL."
                )
            adapters["adyen"] = get_gateway(
                "adyen",
                api_key=settings.adyen_api_key,
                merchant_account=settings.adyen_merchant_account,
                return_url=settings.adyen_return_url,
                platform=settings.adyen_platform,
                live_endpoint_prefix=settings.adyen_live_endpoint_prefix,
                base_url=settings.adyen_api_base,
                timeout=timeout,
                hmac_key=settings.adyen_hmac_key,
            )
        return cls(
            adapters,
            default=settings.gateway,
            failure_threshold=settings.breaker_failure_threshold,
            reset_seconds=settings.breaker_reset_seconds,
            call_timeout=timeout,
        )

    def replacing(self, adapter: Gateway) -> GatewayPool:
        """This pool with ``adapter`` serving its name; breakers are shared.

        The app keeps its default gateway in ``app.state.gateway``, which tests and
        instrumentation wrap; routing must call that object, not a private copy.
        """
        pool = object.__new__(GatewayPool)
        pool.__dict__.update(self.__dict__)
        pool.adapters = {**self.adapters, adapter.name: adapter}
        return pool

    def get(self, name: str) -> Gateway | None:
        return self.adapters.get(name)

    def health(self) -> list[dict[str, Any]]:
        """Breaker state per configured gateway, for ``GET /v1/gateways/health``."""
        rows = []
        for name in sorted(self.adapters):
            snap = self.breakers[name].snapshot()
            rows.append(
                {
                    "gateway": name,
                    "default": name == self.default,
                    "state": snap.state,
                    "consecutive_failures": snap.consecutive_failures,
                    "failure_threshold": snap.failure_threshold,
                    "reset_seconds": snap.reset_seconds,
                    "retry_in_seconds": snap.retry_in_seconds,
                }
            )
        return rows


def check_route(names: list[str], pool: GatewayPool) -> None:
    """Refuse a route naming the sandbox where the platform runs without it (production).

    Dropping it silently would hide a configuration that, in development, fails over to a
    gateway that moves no money; a clear error tells the merchant what to change.
    """
    if "sandbox" in names and pool.get("sandbox") is None:
        raise InvalidRequest(
            "This merchant's gateway route names the sandbox, which moves no money and is "
            "available in development and test only. Remove 'sandbox' from the merchant's "
            "gateways and gateway_rules.",
            code="sandbox_gateway_not_allowed",
        )


def select_route(
    *, config: MerchantConfig, default: str, activation: dict[str, Any]
) -> tuple[list[str], int | None]:
    """(gateway names in failover order, index of the rule that chose them or None).

    ``activation`` is plain JSON (``amount``, ``method``, ``country``, ``card``).
    """
    if config.gateway_rules:
        cel_activation = celpy.json_to_cel(activation)
        for index, rule in enumerate(config.gateway_rules):
            try:
                result = _program(rule.when).evaluate(cel_activation)
            except celpy.CELEvalError as exc:
                log.info("gateway rule %d not evaluated: %s", index, exc)
                continue
            if isinstance(result, celtypes.BoolType) and bool(result):
                return list(rule.gateways), index
            if not isinstance(result, celtypes.BoolType):
                log.info("gateway rule %d not evaluated: not boolean (%r)", index, result)
    return list(config.gateways or [default]), None


@dataclass
class RouteOutcome:
    """How a payment's route ended: the result to apply and from which gateway."""

    result: GatewayResult
    gateway: str
    unavailable: bool = False  # every gateway failed or was skipped; nothing was charged
    unknown: bool = False  # the outcome at ``gateway`` could not be settled
    attempts: list[PaymentAttempt] = field(default_factory=list)


def record_attempt(
    *,
    db: Session,
    payment: Payment,
    gateway: str,
    number: int,
    operation: str,
    started_at: datetime,
    latency_ms: int,
    result: str,
    decline_code: str | None = None,
    retryable: bool = False,
    reconciled: bool = False,
    reference: str | None = None,
) -> PaymentAttempt:
    """Add one gateway call to the payment's attempts (committed with the payment).

    The single place attempts are written: gateway metrics hook in here.
    """
    attempt = PaymentAttempt(
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        gateway=gateway,
        attempt_number=number,
        operation=operation,
        started_at=started_at,
        latency_ms=latency_ms,
        result=result,
        decline_code=decline_code,
        retryable=retryable,
        reconciled=reconciled,
        gateway_reference=reference,
    )
    db.add(attempt)
    observe_gateway_attempt(
        gateway,
        gateway_result(result, retryable=retryable, decline_code=decline_code),
        latency_ms / 1000,
    )
    log.info(
        "payment %s attempt %d: %s %s → %s %s (%d ms)",
        payment.id,
        number,
        gateway,
        operation,
        result,
        decline_code or "",
        latency_ms,
    )
    return attempt


def _bounded_call(call: Callable[[], GatewayResult], timeout: float) -> GatewayResult | None:
    """``call()``'s result, or None when it has not answered within ``timeout``.

    The call runs in a daemon thread that is abandoned on timeout (the adapter's own HTTP
    timeout ends it soon after); exceptions are re-raised here.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    # copy_context: the SDK's own log lines keep the request id of the confirm
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name="gateway-call", daemon=True).start()
    if not done.wait(timeout):
        return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _is_transport_failure(result: GatewayResult) -> bool:
    return result.status == "failed" and (
        result.outcome_unknown or result.decline_code in TRANSPORT_CODES
    )


class _Attempts:
    """Numbers, times and records the calls of one payment's route."""

    def __init__(self, db: Session, payment: Payment, *, earlier: int = 0) -> None:
        self.db = db
        self.payment = payment
        self.earlier = earlier  # attempts recorded by an earlier request
        self.rows: list[PaymentAttempt] = []

    def call(
        self,
        gateway: Gateway,
        operation: str,
        send: Callable[[Gateway], GatewayResult],
        timeout: float,
        *,
        reconciled: bool = False,
    ) -> GatewayResult | None:
        """Run one bounded call; None (recorded as ``unknown``) when it did not answer."""
        started_at, start = utcnow(), time.monotonic()
        # The adapter's own timeouts end a little before the wait does, so that they, not
        # the abandoned wait, classify the failure: a connect timeout proves the request was
        # never sent (fail over), a read timeout does not (reconcile). The wait is the
        # backstop for calls that hang anywhere else. A wrapper that is no Gateway (test
        # instrumentation) is called as it is.
        own = max(_MIN_SLICE / 2, timeout - min(_ADAPTER_MARGIN, timeout * 0.2))
        bounded = gateway.with_timeout(own) if isinstance(gateway, Gateway) else gateway
        try:
            result = _bounded_call(lambda: send(bounded), timeout)
        except NotFound:
            if operation != "retrieve":
                raise
            # The gateway holds no payment under this reference: nothing was charged there.
            result = _NOT_FOUND
        except CheckoutLabError as exc:
            if operation != "retrieve":
                raise
            # A refused lookup settles nothing: the outcome stays unknown.
            log.warning("reconciling payment %s at %s failed: %s", self.payment.id, gateway, exc)
            result = None
        latency = int((time.monotonic() - start) * 1000)
        if result is None:
            self._record(gateway.name, operation, started_at, latency, "unknown", "gateway_timeout")
        else:
            definitive = not _is_transport_failure(result)
            self._record(
                gateway.name,
                operation,
                started_at,
                latency,
                "unknown" if result.outcome_unknown else result.status,
                result.decline_code,
                retryable=result.retryable,
                reconciled=reconciled and definitive,
                reference=result.reference,
            )
        return result

    def skipped(self, gateway: str, code: str, *, operation: str = "charge") -> None:
        self._record(gateway, operation, utcnow(), 0, "skipped", code, retryable=True)

    def _record(
        self,
        gateway: str,
        operation: str,
        started_at: datetime,
        latency_ms: int,
        result: str,
        decline_code: str | None,
        *,
        retryable: bool = True,
        reconciled: bool = False,
        reference: str | None = None,
    ) -> None:
        self.rows.append(
            record_attempt(
                db=self.db,
                payment=self.payment,
                gateway=gateway,
                number=self.earlier + len(self.rows) + 1,
                operation=operation,
                started_at=started_at,
                latency_ms=latency_ms,
                result=result,
                decline_code=decline_code,
                retryable=retryable,
                reconciled=reconciled,
                reference=reference,
            )
        )


def reconcile(
    *,
    db: Session,
    payment: Payment,
    request: ChargeRequest,
    gateway: Gateway,
    pool: GatewayPool,
    budget: Budget,
) -> GatewayResult | None:
    """Ask ``gateway`` again about a payment left with an unknown outcome.

    Its definitive answer, or None while the outcome is still unknown. The call is recorded
    as an attempt after the payment's earlier ones.
    """
    attempts = _Attempts(db, payment, earlier=_attempt_count(db, payment))
    settled = _retrieve(attempts, gateway, request, payment.gateway_reference, pool, budget)
    if settled is None or _is_transport_failure(settled):
        return None
    return settled


def _attempt_count(db: Session, payment: Payment) -> int:
    earlier = db.scalar(
        select(func.count())
        .select_from(PaymentAttempt)
        .where(PaymentAttempt.payment_id == payment.id)
    )
    return earlier or 0


def _retrieve(
    attempts: _Attempts,
    gateway: Gateway,
    request: ChargeRequest,
    reference: str | None,
    pool: GatewayPool,
    budget: Budget,
) -> GatewayResult | None:
    """One bounded, recorded ``retrieve``: the one reconciliation call of every path."""
    timeout = budget.slice(pool.call_timeout)
    if timeout is None:
        return None
    return attempts.call(
        gateway,
        "retrieve",
        lambda g: g.retrieve(request=request, reference=reference),
        timeout,
        reconciled=True,
    )


def _report(breaker: CircuitBreaker, result: GatewayResult | None) -> None:
    if result is None or _is_transport_failure(result):
        breaker.record_failure()
    else:
        breaker.record_success()


def _pending(settled: GatewayResult | None, reference: str | None) -> GatewayResult:
    return GatewayResult(
        status="processing",
        reference=(settled.reference if settled else None) or reference,
        decline_code="gateway_timeout",
        message=_UNKNOWN_MESSAGE,
        retryable=True,
    )


def complete_action(
    *,
    db: Session,
    payment: Payment,
    request: ChargeRequest,
    gateway: Gateway,
    pool: GatewayPool,
    budget: Budget,
    outcome: ActionOutcome | None = None,
    details: Mapping[str, Any] | None = None,
) -> RouteOutcome:
    """Finish a 3-D Secure challenge with a charge's safeguards.

    The completion can move money just like the charge, so it gets the same bookkeeping:
    the breaker, a call bounded by the budget, an attempt record, and an answer that leaves
    open whether the gateway acted (timeout, 5xx) is reconciled with ``retrieve`` before it
    is believed. If it stays unknown the outcome says so: the caller must not record it as
    a decline, or the shopper would pay again for a payment that went through.

    ``details`` (Adyen Web's ``onAdditionalDetails`` data) go to
    :meth:`Gateway.submit_action_details`; otherwise ``outcome`` to ``complete_action``.
    """

    def send(g: Gateway) -> GatewayResult:
        if details is not None:
            return g.submit_action_details(reference=reference, request=request, details=details)
        if outcome is None:
            raise InvalidRequest("Send outcome or details.", code="invalid_outcome")
        return g.complete_action(reference=reference, request=request, outcome=outcome)

    attempts = _Attempts(db, payment, earlier=_attempt_count(db, payment))
    breaker = pool.breakers[gateway.name]
    reference = payment.gateway_reference or ""
    timeout = budget.slice(pool.call_timeout)
    if timeout is None or not breaker.allow():
        code = "budget_exhausted" if timeout is None else "circuit_open"
        attempts.skipped(gateway.name, code, operation="complete")
        code = "gateway_timeout" if timeout is None else "gateway_unavailable"
        return RouteOutcome(
            _unavailable(code, reference), gateway.name, unavailable=True, attempts=attempts.rows
        )
    try:
        result = attempts.call(gateway, "complete", send, timeout)
    except CheckoutLabError:
        breaker.release()  # the caller's mistake says nothing about the gateway's health
        raise
    _report(breaker, result)
    if result is None or result.outcome_unknown:
        settled = _retrieve(attempts, gateway, request, reference, pool, budget)
        if settled is None or _is_transport_failure(settled):
            return RouteOutcome(
                _pending(settled, reference), gateway.name, unknown=True, attempts=attempts.rows
            )
        result = settled
    return RouteOutcome(result, gateway.name, attempts=attempts.rows)


def _unavailable(code: str, reference: str | None = None) -> GatewayResult:
    return GatewayResult(
        status="failed",
        reference=reference,
        decline_code=code,
        message=_SKIPPED_MESSAGE,
        retryable=True,
    )


def charge_with_failover(
    *,
    db: Session,
    payment: Payment,
    request: ChargeRequest,
    route: list[Gateway],
    pool: GatewayPool,
    budget: Budget,
) -> RouteOutcome:
    """Charge through ``route`` in order until one answers definitively; see the module doc."""
    attempts = _Attempts(db, payment)
    last: tuple[str, GatewayResult] | None = None
    declined: tuple[str, GatewayResult] | None = None  # the last issuer-side retryable decline
    for gateway in route:
        breaker = pool.breakers[gateway.name]
        timeout = budget.slice(pool.call_timeout)
        if timeout is None:
            attempts.skipped(gateway.name, "budget_exhausted")
            last = (gateway.name, _unavailable("gateway_timeout"))
            break
        if not breaker.allow():
            attempts.skipped(gateway.name, "circuit_open")
            last = (gateway.name, _unavailable("gateway_unavailable"))
            continue
        try:
            result = attempts.call(gateway, "charge", lambda g: g.charge(request), timeout)
        except CheckoutLabError:
            breaker.release()  # a refused request says nothing about the gateway's health
            raise
        _report(breaker, result)

        if result is None or result.outcome_unknown:
            # The gateway may have charged: settle that before anything else happens.
            reference = result.reference if result is not None else None
            settled = _retrieve(attempts, gateway, request, reference, pool, budget)
            if settled is None or _is_transport_failure(settled):
                pending = _pending(settled, reference)
                return RouteOutcome(pending, gateway.name, unknown=True, attempts=attempts.rows)
            result = settled

        if result.status != "failed" or not result.retryable:
            return RouteOutcome(result, gateway.name, attempts=attempts.rows)
        last = (gateway.name, result)
        if not _is_transport_failure(result):
            declined = (gateway.name, result)

    if declined is not None:
        # An issuer answered (processing_error, issuer unavailable): a card-level answer the
        # shopper can act on, more telling than another gateway's outage.
        return RouteOutcome(declined[1], declined[0], attempts=attempts.rows)
    if last is None:  # an empty route is refused before charging; keep the type honest
        last = (pool.default, _unavailable("gateway_unavailable"))
    name, result = last
    return RouteOutcome(result, name, unavailable=True, attempts=attempts.rows)
