"""The demo store: a merchant's web shop, served by the platform only in demo mode.

Its "server side" creates checkout sessions over HTTP with the secret key, exactly like a
merchant backend following the README's guide (same endpoint, same trusted fields); its
page loads the widget and calls ``orchestratePayment`` with the publishable key. Prices
come from the catalogue here, never from the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
from fastapi import APIRouter, Body
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from checkoutlab.demo.seed import CATALOGUE, RETURNING_CUSTOMERS
from checkoutlab.elements.i18n import format_money
from checkoutlab.errors import InvalidRequest

STATIC_DIR = Path(__file__).parent / "static"
_templates = Environment(
    loader=PackageLoader("checkoutlab.demo", "templates"), autoescape=select_autoescape()
)
_PRICES = {p["sku"]: p for p in CATALOGUE}
LOYALTY_BALANCE = 250


class CartLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str
    quantity: int = Field(ge=1, le=20)


class CartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CartLine] = Field(min_length=1, max_length=20)
    customer: str | None = Field(default=None, max_length=60)


def make_router(keys: dict[str, str], api_base: str) -> APIRouter:
    """``api_base`` is fixed by the operator: never derived from a request's Host header,
    which would let a forged Host receive the secret key."""
    router = APIRouter(tags=["demo store"], include_in_schema=False)

    @router.get("/demo", response_class=HTMLResponse)
    def store_page() -> HTMLResponse:
        products = [p | {"price": format_money(p["unit_amount"], "EUR", "en")} for p in CATALOGUE]
        html = _templates.get_template("store.html.j2").render(
            products=products,
            customers=list(RETURNING_CUSTOMERS),
            publishable_key=keys["publishable_key"],
        )
        return HTMLResponse(html)

    @router.post("/demo/checkout")
    def create_session(cart: Annotated[CartIn, Body()]) -> JSONResponse:
        """The merchant backend: price the cart, create the session with the secret key."""
        lines = []
        for line in cart.items:
            product = _PRICES.get(line.sku)
            if product is None:
                raise InvalidRequest(f"Unknown product {line.sku!r}", param="items")
            lines.append(
                {
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "name": product["name"],
                    "unit_amount": product["unit_amount"],
                }
            )
        body = {
            "amount": sum(item["unit_amount"] * item["quantity"] for item in lines),
            "currency": "EUR",
            "line_items": lines,
            "customer": cart.customer,
            "loyalty_balance": LOYALTY_BALANCE if cart.customer else 0,
        }
        with httpx.Client(base_url=api_base, timeout=10) as api:
            response = api.post(
                "/v1/checkout_sessions",
                json=body,
                headers={"Authorization": f"Bearer {keys['secret_key']}"},
            )
        if response.status_code != 201:
            return JSONResponse(response.json(), status_code=response.status_code)
        session = response.json()
        return JSONResponse(
            {
                "session_id": session["id"],
                "client_secret": session["client_secret"],
                "amount": session["amount"],
                "currency": session["currency"],
            },
            status_code=201,
        )

    return router


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
