"""Service settings, read from the environment (prefix ``MBC_``) by pydantic-settings.

Validated once at start-up: a bad value stops the process with a message that names it,
instead of failing on the first hook call.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MBC_", env_file=None, extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8080, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(1, ge=1, le=64, description="Uvicorn worker processes.")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")

    hook_deadline_seconds: float = Field(
        3.0, gt=0, le=60, description="One deadline per hook call for all FHIR fetches together."
    )
    fhir_connect_timeout_seconds: float = Field(
        1.0, gt=0, le=30, description="TCP/TLS connect timeout for each FHIR request."
    )
    fhir_max_pages: int = Field(
        20, ge=1, le=1000, description="Bundle pages followed per query (first page included)."
    )
    fhir_max_connections: int = Field(
        20, ge=1, le=500, description="Connections the shared FHIR client may open at once."
    )
    max_cards: int = Field(10, ge=1, le=100, description="Most cards returned by one hook call.")
    max_body_bytes: int = Field(
        20_000_000, ge=1_000, description="Largest hook request body accepted (bytes)."
    )
    feedback_db: str = Field("data/feedback.sqlite3", description="SQLite file that stores CDS Hooks feedback.")
    cors_origins: list[str] = Field(
        default_factory=lambda: ["https://sandbox.cds-hooks.org"],
        description="Browser origins allowed to call the service (CORS).",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return level


@lru_cache
def get_settings() -> Settings:
    return Settings()
