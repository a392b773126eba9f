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
  and every POST must come from this origin (``Origin``, else ``Referer``): the
  ``CHECKOUTLAB_DASHBOARD_ORIGIN`` setting, else this host over https in production. The login form,
  which has no session yet, uses a double-submit token in a short-lived cookie.
- **Throttling**: sign-in attempts are counted per account and per client address with the
  ``limits`` library (the storage of ``CHECKOUTLAB_RATE_LIMIT_STORAGE``, so workers share it;
  ``memory://`` is refused outside development and test with more than one API worker)
  *before* the password is verified, and a success clears the account's count. At most
  :data:`MAX_CONCURRENT_VERIFICATIONS` argon2 verifications run at once per process; a
  sign-in that waits longer than :data:`VERIFICATION_WAIT_SECONDS` answers 503 with
  ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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

from checkoutlab import deps
from checkoutlab.config import Settings
from checkoutlab.dashboard.models import DashboardSession, DashboardUser
from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import Conflict, InvalidRequest, NotFound
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


def _member(db: Session, merchant_id: str, email: str) -> DashboardUser:
    user = get_user(db=db, merchant_id=merchant_id, email=email)
    if user is None:
        raise NotFound(
            f"{normalize_email(email)} is not a dashboard user of {merchant_id}.",
            code="user_not_found",
            param="email",
        )
    return user


def _end_sessions(db: Session, user_id: str) -> int:
    # Explicitly, not through ON DELETE CASCADE: SQLite ignores it without
    # PRAGMA foreign_keys, which a connection made outside make_engine() lacks.
    result = db.execute(delete(DashboardSession).where(DashboardSession.user_id == user_id))
    return result.rowcount or 0


def remove_user(*, db: Session, merchant_id: str, email: str) -> int:
    """Remove a team member and end their sessions; returns how many were live."""
    user = _member(db, merchant_id, email)
    ended = _end_sessions(db, user.id)
    db.delete(user)
    db.commit()
    return ended


def set_password(*, db: Session, merchant_id: str, email: str, password: str) -> int:
    """A member's new password; every session of theirs ends (returns how many)."""
    user = _member(db, merchant_id, email)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    ended = _end_sessions(db, user.id)
    db.commit()
    return ended


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


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Secure in production and over HTTPS; a development/test server on http cannot be."""
    return settings.environment == "production" or deps.is_https(
        request.scope, trust_proxy=settings.trust_proxy
    )


def expected_origin(request: Request, settings: Settings) -> str:
    """The origin of the dashboard's own pages: ``CHECKOUTLAB_DASHBOARD_ORIGIN`` when set;
    else this host, over https in production (behind a TLS-terminating proxy without
    ``CHECKOUTLAB_TRUST_PROXY`` the request itself looks like plain http) and otherwise
    over the scheme the request arrived with."""
    if settings.dashboard_origin:
        return settings.dashboard_origin
    https = secure_cookies(request, settings)
    host = request.headers.get("host", "")
    return f"{'https' if https else 'http'}://{host}".lower()


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
    expected = expected_origin(request, settings)
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


# argon2 is CPU- and memory-hard on purpose (64 MiB a verification): a burst of sign-ins must
# not take every core of the worker. Process-wide, like the CPU it protects.
MAX_CONCURRENT_VERIFICATIONS = 2
VERIFICATION_WAIT_SECONDS = 1.0  # two members signing in together both get through
_verify_slots = threading.BoundedSemaphore(MAX_CONCURRENT_VERIFICATIONS)


def attempt_allowed(
    limiter: strategies.RateLimiter, *, merchant_id: str, email: str, address: str
) -> bool:
    """Count this sign-in attempt, before its password is verified; False when over a limit.

    Counting first (``hit`` is atomic in the storage), not testing first and recording the
    failure after the slow hash, so a concurrent burst cannot all pass the check before any
    of them is recorded. A success then clears the account's count (:func:`login_succeeded`).
    """
    return limiter.hit(
        ACCOUNT_FAILURES, "dashboard-login", "account", _account(merchant_id, email)
    ) and limiter.hit(ADDRESS_FAILURES, "dashboard-login", "address", address)


def login_succeeded(limiter: strategies.RateLimiter, *, merchant_id: str, email: str) -> None:
    """The member's own sign-ins never lock them out; the address keeps its count."""
    limiter.clear(ACCOUNT_FAILURES, "dashboard-login", "account", _account(merchant_id, email))


@contextmanager
def verification_slot() -> Iterator[bool]:
    """One of the few concurrent password verifications, or False when all stay taken for
    :data:`VERIFICATION_WAIT_SECONDS`."""
    acquired = _verify_slots.acquire(timeout=VERIFICATION_WAIT_SECONDS)
    try:
        yield acquired
    finally:
        if acquired:
            _verify_slots.release()
