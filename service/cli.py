"""The ``mbc-cds-hooks`` command: serve, explain, sample-request."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CDS Hooks 2.0 service for metastatic breast cancer.")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Interface to bind (env MBC_HOST, default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (env MBC_PORT, default 8080)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (env MBC_WORKERS, default 1)."),
) -> None:
    """Run the HTTP service."""
    import os

    import uvicorn

    for name, value in (("MBC_HOST", host), ("MBC_PORT", port), ("MBC_WORKERS", workers)):
        if value is not None:
            os.environ[name] = str(value)
    from pydantic import ValidationError

    from .settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"Invalid settings:\n{exc}", err=True)
        raise typer.Exit(2)
    uvicorn.run(
        "service.app:app_factory", factory=True, host=settings.host, port=settings.port, workers=settings.workers,
        log_level=settings.log_level, access_log=False, lifespan="on",
    )


def _today(value: Optional[str]) -> date:
    return date.fromisoformat(value) if value else datetime.now(timezone.utc).date()


@app.command()
def explain(
    bundle: Optional[Path] = typer.Option(None, "--bundle", exists=True, dir_okay=False, help="A FHIR Bundle or JSON array of resources."),
    fhir_base: Optional[str] = typer.Option(None, "--fhir-base", help="A FHIR R4 server to read the patient from."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Patient id on --fhir-base."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token for --fhir-base."),
    as_json: bool = typer.Option(False, "--json", help="Print {picture, cards} as JSON."),
    today: Optional[str] = typer.Option(None, help="Evaluate as of this date (YYYY-MM-DD)."),
) -> None:
    """The clinical picture and patient-view cards for one patient, without HTTP."""
    import fixtures
    from cds_hooks.evaluate import evaluate
    from mappings.build import build_picture

    day = _today(today)
    gaps = []
    if bundle is not None:
        resources = fixtures.load(bundle, today=day)
    elif fhir_base and patient:
        resources, gaps = _read_server(fhir_base.rstrip("/"), patient, token)
    else:
        typer.echo("Give --bundle FILE, or --fhir-base URL and --patient ID.", err=True)
        raise typer.Exit(2)
    picture = build_picture(resources, today=day)
    cards = evaluate("patient-view", picture, hook_instance=str(uuid.uuid4()), today=day, max_cards=100, gaps=gaps)
    if as_json:
        sys.stdout.write(json.dumps({"picture": picture.to_json(), "cards": cards}, indent=2) + "\n")
        return
    from .explain_view import show

    show(picture, cards)


def _read_server(base: str, patient: str, token: Optional[str]):
    import asyncio

    import httpx

    from cds_hooks.catalog import services
    from .fhir_client import FhirFetcher
    from .hook_request import parse_hook_request
    from .prefetch import gather

    request = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "fhirServer": base,
               "context": {"userId": "Practitioner/cli", "patientId": patient}}
    if token:
        request["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cli"}
    hook = parse_hook_request(json.dumps(request).encode(), "patient-view")

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            return await gather(hook, services()["mbc-patient-view"].queries, FhirFetcher(client, 50), 30.0)

    data = asyncio.run(run())
    return data.resources, data.gaps


@app.command("sample-request")
def sample_request(
    bundle: Path = typer.Option(..., "--bundle", exists=True, dir_okay=False, help="A fixture bundle."),
    service: str = typer.Option("mbc-patient-view", "--service", help="Service id."),
    orders: Optional[Path] = typer.Option(None, "--orders", exists=True, dir_okay=False, help="Draft orders Bundle (order hooks)."),
    today: Optional[str] = typer.Option(None, help="Roll fixture dates to this day (YYYY-MM-DD)."),
) -> None:
    """Print a CDS Hooks request with full prefetch built from a fixture, ready for curl."""
    import fixtures
    from cds_hooks.catalog import services

    svc = services().get(service)
    if svc is None:
        typer.echo(f"Unknown service {service}; one of {', '.join(services())}", err=True)
        raise typer.Exit(2)
    resources = fixtures.load(bundle, today=_today(today))
    pid = fixtures.patient_id(resources) or "unknown"
    context: dict = {"userId": "Practitioner/example", "patientId": pid}
    if svc.hook != "patient-view":
        draft = fixtures.rolled(fixtures.read_json(orders), _today(today)) if orders else {"resourceType": "Bundle", "type": "collection", "entry": []}
        context["draftOrders"] = draft
        if svc.hook == "order-select":
            context["selections"] = [f"MedicationRequest/{e['resource']['id']}" for e in draft.get("entry", [])] or ["MedicationRequest/none"]
    request = {"hook": svc.hook, "hookInstance": str(uuid.uuid4()), "context": context,
               "prefetch": fixtures.prefetch_for(resources, [q.key for q in svc.queries])}
    sys.stdout.write(json.dumps(request, indent=2) + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
