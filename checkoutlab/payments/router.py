from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from checkoutlab.deps import PublicMerchant, SecretMerchant, SessionDep, SettingsDep
from checkoutlab.errors import CheckoutLabError, InvalidRequest
from checkoutlab.merchants import service as merchants
from checkoutlab.payments import confirm as confirm_service
from checkoutlab.payments import idempotency, sessions
from checkoutlab.payments.routing import Budget, GatewayPool
from checkoutlab.payments.schemas import (
    ChallengeRequest,
    CheckoutSessionCreate,
    CheckoutSessionRead,
    ConfirmRequest,
    InventoryLevel,
    InventoryRead,
    InventoryUpdate,
)

router = APIRouter(tags=["checkout sessions"])

# Waiting for a concurrent request with the same Idempotency-Key: its own budget plus the
# time to store its answer.
_IDEMPOTENCY_WAIT_GRACE = 2.0


_POOL_LOCK = threading.Lock()


def _gateways(request: Request) -> GatewayPool:
    """The process's gateway pool, serving ``app.state.gateway`` under its own name.

    The app factory creates the pool at startup; an app built without one gets it here,
    once: under a lock, since two first requests racing would each build a pool with its
    own circuit breakers.
    """
    state = request.app.state
    pool = getattr(state, "gateway_pool", None)
    if pool is None:
        with _POOL_LOCK:
            pool = getattr(state, "gateway_pool", None)
            if pool is None:
                pool = state.gateway_pool = GatewayPool.from_settings(state.settings)
    return pool.replacing(state.gateway)


IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, description="one per payment attempt"),
]


@router.post("/v1/checkout_sessions", status_code=201, response_model=CheckoutSessionRead)
def create_checkout_session(
    body: CheckoutSessionCreate, merchant: SecretMerchant, db: SessionDep, settings: SettingsDep
) -> CheckoutSessionRead:
    """Create a session from your server (secret key); pass its client_secret to the browser."""
    checkout = sessions.create(
        db=db, merchant_id=merchant.id, data=body, default_ttl_seconds=settings.session_ttl_seconds
    )
    return sessions.read(db=db, checkout=checkout, include_secret=True)


@router.get("/v1/checkout_sessions/{session_id}", response_model=CheckoutSessionRead)
def get_checkout_session(
    session_id: str, merchant: SecretMerchant, db: SessionDep
) -> CheckoutSessionRead:
    """A session's status and its payments (secret key)."""
    checkout = sessions.get(db=db, merchant_id=merchant.id, session_id=session_id)
    return sessions.read(db=db, checkout=checkout)


@router.put("/v1/inventory", response_model=InventoryRead)
def put_inventory(body: InventoryUpdate, merchant: SecretMerchant, db: SessionDep) -> InventoryRead:
    """Set stock per SKU; SKUs never set are treated as untracked (always in stock)."""
    sessions.set_inventory(db=db, merchant_id=merchant.id, levels=body.items)
    return _inventory(db, merchant.id)


@router.get("/v1/inventory", response_model=InventoryRead)
def get_inventory(merchant: SecretMerchant, db: SessionDep) -> InventoryRead:
    return _inventory(db, merchant.id)


def _inventory(db: SessionDep, merchant_id: str) -> InventoryRead:
    stock = sessions.inventory(db=db, merchant_id=merchant_id)
    return InventoryRead(items=[InventoryLevel(sku=s, quantity=q) for s, q in stock.items()])


@router.post("/v1/checkout_sessions/{session_id}/confirm")
def confirm_checkout_session(
    session_id: str,
    body: ConfirmRequest,
    request: Request,
    merchant: PublicMerchant,
    db: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Pay the session with the method and verification steps the signed profile requires.

    Answers 200 with the payment (succeeded, requires_action or processing), 402 with a
    ``card_error`` when declined, 503 ``gateway_unavailable`` when no gateway could be
    reached (nothing charged) or ``gateway_timeout`` when the outcome is still being
    reconciled. The answer comes within ``confirm_budget_seconds``. Replaying the same
    Idempotency-Key and body returns the stored answer (a replay that arrives while the
    first is running waits for it); the same key with another body is 409.
    """
    budget = Budget(settings.confirm_budget_seconds)
    if not idempotency_key:
        raise InvalidRequest(
            "Send an Idempotency-Key header (a fresh random value per payment attempt, "
            "the same value when retrying after a network error).",
            code="idempotency_key_missing",
            param="Idempotency-Key",
        )
    request_hash = idempotency.fingerprint(
        {"session": session_id, "body": body.model_dump()}, secret=settings.secret_key
    )
    claimed = idempotency.claim(
        db=db,
        merchant_id=merchant.id,
        key=idempotency_key,
        request_hash=request_hash,
        wait_seconds=settings.confirm_budget_seconds + _IDEMPOTENCY_WAIT_GRACE,
        # a claim older than any confirm can run was left by a crashed request: take it over
        # (the rerun reconciles its payment under the same gateway key)
        stale_after_seconds=settings.confirm_budget_seconds + _IDEMPOTENCY_WAIT_GRACE,
    )
    if isinstance(claimed, idempotency.StoredResponse):
        headers = {"Idempotent-Replayed": "true"} | _retry_after(claimed.status_code)
        return JSONResponse(claimed.body, status_code=claimed.status_code, headers=headers)
    try:
        status, payload = confirm_service.confirm(
            db=db,
            merchant=merchant,
            session_id=session_id,
            body=body,
            secret=settings.secret_key,
            gateways=_gateways(request),
            idempotency_key=idempotency_key,
            budget=budget,
        )
    except CheckoutLabError as exc:
        db.rollback()
        status, payload = exc.status_code, exc.to_dict()
    except Exception:
        idempotency.release(db=db, record_id=claimed)
        raise
    if status == 503 or _error_code(payload) == "payment_in_progress":
        # Not an answer to replay: the outcome is being reconciled (or nothing was charged,
        # or another payment of the session was still running). The retry with this key runs
        # again and, deriving the same gateway key, settles the payment this request started
        # instead of charging again.
        idempotency.release(db=db, record_id=claimed)
    else:
        idempotency.complete(db=db, record_id=claimed, status_code=status, body=payload)
    return JSONResponse(payload, status_code=status, headers=_retry_after(status))


def _error_code(payload: dict[str, Any]) -> str | None:
    error = payload.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _retry_after(status: int) -> dict[str, str]:
    return {"Retry-After": "2"} if status == 503 else {}


@router.post("/v1/checkout_sessions/{session_id}/payments/{payment_id}/challenge")
def complete_challenge(
    session_id: str,
    payment_id: str,
    body: ChallengeRequest,
    request: Request,
    merchant: PublicMerchant,
    db: SessionDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Finish a payment that answered ``requires_action`` (the 3-D Secure challenge).

    Answers like confirm: 503 ``gateway_timeout`` (the payment stays ``processing``) when
    the gateway's answer was lost and could not be reconciled yet; never a decline then.
    """
    status, payload = confirm_service.complete_challenge(
        db=db,
        merchant=merchant,
        session_id=session_id,
        payment_id=payment_id,
        body=body,
        gateways=_gateways(request),
        budget=Budget(settings.confirm_budget_seconds),
    )
    return JSONResponse(payload, status_code=status, headers=_retry_after(status))


@router.get("/v1/gateways/health", tags=["gateways"])
def gateways_health(request: Request, merchant: SecretMerchant) -> dict[str, object]:
    """Circuit-breaker state of each gateway the platform has set up (this worker's view).

    ``open``: the gateway failed repeatedly and is skipped until ``retry_in_seconds`` pass;
    ``half_open``: one payment is probing it. Also your configured route.
    """
    pool = _gateways(request)
    config = merchants.config_of(merchant)
    return {
        "object": "gateway_health",
        "data": pool.health(),
        "route": list(config.gateways or [pool.default]),
        "gateway_rules": len(config.gateway_rules),
    }
