"""The audit log: one append-only row per request authenticated by a secret key.

``deps.secret_merchant`` fills an :class:`AuditSlot` that
``checkoutlab.api.security.AuditMiddleware`` placed in the ASGI scope; the middleware writes
the row with the response status before the response leaves. Without that middleware (a
bare router in a test) the dependency writes the row itself, without a status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.merchants.models import AuditEntry

SCOPE_KEY = "checkoutlab.audit"


@dataclass
class AuditSlot:
    """Who made the request; filled once the secret key is recognised."""

    merchant_id: str | None = None
    key_id: str = ""
    key_last4: str = ""
    client_ip: str | None = None


def record(
    *,
    db: Session,
    merchant_id: str,
    key_id: str,
    key_last4: str,
    method: str,
    path: str,
    status_code: int | None,
    client_ip: str | None,
) -> AuditEntry:
    entry = AuditEntry(
        merchant_id=merchant_id,
        key_id=key_id,
        key_last4=key_last4,
        method=method[:10],
        path=path[:500],
        status_code=status_code,
        client_ip=(client_ip or None) and client_ip[:64],
    )
    db.add(entry)
    db.commit()
    return entry


def recent(
    *, db: Session, merchant_id: str, limit: int = 100, before: int | None = None
) -> list[AuditEntry]:
    """Newest first; ``before`` (an entry id) pages further back."""
    query = select(AuditEntry).where(AuditEntry.merchant_id == merchant_id)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(db.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


def as_dict(entry: AuditEntry) -> dict[str, object]:
    created: datetime = entry.created_at
    return {
        "object": "audit_entry",
        "id": entry.id,
        "key_id": entry.key_id,
        "key_last4": entry.key_last4,
        "method": entry.method,
        "path": entry.path,
        "status_code": entry.status_code,
        "client_ip": entry.client_ip,
        "created_at": created.isoformat(),
    }
