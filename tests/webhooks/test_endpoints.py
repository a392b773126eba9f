"""Merchant webhook endpoints: the secret-key API and URL validation (SSRF)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpcore
import httpx
import pytest
from fastapi.testclient import TestClient

from checkoutlab.errors import InvalidRequest
from checkoutlab.webhooks import outbound
from checkoutlab.webhooks.outbound import PinnedNetworkBackend, pinned_transport, validate_url

PUBLIC_IP = "93.184.215.14"  # an IP literal resolves without DNS, so this runs offline


def _create(client: TestClient, owner: Any, **body: Any) -> Any:
    body = {"url": "https://shop.example/hooks"} | body
    return client.post("/v1/webhook_endpoints", json=body, headers=owner.secret_headers)


def test_secret_is_shown_once_and_never_listed(client: TestClient, merchant: Any) -> None:
    created = _create(client, merchant, enabled_events=["payment.succeeded", "dispute.created"])
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) > 40
    assert endpoint["secret_last4"] == endpoint["secret"][-4:]
    assert endpoint["enabled_events"] == ["payment.succeeded", "dispute.created"]

    listed = client.get("/v1/webhook_endpoints", headers=merchant.secret_headers).json()
    assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
    one = client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=merchant.secret_headers)
    assert endpoint["secret"] not in listed.__repr__() + one.text

    other = _create(client, merchant).json()
    assert other["secret"] != endpoint["secret"]


def test_delete_stops_listing_the_endpoint(client: TestClient, merchant: Any) -> None:
    endpoint = _create(client, merchant).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    deleted = client.delete(path, headers=merchant.secret_headers)
    assert deleted.json() == {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
    assert client.get(path, headers=merchant.secret_headers).status_code == 404
    listed = client.get("/v1/webhook_endpoints", headers=merchant.secret_headers).json()
    assert listed["data"] == []


def test_another_merchants_endpoint_is_not_found(
    client: TestClient, make_merchant: Callable[..., Any]
) -> None:
    alice, bob = make_merchant("Alice"), make_merchant("Bob")
    endpoint = _create(client, alice).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    assert client.get(path, headers=bob.secret_headers).status_code == 404
    assert client.delete(path, headers=bob.secret_headers).status_code == 404
    assert client.get(f"{path}/deliveries", headers=bob.secret_headers).status_code == 404
    assert client.get("/v1/webhook_endpoints", headers=bob.secret_headers).json()["data"] == []
    assert client.get(path, headers=alice.secret_headers).status_code == 200


def test_endpoints_need_the_secret_key(client: TestClient, merchant: Any) -> None:
    response = client.post(
        "/v1/webhook_endpoints",
        json={"url": "https://shop.example/hooks"},
        headers=merchant.public_headers,
    )
    assert response.status_code == 403
    assert client.get("/v1/webhook_endpoints").status_code == 401


def test_bad_bodies_are_refused(client: TestClient, merchant: Any) -> None:
    unknown = _create(client, merchant, enabled_events=["payment.exploded"])
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"].startswith("enabled_events")
    assert _create(client, merchant, enabled_events=[]).status_code == 400
    assert _create(client, merchant, url="ftp://shop.example/x").status_code == 400
    refused = _create(client, merchant, url="https://user:pw@shop.example/x")
    assert refused.json()["error"]["code"] == "invalid_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.0.0.5/hooks",
        "https://192.168.1.1/hooks",
        "https://172.16.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://100.64.0.1/hooks",  # carrier-grade NAT
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://[fd00::1]/hooks",
        "https://0.0.0.0/hooks",
    ],
)
def test_production_refuses_private_and_loopback_addresses(url: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_url(url, environment="production")
    assert info.value.param == "url"


def test_production_requires_https_and_accepts_public_hosts() -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_url(f"http://{PUBLIC_IP}/hooks", environment="production")
    assert info.value.code == "insecure_url"
    assert validate_url(f"https://{PUBLIC_IP}/hooks", environment="production")


def test_development_and_test_allow_a_local_receiver() -> None:
    for environment in ("development", "test"):
        assert validate_url("http://127.0.0.1:9000/hooks", environment=environment)


@pytest.mark.parametrize("port", [8443, 22, 6379])
def test_production_allows_only_port_443(port: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_url(f"https://{PUBLIC_IP}:{port}/hooks", environment="production")
    assert info.value.code == "url_not_allowed"
    assert validate_url(f"https://{PUBLIC_IP}:443/hooks", environment="production")


# --- DNS rebinding: the transport connects to the address it checked ----------------------------


class _Recording(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connected.append((host, port))
        return object()


def _resolving(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """Make DNS answer ``answers`` in turn (a rebinding name changes its answer)."""
    asked: list[str] = []
    queue = list(answers)

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", getaddrinfo)
    return asked


def test_pinned_backend_connects_to_the_checked_address_not_a_new_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the first lookup is public; a second one would answer the metadata address
    asked = _resolving(monkeypatch, [PUBLIC_IP], ["169.254.169.254"])
    inner = _Recording()
    backend = PinnedNetworkBackend(strict=True, inner=inner)
    backend.connect_tcp("rebind.example", 443, timeout=1)
    assert inner.connected == [(PUBLIC_IP, 443)]  # an IP: the inner backend resolves nothing
    assert asked == ["rebind.example"]


def test_pinned_backend_refuses_private_answers_and_other_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _resolving(monkeypatch, ["127.0.0.1"])
    inner = _Recording()
    backend = PinnedNetworkBackend(strict=True, inner=inner)
    with pytest.raises(httpcore.ConnectError, match="not allowed"):
        backend.connect_tcp("rebind.example", 443)
    with pytest.raises(httpcore.ConnectError, match="port 8080"):
        backend.connect_tcp(PUBLIC_IP, 8080)
    assert inner.connected == []


def test_dispatcher_client_uses_the_pinned_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """An end-to-end send through httpx: the rebinding answer never gets a connection."""
    _resolving(monkeypatch, ["10.0.0.7"])
    client = httpx.Client(transport=pinned_transport(environment="production"))
    with pytest.raises(httpx.ConnectError, match="not allowed"):
        client.post("https://rebind.example/hooks", content=b"{}")
