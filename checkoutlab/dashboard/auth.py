"""Team members, passwords, login sessions, throttling and CSRF for the dashboard.

- **Passwords** are hashed with argon2id (argon2-cffi's defaults, rehashed on login when those
  defaults grow). A login for an unknown e-mail still verifies against a dummy hash, so the
  answer takes as long as a wrong password and does not reveal who has an account.
- **Sessions** are rows keyed by the SHA-256 of a random cookie token; they expire after
  :data:`SESSION_LIFETIME` and logging out deletes the row, on every worker at once.
- **Cookies** are ``HttpOnly`` and ``SameSite=Lax``. They are ``Secure`` and take the
  ``__Host-`` prefix (bound to this host, path ``/``, never set by a subdomain) in production
  and whenever the request arrived over HTTPS; only a development or test server reached over
  plain http gets a cookie without them, since browsers drop Secure cookies on http.
- **CSRF**: every form carries the session's token, compared with :func:`hmac.compare_digest`,
  and every POST must come from this origin (``Origin``, else ``Referer``). The login form,
  which has no session yet, uses a double-submit token in a short-lived cookie.
- **Throttling**: failed logins are counted per account and per client address with the
  ``limits`` library (the storage of ``CHECKOUTLAB_RATE_LIMIT_STORAGE``, so workers share it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import RateLimitItem, parse, storage, strategies
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import Request

from checkoutlab.config import Settings
from checkoutlab.dashboard.models import DashboardSession, DashboardUser
from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import Conflict, InvalidRequest
from checkoutlab.merchants import service as merchants

SESSION_LIFETIME = timedelta(hours=8)
LOGIN_TOKEN_LIFETIME_SECONDS = 3600
MIN_PASSWORD_LENGTH = 12
COOKIE = "checkoutlab_dashboard"
LOGIN_COOKIE = "checkoutlab_dashboard_login"
# Per account: slows guessing one member's password; per address: slows spraying many.
ACCOUNT_FAILURES: RateLimitItem = parse("10/15 minutes")
ADDRESS_FAILURES: RateLimitItem = parse("50/15 minutes")

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# --------------------------------------------------------------------------------------------
# Team members
# --------------------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _check_email(email: str) -> str:
    email = normalize_email(email)
    local, at, domain = email.partition("@")
    if not (at and local and "." in domain and len(email) <= 254 and " " not in email):
        raise InvalidRequest(f"{email!r} is not an e-mail address.", param="email")
    return email


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters.",
            param="password",
        )


def add_user(*, db: Session, merchant_id: str, email: str, password: str) -> DashboardUser:
    """A new team member of ``merchant_id`` (409 if the e-mail is already a member)."""
    merchants.get(db=db, merchant_id=merchant_id)
    email = _check_email(email)
    _check_password(password)
    user = DashboardUser(
        id=new_id("usr"),
        merchant_id=merchant_id,
        email=email,
        password_hash=_hasher.hash(password),
        created_at=utcnow(),
    )
    db.add(user)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise Conflict(
            f"{email} is already a dashboard user of {merchant_id}.",
            code="user_exists",
            param="email",
        ) from exc
    return user


def get_user(*, db: Session, merchant_id: str, email: str) -> DashboardUser | None:
    return db.scalar(
        select(DashboardUser).where(
            DashboardUser.merchant_id == merchant_id,
            DashboardUser.email == normalize_email(email),
        )
    )


def authenticate(
    *, db: Session, merchant_id: str, email: str, password: str
) -> DashboardUser | None:
    """The member whose password this is, or None; as slow for unknown e-mails as for known."""
    user = get_user(db=db, merchant_id=merchant_id, email=email) if merchant_id else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:  # the dummy hash's password is random: never reached in practice
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    db.commit()
    return user


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Login:
    """The signed-in member of a request."""

    session_id: str
    user_id: str
    merchant_id: str
    email: str
    csrf_token: str
    expires_at: datetime


def start_session(*, db: Session, user: DashboardUser) -> str:
    """Store a new session for ``user``; returns the cookie token (shown nowhere else)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.execute(  # housekeeping: this member's expired sessions
        delete(DashboardSession).where(
            DashboardSession.user_id == user.id, DashboardSession.expires_at <= now
        )
    )
    db.add(
        DashboardSession(
            id=_digest(token),
            user_id=user.id,
            merchant_id=user.merchant_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    db.commit()
    return token


def session_for(*, db: Session, token: str | None) -> Login | None:
    """The live session of a cookie token; None for a missing, unknown or expired one."""
    if not token or len(token) > 200:
        return None
    row = db.execute(
        select(DashboardSession, DashboardUser.email)
        .join(DashboardUser, DashboardUser.id == DashboardSession.user_id)
        .where(DashboardSession.id == _digest(token))
    ).first()
    if row is None:
        return None
    session, email = row
    if session.expires_at <= utcnow():
        return None
    return Login(
        session.id,
        session.user_id,
        session.merchant_id,
        email,
        session.csrf_token,
        session.expires_at,
    )


def end_session(*, db: Session, session_id: str) -> None:
    db.execute(delete(DashboardSession).where(DashboardSession.id == session_id))
    db.commit()


# --------------------------------------------------------------------------------------------
# Cookies, CSRF, origin
# --------------------------------------------------------------------------------------------


def is_https(request: Request, settings: Settings) -> bool:
    """Whether the browser reached us over TLS; behind a TLS-terminating proxy that is known
    only from ``X-Forwarded-Proto``, trusted with ``CHECKOUTLAB_TRUST_PROXY`` (as for HSTS)."""
    if request.url.scheme == "https":
        return True
    if settings.trust_proxy:
        proto = request.headers.get("x-forwarded-proto", "")
        return proto.split(",")[0].strip().lower() == "https"
    return False


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Secure in production and over HTTPS; a development/test server on http cannot be."""
    return settings.environment == "production" or is_https(request, settings)


def cookie_name(base: str, *, secure: bool) -> str:
    return f"__Host-{base}" if secure else base


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time equality of two tokens; a missing one never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a POST comes from a page of this site: ``Origin``, or else ``Referer``.

    SameSite=Lax already keeps the cookie off cross-site POSTs in current browsers; this is
    the second, independent check (OWASP), and a request with neither header is refused.
    """
    https = is_https(request, settings)
    host = request.headers.get("host", "")
    expected = f"{'https' if https else 'http'}://{host}".lower()
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return hmac.compare_digest(origin.lower().encode(), expected.encode())
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        given = f"{parts.scheme}://{parts.netloc}".lower()
        return hmac.compare_digest(given.encode(), expected.encode())
    return False


# --------------------------------------------------------------------------------------------
# Throttling
# --------------------------------------------------------------------------------------------


def make_limiter(settings: Settings) -> strategies.MovingWindowRateLimiter:
    """One per app (kept on ``app.state``): in memory by default, shared with a Redis URI."""
    return strategies.MovingWindowRateLimiter(
        storage.storage_from_string(settings.rate_limit_storage)
    )


def _account(merchant_id: str, email: str) -> str:
    # hashed: the limiter's storage (maybe a shared Redis) never holds e-mail addresses
    return hashlib.sha256(f"{merchant_id}:{normalize_email(email)}".encode()).hexdigest()[:32]


def login_allowed(
    limiter: strategies.RateLimiter, *, merchant_id: str, email: str, address: str
) -> bool:
    return limiter.test(
        ACCOUNT_FAILURES, "dashboard-login", "account", _account(merchant_id, email)
    ) and limiter.test(ADDRESS_FAILURES, "dashboard-login", "address", address)


def record_failure(
    limiter: strategies.RateLimiter, *, merchant_id: str, email: str, address: str
) -> None:
    limiter.hit(ACCOUNT_FAILURES, "dashboard-login", "account", _account(merchant_id, email))
    limiter.hit(ADDRESS_FAILURES, "dashboard-login", "address", address)
