"""Service settings, read from the environment (prefix ``MBC_``) by pydantic-settings.

Validated once at start-up: a bad value stops the process with a message that names it,
instead of failing on the first hook call.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _loopback(host: str | None) -> bool:
    return host in {"localhost", "127.0.0.1", "::1"}


class TrustedIssuer(BaseModel):
    """One EHR allowed to call the service. Keys come only from these URLs or this static set,
    never from whatever ``jku`` a token names (the CRD RI flaw, peers.md)."""

    model_config = ConfigDict(extra="forbid")
    iss: str = Field(min_length=1, description="Exact `iss` claim value.")
    jku: list[str] = Field(default_factory=list, description="JWK Set URLs this issuer may name in `jku` (exact match).")
    jwks: dict[str, Any] | None = Field(None, description="Static JWK Set, for issuers whose jku is unreachable.")
    jwks_file: str | None = Field(None, description="Path of a static JWK Set file.")
    action_selection_behavior: bool = Field(
        False, description="This client's capability documentation says it supports suggestion.actionSelectionBehavior "
                           "(CDS Hooks 3.0 ballot: clients SHALL indicate it; services SHALL NOT use it otherwise).")

    @field_validator("jku")
    @classmethod
    def _https_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if not (parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname))) or not parts.hostname:
                raise ValueError(f"jku {url!r} must be an https URL (http only on localhost)")
        return urls

    @model_validator(mode="after")
    def _has_keys(self) -> "TrustedIssuer":
        if not (self.jku or self.jwks or self.jwks_file):
            raise ValueError(f"issuer {self.iss!r} needs jku, jwks or jwks_file")
        return self


class Settings(BaseSettings):
    # hide_input_in_errors: a start-up error must not print DATABASE_URL (password) or an issuer's keys.
    model_config = SettingsConfigDict(env_prefix="MBC_", env_file=None, extra="ignore", hide_input_in_errors=True)

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8080, ge=1, le=65535, description="Port to bind.")
    workers: int = Field(1, ge=1, le=64, description="Uvicorn worker processes.")
    shutdown_grace_seconds: int = Field(
        10, ge=0, le=300, description="On SIGTERM, time in-flight calls get to finish before connections are closed."
    )
    drain_seconds: float = Field(
        5, ge=0, le=300,
        description="On SIGTERM, how long /readyz answers 503 while calls are still accepted and answered, so a load "
        "balancer stops sending new ones first (set it above the balancer's check interval x fall count); 0 turns it off.",
    )
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
    fhir_retries: int = Field(
        2, ge=0, le=10,
        description="Retries of a FHIR GET after 408/429/5xx or a connection error, only while the deadline leaves time.",
    )
    fhir_backoff_seconds: float = Field(
        0.2, gt=0, le=10, description="Base of the exponential backoff between FHIR retries; a longer Retry-After wins."
    )
    fhir_max_response_bytes: int = Field(
        50_000_000, ge=1_000, description="Bytes read from one FHIR response; a larger page is dropped and reported."
    )
    fhir_max_resources: int = Field(
        20_000, ge=1, description="Resources kept per FHIR query (all pages); the rest is reported as not read."
    )
    max_prefetch_resources: int = Field(
        20_000, ge=1, description="Prefetch keys plus Bundle entries accepted in one hook request (413 above)."
    )
    max_draft_orders: int = Field(
        1_000, ge=1, description="context.draftOrders entries accepted in one order hook request (413 above)."
    )
    max_cards: int = Field(
        4, ge=1, le=100, description="Most patient-view cards: mbc-summary plus the most important others (card economy)."
    )
    max_detail_chars_per_card: int = Field(900, ge=200, le=20_000, description="Longest card detail, in characters.")
    max_detail_chars_per_answer: int = Field(
        2500, ge=500, le=100_000, description="Most detail characters in one patient-view answer."
    )
    max_body_bytes: int = Field(
        20_000_000, ge=1_000, description="Largest hook request body accepted (bytes)."
    )
    feedback_db: str = Field(
        "data/feedback.sqlite3", description="SQLite file for feedback and JWT ids, used when DATABASE_URL is unset."
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("database_url"),  # env DATABASE_URL exactly, without the MBC_ prefix
        description="PostgreSQL URL (postgresql://user:pass@host:5432/db) shared by all replicas; unset = SQLite.",
    )
    database_pool_size: int = Field(
        10, ge=1, le=100, description="PostgreSQL connections per worker process."
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["https://sandbox.cds-hooks.org"],
        description="Browser origins allowed to call the service (CORS).",
    )
    auth_required: bool = Field(
        True, description="Require a CDS Hooks JWT from a trusted issuer on discovery, service and feedback calls."
    )
    trusted_issuers: list[TrustedIssuer] = Field(
        default_factory=list, description='JSON list of {"iss", "jku": [...], "jwks" or "jwks_file"}.'
    )
    public_base_url: str | None = Field(
        None, description="External base URL (https://cds.example.org); expected JWT aud = base + path. Set it behind a proxy."
    )
    auth_leeway_seconds: int = Field(60, ge=0, le=300, description="Clock skew allowed on exp, iat and nbf.")
    auth_max_token_lifetime_seconds: int = Field(
        3600, ge=60, le=86_400, description="Tokens whose exp lies further ahead are refused (bounds the jti store)."
    )
    jwks_cache_seconds: float = Field(3600, gt=0, description="How long a fetched JWK Set is used before refetching.")
    jwks_refresh_interval_seconds: float = Field(
        60, ge=0, description="Least time between two fetches of one jku URL (an unknown kid refetches at most this often)."
    )
    jwks_timeout_seconds: float = Field(2.0, gt=0, le=10, description="Timeout of one JWK Set fetch.")

    # The timeline viewer (service/viewer, issue 14): a SMART on FHIR app served by the service.
    viewer_enabled: bool = Field(False, description="Serve the MBC timeline viewer under /viewer/ and link it from the summary card.")
    viewer_fhir_servers: list[str] = Field(
        default_factory=list, description="FHIR base URLs the viewer may launch against and read (exact match); nothing else is called."
    )
    viewer_client_id: str = Field("mbc-timeline-viewer", min_length=1, description="The viewer's client_id at the EHR's authorization server.")
    viewer_client_secret: SecretStr | None = Field(
        None, description="Client secret when the EHR registered the viewer as a confidential client; unset = public client (PKCE only)."
    )
    viewer_session_seconds: int = Field(
        3600, ge=60, le=43_200, description="Longest life of a viewer session; never longer than the access token's own expiry."
    )
    viewer_session_key: SecretStr | None = Field(
        None, description="Fernet key encrypting viewer sessions in the database; required with several workers or DATABASE_URL."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return level

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http(s) URL without query or fragment, e.g. https://cds.example.org")
        return value.strip().rstrip("/")

    @field_validator("viewer_fhir_servers")
    @classmethod
    def _viewer_servers(cls, urls: list[str]) -> list[str]:
        out = []
        for url in urls:
            parts = urlsplit(url.strip())
            if not (parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname))) or not parts.hostname \
                    or parts.query or parts.fragment:
                raise ValueError(f"viewer FHIR server {url!r} must be an https URL without query (http only on localhost)")
            out.append(url.strip().rstrip("/"))
        return out

    @field_validator("viewer_session_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from cryptography.fernet import Fernet

        try:
            Fernet(value.get_secret_value().strip())
        except ValueError:
            raise ValueError("must be a Fernet key: 32 url-safe base64-encoded bytes (Fernet.generate_key())") from None
        return value

    @model_validator(mode="after")
    def _viewer_key_shared(self) -> "Settings":
        # A key made at start-up differs per process: a session written by one worker could not be read by another.
        if self.viewer_enabled and self.viewer_session_key is None and (self.workers > 1 or self.database_url is not None):
            raise ValueError("MBC_VIEWER_SESSION_KEY is required when the viewer runs with several workers or DATABASE_URL")
        return self

    @field_validator("trusted_issuers")
    @classmethod
    def _unique_issuers(cls, issuers: list[TrustedIssuer]) -> list[TrustedIssuer]:
        names = [i.iss for i in issuers]
        if len(names) != len(set(names)):
            raise ValueError("each iss may appear only once")
        return issuers


@lru_cache
def get_settings() -> Settings:
    return Settings()
