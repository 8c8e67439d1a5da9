"""docker-compose.yml cannot run here (no Docker): check its structure and that it matches the code."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from service.kit.cli import app as cli
from service.settings import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")  # ${VAR:-default}, as compose interpolates it when VAR is unset


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: DEFAULT.sub(lambda m: m.group(2), str(v)) for k, v in raw.items()}


def test_the_five_services_and_their_ports(services):
    assert set(services) == {"cds-hooks", "feedback-db", "hapi", "hapi-db", "loader"}
    assert services["cds-hooks"]["build"] == "." and "8080:8080" in services["cds-hooks"]["ports"]
    assert services["hapi"]["image"].startswith("hapiproject/hapi:v") and "8090:8080" in services["hapi"]["ports"]  # pinned, never :latest
    assert env(services["hapi"])["hapi.fhir.fhir_version"] == "R4"
    assert "ports" not in services["feedback-db"] and "ports" not in services["hapi-db"]  # internal only


def test_healthchecks_and_start_order(services):
    for name in ("cds-hooks", "feedback-db", "hapi-db"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["cds-hooks"]["healthcheck"]["test"])
    assert services["cds-hooks"]["depends_on"]["feedback-db"]["condition"] == "service_healthy"
    assert services["hapi"]["depends_on"]["hapi-db"]["condition"] == "service_healthy"
    assert services["loader"]["depends_on"]["hapi"]["condition"] == "service_started"  # HAPI's image has no shell


def test_every_mbc_variable_is_a_real_setting_and_valid(services, monkeypatch):
    fields = set(Settings.model_fields)
    prefix = Settings.model_config["env_prefix"]
    variables = env(services["cds-hooks"])
    mbc = {k: v for k, v in variables.items() if k.startswith(prefix)}
    assert mbc, "the service is configured through MBC_* variables"
    for name in mbc:
        assert name[len(prefix):].lower() in fields, f"{name} is not a field of service.settings.Settings"
    for name in list(os.environ):
        if name.startswith(prefix) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # the values validate as the container would read them
    # docker stop: SIGTERM, then SIGKILL after stop_grace_period; the drain and the grace must fit in it.
    assert settings.drain_seconds + settings.shutdown_grace_seconds < _seconds(services["cds-hooks"]["stop_grace_period"])


def _seconds(value: str) -> int:
    assert value.endswith("s")
    return int(value[:-1])


def test_database_url_points_at_the_feedback_postgres(services):
    url = env(services["cds-hooks"])["DATABASE_URL"]
    db = env(services["feedback-db"])
    assert url == f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@feedback-db:5432/{db['POSTGRES_DB']}"
    hapi, hapi_db = env(services["hapi"]), env(services["hapi-db"])
    assert hapi["spring.datasource.url"] == f"jdbc:postgresql://hapi-db:5432/{hapi_db['POSTGRES_DB']}"
    assert hapi["spring.datasource.username"] == hapi_db["POSTGRES_USER"]


def test_loader_loads_the_fixtures_into_the_hapi_service(services):
    loader = services["loader"]
    assert loader["image"] == services["cds-hooks"]["image"] and loader["restart"] == "no"
    command = " ".join(loader["command"])
    assert "mbc-cds-hooks load --fhir-base http://hapi:8080/fhir fixtures/patients/*.json" in command
    assert "http://hapi:8080/fhir/metadata" in command  # waits for HAPI first
    assert "./fixtures:/app/fixtures:ro" in loader["volumes"]
    assert len(list((COMPOSE.parent / "fixtures" / "patients").glob("*.json"))) > 0
    assert "load" in typer.main.get_command(cli).commands  # type: ignore[attr-defined]
