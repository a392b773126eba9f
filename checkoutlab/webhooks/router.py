"""HTTP routes: provider webhooks in (signature-authenticated) and merchant endpoints (sk)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from checkoutlab.deps import SecretMerchant, SessionDep, SettingsDep
from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.webhooks import inbound, outbound
from checkoutlab.webhooks.schemas import (
    DeliveryList,
    EndpointCreate,
    EndpointCreated,
    EndpointDeleted,
    EndpointList,
    EndpointRead,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


async def _receive(
    provider: str, request: Request, db: SessionDep, settings: SettingsDep
) -> list[inbound.InboundResult]:
    # The raw bytes, before any JSON parsing: the signatures cover them exactly.
    payload = await request.body()
    gateway = inbound.webhook_gateway(provider, settings)
    try:
        events = await run_in_threadpool(gateway.parse_webhook, payload, dict(request.headers))
    except InvalidRequest as exc:
        log.warning("%s webhook refused: %s", provider, exc.code)
        raise
    results = await run_in_threadpool(inbound.handle, db=db, events=events)
    if any(r.outcome == "unmatched" for r in results):
        # A non-2xx makes the provider redeliver; by then the payment is usually known
        # (see checkoutlab.webhooks.inbound). Events of this delivery that were applied are
        # answered "duplicate" on redelivery.
        raise NotFound(
            "This event's payment is not known yet; deliver it again later.",
            code="payment_not_found_yet",
        )
    return results


@router.post("/v1/webhooks/stripe", include_in_schema=False)
async def stripe_webhook(request: Request, db: SessionDep, settings: SettingsDep) -> Any:
    """Stripe events; 400 on a bad ``Stripe-Signature``, 404 while an event's payment is
    not known yet (so Stripe redelivers it), 200 for anything else verified."""
    results = await _receive("stripe", request, db, settings)
    return {"received": True, "results": [r.outcome for r in results]}


@router.post("/v1/webhooks/adyen", include_in_schema=False)
async def adyen_webhook(request: Request, db: SessionDep, settings: SettingsDep) -> Any:
    """Adyen standard webhooks; answers ``[accepted]`` as Adyen's documentation asks (404
    while an event's payment is not known yet, so Adyen redelivers it)."""
    await _receive("adyen", request, db, settings)
    return PlainTextResponse("[accepted]")


@router.post("/v1/webhook_endpoints", response_model=EndpointCreated, status_code=201)
def create_endpoint(
    body: EndpointCreate, merchant: SecretMerchant, db: SessionDep, settings: SettingsDep
) -> EndpointCreated:
    """Register an endpoint. The signing secret is in this answer only: store it now."""
    endpoint, secret = outbound.create_endpoint(
        db=db,
        merchant_id=merchant.id,
        data=body,
        platform_secret=settings.secret_key,
        environment=settings.environment,
    )
    return EndpointCreated(**outbound.endpoint_read(endpoint).model_dump(), secret=secret)


@router.get("/v1/webhook_endpoints", response_model=EndpointList)
def list_endpoints(merchant: SecretMerchant, db: SessionDep) -> EndpointList:
    endpoints = outbound.list_endpoints(db=db, merchant_id=merchant.id)
    return EndpointList(data=[outbound.endpoint_read(e) for e in endpoints])


@router.get("/v1/webhook_endpoints/{endpoint_id}", response_model=EndpointRead)
def get_endpoint(endpoint_id: str, merchant: SecretMerchant, db: SessionDep) -> EndpointRead:
    endpoint = outbound.get_endpoint(db=db, merchant_id=merchant.id, endpoint_id=endpoint_id)
    return outbound.endpoint_read(endpoint)


@router.delete("/v1/webhook_endpoints/{endpoint_id}", response_model=EndpointDeleted)
def delete_endpoint(endpoint_id: str, merchant: SecretMerchant, db: SessionDep) -> EndpointDeleted:
    endpoint = outbound.delete_endpoint(db=db, merchant_id=merchant.id, endpoint_id=endpoint_id)
    return EndpointDeleted(id=endpoint.id)


@router.get("/v1/webhook_endpoints/{endpoint_id}/deliveries", response_model=DeliveryList)
def list_deliveries(
    endpoint_id: str,
    merchant: SecretMerchant,
    db: SessionDep,
    limit: int = Query(default=50, ge=1, le=500),
) -> DeliveryList:
    """Recent deliveries to one endpoint, newest first (to debug a receiver)."""
    outbound.get_endpoint(db=db, merchant_id=merchant.id, endpoint_id=endpoint_id)
    return DeliveryList(
        data=outbound.list_deliveries(
            db=db, merchant_id=merchant.id, endpoint_id=endpoint_id, limit=limit
        )
    )
