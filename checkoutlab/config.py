"""Settings, read once from ``CHECKOUTLAB_*`` environment variables (or a ``.env`` file).

The defaults are the embedded ones of ``make demo``: SQLite and MLflow under ``var/``, the
sandbox gateway, a development signing secret. Outside development mode a default or short
secret is refused at start-up, so a production deployment cannot sign tokens with a key
that is printed in this file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# 32+ bytes even in development: PyJWT warns about shorter HS256 keys (RFC 7518 3.2)
DEV_SECRET = "dev-insecure-secret-change-me-outside-development"  # noqa: S105 - refused outside development
VAR_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUTLAB_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = f"sqlite:///{VAR_DIR}/checkoutlab.db"
    mlflow_tracking_uri: str = f"sqlite:///{VAR_DIR}/mlflow.db"
    secret_key: str = DEV_SECRET
    session_ttl_seconds: int = Field(default=30 * 60, gt=0, le=24 * 3600)
    gateway: Literal["sandbox", "stripe", "adyen"] = Field(
        default="sandbox",
        description="the gateway of merchants whose configuration names none",
    )
    risk_scorer: Literal["champion", "rules"] = Field(
        default="champion",
        description="champion: the MLflow fraud-scorer@champion model (rules scorer, marked "
        "degraded, while none is available); rules: the rules scorer only",
    )
    champion_poll_seconds: float = Field(default=30.0, gt=0)
    feature_sync_seconds: float = Field(default=2.0, gt=0)
    bandit_staleness_seconds: float = Field(default=5.0, gt=0, description="snapshot reload bound")
    retrain_interval_hours: float = Field(
        default=24.0, ge=0, description="worker's fraud retraining period; 0 disables it"
    )
    retrain_spec: str = Field(default="models/rf.yaml", description="spec the worker retrains")
    attribution_window_minutes: float = Field(
        default=30.0, gt=0, description="bandit reward window"
    )
    log_level: str = "INFO"
    # --- hardening (checkoutlab.api.security, .ratelimit, .cors; checkoutlab.merchants.audit)
    trust_proxy: bool = Field(
        default=False,
        description="honour X-Forwarded-Proto/-For from the reverse proxy (HSTS, client IP)",
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="larger bodies answer 413")
    rate_limit_enabled: bool = True
    rate_limit_storage: str = Field(
        default="memory://", description="limits storage URI, e.g. redis://127.0.0.1:6379"
    )
    rate_limit_per_key: str = Field(
        default="100/second", description="per publishable key on the public endpoints"
    )
    rate_limit_per_ip: str = Field(
        default="30/second", description="per client IP on the public endpoints"
    )
    dashboard_origin: str | None = Field(
        default=None,
        description="the dashboard's public origin (https://dashboard.example.com): POSTs must "
        "come from it; unset: this host, over https in production",
    )
    key_grace_hours: float = Field(
        default=24.0, ge=0, le=24 * 30, description="how long a rolled secret key stays valid"
    )
    # --- webhooks (checkoutlab.webhooks): provider secrets in, merchant deliveries out
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="signing secret (whsec_...) of the Stripe webhook endpoint"
    )
    stripe_webhook_tolerance_seconds: int = Field(default=300, gt=0)
    adyen_hmac_key: SecretStr | None = Field(
        default=None, description="HMAC key (hex) of the Adyen standard webhook"
    )
    webhook_max_attempts: int = Field(default=10, ge=1, le=50)
    webhook_backoff_base_seconds: float = Field(default=30.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    webhook_dispatch_interval_seconds: float = Field(default=2.0, gt=0)
    webhook_dispatch_in_api: bool = Field(
        default=False, description="also deliver merchant webhooks from API workers"
    )

    # --- gateways and routing (checkoutlab.payments.routing): platform credentials; each
    # merchant's configuration picks gateways, order and routing rules among those set up here
    stripe_api_key: SecretStr | None = Field(
        default=None, description="Stripe secret key (sk_...); unset: no Stripe gateway"
    )
    stripe_api_base: str | None = Field(
        default=None, description="Stripe API base URL override (a local test double)"
    )
    stripe_return_url: str | None = Field(
        default=None, description="3-D Secure return URL; unset: challenge in page (Stripe.js)"
    )
    adyen_api_key: SecretStr | None = Field(
        default=None, description="Adyen API key (X-API-Key); unset: no Adyen gateway"
    )
    adyen_merchant_account: str | None = None
    adyen_return_url: str | None = Field(default=None, description="3-D Secure redirect target")
    adyen_platform: Literal["test", "live"] = "test"
    adyen_live_endpoint_prefix: str | None = None
    adyen_api_base: str | None = Field(
        default=None, description="Adyen Checkout API base URL override (a local test double)"
    )
    gateway_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="upper bound of one gateway call"
    )
    confirm_budget_seconds: float = Field(
        default=15.0, gt=0, le=120, description="confirm answers within this, whatever gateways do"
    )
    breaker_failure_threshold: int = Field(
        default=5, ge=1, description="consecutive gateway failures that open its circuit breaker"
    )
    breaker_reset_seconds: float = Field(
        default=30.0, gt=0, description="how long an open breaker skips its gateway before a probe"
    )

    # --- operations (checkoutlab.observability; `checkoutlab serve`, `checkoutlab worker`)
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line, for log collectors"
    )
    api_workers: int = Field(
        default=1, ge=1, le=256, description="API worker processes of `checkoutlab serve`"
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, gt=0, description="on SIGTERM, how long in-flight requests may finish"
    )
    worker_healthcheck_seconds: int = Field(
        default=30,
        ge=1,
        description="a worker that does not answer its supervisor this long (starting up "
        "included) is replaced",
    )
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=100,
        description="PostgreSQL connections each process keeps open (above the concurrent "
        "requests of one API worker, so busy workers reuse rather than reopen connections)",
    )
    db_max_overflow: int = Field(
        default=10,
        ge=0,
        le=100,
        description="extra PostgreSQL connections opened (and closed) under peaks; a process "
        "holds at most pool size + overflow connections",
    )
    sqlite_checkpoint_seconds: float = Field(
        default=1.0,
        ge=0,
        description="SQLite: a background thread checkpoints the WAL this often, off the "
        "request path; 0 leaves it to SQLite's auto-checkpoint on commit",
    )
    metrics_enabled: bool = Field(default=True, description="serve Prometheus /metrics")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, /metrics needs 'Authorization: Bearer <token>'; required in "
        "production unless metrics are disabled",
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="`checkoutlab worker` serves /metrics here"
    )

    @field_validator("dashboard_origin")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value.strip())
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"CHECKOUTLAB_DASHBOARD_ORIGIN must be an origin like https://dash.example.com "
                f"(scheme, host and port only), got {value!r}"
            )
        return f"{parts.scheme}://{parts.netloc}".lower()

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment != "development" and (
            self.secret_key == DEV_SECRET or len(self.secret_key) < 32
        ):
            raise ValueError(
                "CHECKOUTLAB_SECRET_KEY must be set to a random value of at least 32 characters "
                "outside development; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        self.check_shared_rate_limit_storage(self.api_workers)
        if self.environment == "production" and self.metrics_enabled and not self.metrics_token:
            raise ValueError(
                "CHECKOUTLAB_METRICS_TOKEN must be set in production (scrape /metrics with "
                "'Authorization: Bearer <token>'), or turn /metrics off with "
                "CHECKOUTLAB_METRICS_ENABLED=false: it reveals traffic, merchants' experiments "
                "and model versions"
            )
        return self

    def check_shared_rate_limit_storage(self, workers: int) -> None:
        """Refuse per-process (``memory://``) rate-limit storage for several API workers
        outside development and test: each worker would count on its own, multiplying every
        limit (dashboard sign-in throttling included) by the number of workers."""
        if (
            self.environment not in ("development", "test")
            and workers > 1
            and self.rate_limit_storage.startswith("memory://")
        ):
            raise ValueError(
                f"CHECKOUTLAB_RATE_LIMIT_STORAGE is {self.rate_limit_storage!r} with {workers} "
                "API workers: each worker would keep its own counts. Set it to a shared "
                "storage, e.g. CHECKOUTLAB_RATE_LIMIT_STORAGE=redis://127.0.0.1:6379, or run "
                "one worker."
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
