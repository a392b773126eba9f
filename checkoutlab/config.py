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

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused outside development
VAR_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUTLAB_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = f"sqlite:///{VAR_DIR}/checkoutlab.db"
    mlflow_tracking_uri: str = f"sqlite:///{VAR_DIR}/mlflow.db"
    secret_key: str = DEV_SECRET
    session_ttl_seconds: int = Field(default=30 * 60, gt=0, le=24 * 3600)
    gateway: Literal["sandbox"] = "sandbox"
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
    key_grace_hours: float = Field(
        default=24.0, ge=0, le=24 * 30, description="how long a rolled secret key stays valid"
    )

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
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
