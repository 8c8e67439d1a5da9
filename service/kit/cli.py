"""The ``mbc-cds-hooks`` command: serve, explain, sample-request, and the integration kit (load, keys, hook)."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

# rich_markup_mode=None: plain click help (no type tags such as <bool> beside flags, no boxes).
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="CDS Hooks 2.0 service for metastatic breast cancer.")


def _read_resources(path: Path, day: date) -> list[dict[str, Any]]:
    """The resources of a Bundle or JSON array file, or a one-line error and exit 2 (never a traceback)."""
    import orjson

    import fixtures

    try:
        data = fixtures.read_json(path)
    except (OSError, orjson.JSONDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc).split(":")[0]
        typer.echo(f"error: {path} is not a JSON file ({why})", err=True)
        raise typer.Exit(2) from None
    if not (isinstance(data, list) or (isinstance(data, dict) and data.get("resourceType") == "Bundle")):
        typer.echo(f"error: {path} is neither a FHIR Bundle nor a JSON array of resources", err=True)
        raise typer.Exit(2)
    return fixtures.load(path, today=day)


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Interface to bind (env MBC_HOST, default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (env MBC_PORT, default 8080)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (env MBC_WORKERS, default 1)."),
) -> None:
    """Run the HTTP service."""
    import os
    import signal

    import uvicorn

    for name, value in (("MBC_HOST", host), ("MBC_PORT", port), ("MBC_WORKERS", workers)):
        if value is not None:
            os.environ[name] = str(value)
    from pydantic import ValidationError

    from ..logs import uvicorn_log_config
    from ..settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"Invalid settings:\n{exc}", err=True)
        raise typer.Exit(2)
    scratch = _metrics_dir(settings.workers)
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; this handler then ends with 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:  # SIGTERM: stop accepting, let in-flight calls finish (up to the grace), run the lifespan's shutdown
        uvicorn.run(
            "service.edge.app:app_factory", factory=True, host=settings.host, port=settings.port, workers=settings.workers,
            log_level=settings.log_level, log_config=uvicorn_log_config(settings.log_level), access_log=False, lifespan="on",
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    finally:
        if scratch:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


@app.command()
def migrate() -> None:
    """Create the database schema (DATABASE_URL, else MBC_FEEDBACK_DB) and exit: safe to run from
    several places at once (PostgreSQL advisory lock), and a no-op when the schema is there."""
    import asyncio

    from pydantic import ValidationError

    from ..settings import Settings
    from ..store import open_database

    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"Invalid settings:\n{exc}", err=True)
        raise typer.Exit(2)
    url = settings.database_url.get_secret_value() if settings.database_url else None

    async def run() -> int:
        db = await open_database(url, settings.feedback_db)
        try:
            return int(getattr(db, "schema_created", 0))
        finally:
            await db.close()

    try:
        created = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - the type only: a driver message may name the host or user
        typer.echo(f"error: the database did not answer or refused the schema ({type(exc).__name__})", err=True)
        raise typer.Exit(1)
    where = "PostgreSQL (DATABASE_URL)" if url else f"SQLite {settings.feedback_db}"
    typer.echo(f"schema created in {where}: {created} tables and indexes" if created else f"schema present in {where}")


def _metrics_dir(workers: int) -> Optional[str]:
    """Prometheus multiprocess mode: clear PROMETHEUS_MULTIPROC_DIR of a previous run's files, or
    make a temporary one when several workers would otherwise each show only their own figures.
    Returns a directory to remove at exit."""
    import os
    import tempfile

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    if workers > 1:
        made = tempfile.mkdtemp(prefix="mbc-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
        return made
    return None


def _today(value: Optional[str]) -> date:
    return date.fromisoformat(value) if value else datetime.now(timezone.utc).date()


@app.command()
def explain(
    bundle: Optional[Path] = typer.Option(None, "--bundle", exists=True, dir_okay=False, help="A FHIR Bundle or JSON array of resources."),
    fhir_base: Optional[str] = typer.Option(None, "--fhir-base", help="A FHIR R4 server to read the patient from."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Patient id on --fhir-base."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token for --fhir-base."),
    as_json: bool = typer.Option(False, "--json", help="Print {picture, cards, findings} as JSON."),
    today: Optional[str] = typer.Option(None, help="Evaluate as of this date (YYYY-MM-DD)."),
) -> None:
    """The clinical picture and patient-view cards for one patient, without HTTP."""
    from cds_hooks.economy import Limits
    from cds_hooks.evaluate import evaluate, findings, fire
    from mappings.build import build_picture

    from ..settings import Settings

    day = _today(today)
    gaps = []
    if bundle is not None:
        resources = _read_resources(bundle, day)
    elif fhir_base and patient:
        resources, gaps = _read_server(fhir_base.rstrip("/"), patient, token)
        if not resources:  # nothing at all: a wrong id or server is an error, not a patient without cancer
            why = "; ".join(f"{g.key}: {g.reason}" for g in gaps) or "the server has no data for this patient"
            typer.echo(f"error: could not read Patient/{patient} from {fhir_base} ({why})", err=True)
            raise typer.Exit(1)
    else:
        typer.echo("Give --bundle FILE, or --fhir-base URL and --patient ID.", err=True)
        raise typer.Exit(2)
    picture = build_picture(resources, today=day)
    settings = Settings()
    limits = Limits(max_cards=settings.max_cards, max_card_chars=settings.max_detail_chars_per_card,
                    max_answer_chars=settings.max_detail_chars_per_answer)
    # The cards as the EHR shows them, and every finding in full (the long form the cards leave out).
    cards = evaluate("patient-view", picture, hook_instance=str(uuid.uuid4()), today=day, limits=limits, gaps=gaps)
    full = findings(fire("patient-view", picture, today=day, gaps=gaps))
    if as_json:
        sys.stdout.write(json.dumps({"picture": picture.to_extension(), "cards": cards, "findings": full}, indent=2) + "\n")
        return
    from .explain_view import show

    show(picture, cards, full)


def _read_server(base: str, patient: str, token: Optional[str]):
    """The patient-view queries read from a FHIR server, as the viewer reads them (one fetch path)."""
    import asyncio

    import httpx

    from ..edge.responses import RequestError
    from ..fhir_client import FetchLimits, FhirFetcher
    from ..viewer.data import read_patient

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            return await read_patient(FhirFetcher(client, FetchLimits(max_pages=50)), base, patient, token, 30.0)

    try:
        data = asyncio.run(run())
    except RequestError as exc:  # the token was refused: nothing can be read
        typer.echo(f"error: could not read Patient/{patient} from {base}: {exc.message}", err=True)
        raise typer.Exit(1) from None
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
    resources = _read_resources(bundle, _today(today))
    pid = fixtures.patient_id(resources) or "unknown"
    context: dict = {"userId": "Practitioner/example", "patientId": pid}
    if svc.hook != "patient-view":
        draft: dict[str, Any] = fixtures.rolled(fixtures.read_json(orders), _today(today)) if orders else {"resourceType": "Bundle", "type": "collection", "entry": []}
        context["draftOrders"] = draft
        if svc.hook == "order-select":
            context["selections"] = [f"MedicationRequest/{e['resource']['id']}" for e in draft.get("entry", [])] or ["MedicationRequest/none"]
    request = {"hook": svc.hook, "hookInstance": str(uuid.uuid4()), "context": context,
               "prefetch": fixtures.prefetch_for(resources, [q.key for q in svc.queries])}
    sys.stdout.write(json.dumps(request, indent=2) + "\n")



@app.command()
def load(
    files: list[Path] = typer.Argument(..., exists=True, help="Fixture or record files (Bundle or JSON array), or folders of them."),
    fhir_base: str = typer.Option(..., "--fhir-base", help="FHIR R4 server to write to."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token for --fhir-base."),
    today: Optional[str] = typer.Option(None, help="Roll fixture dates to this day (YYYY-MM-DD; default today)."),
    no_roll: bool = typer.Option(False, "--no-roll", help="Load dates as written."),
    chunk_size: int = typer.Option(50, "--chunk-size", min=1, max=10000, help="Entries per transaction or batch (Medplum allows 50)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="transaction, batch or put (default: from the CapabilityStatement)."),
) -> None:
    """Put fixtures or real records into a FHIR server: PUT Type/id with stable ids, so reloading is harmless."""
    from .loader import MODES, load_files

    if mode is not None and mode not in MODES:
        typer.echo(f"--mode must be one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)
    report = load_files(files, fhir_base, token=token, today=None if no_roll else _today(today),
                        chunk_size=chunk_size, mode=mode, progress=sys.stderr.isatty())
    for problem in report.unreadable:
        typer.echo(f"unreadable: {problem}", err=True)
    for rejected in report.rejected:
        typer.echo(f"rejected: {rejected}", err=True)
    if report.fatal:
        typer.echo(f"error: {report.fatal}", err=True)
    typer.echo(f"{report.written} resources from {report.files} file(s) written to {fhir_base} ({report.mode})"
               + ("" if report.ok else f"; {len(report.rejected)} rejected, {len(report.unreadable)} unreadable"))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def keys(
    out: Path = typer.Option(..., "--out", file_okay=False, help="Folder for private.pem and jwks.json."),
    alg: str = typer.Option("ES384", "--alg", help="ES384 or RS384."),
    kid: Optional[str] = typer.Option(None, "--kid", help="Key id (default: the key's RFC 7638 thumbprint)."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
) -> None:
    """Generate a development signing key pair for `hook` and the service's trusted issuers."""
    from .dev_keys import generate

    try:
        made = generate(out, alg.upper(), kid, force)
    except (ValueError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"private key: {made.private} (mode 0600; keep it secret)\npublic JWKS: {made.jwks}\nkid: {made.kid}  alg: {made.alg}")


@app.command()
def hook(
    service: str = typer.Option(..., "--service", help="Service id, e.g. mbc-patient-view."),
    patient: str = typer.Option(..., "--patient", help="Patient id on --fhir-base."),
    fhir_base: str = typer.Option(..., "--fhir-base", help="FHIR server sent as fhirServer (and read for --prefetch)."),
    service_url: str = typer.Option("http://127.0.0.1:8080", "--service-url", help="Where the service runs (its /cds-services is under it)."),
    prefetch: bool = typer.Option(False, "--prefetch", help="Resolve the service's prefetch templates here and send them."),
    key: Optional[Path] = typer.Option(None, "--key", exists=True, dir_okay=False, help="Private key PEM to sign the JWT (from `keys`)."),
    kid: Optional[str] = typer.Option(None, "--kid", help="JWT kid (default: the key's thumbprint, as `keys` makes it)."),
    iss: Optional[str] = typer.Option(None, "--iss", help="JWT issuer; the service must trust it."),
    jku: Optional[str] = typer.Option(None, "--jku", help="JWK Set URL put in the JWT header."),
    orders: Optional[Path] = typer.Option(None, "--orders", exists=True, dir_okay=False, help="Draft orders (Bundle, array or resource) for order hooks."),
    token: Optional[str] = typer.Option(None, "--token", help="FHIR access token, sent as fhirAuthorization."),
    user: str = typer.Option("Practitioner/example", "--user", help="context.userId."),
    today: Optional[str] = typer.Option(None, help="Roll draft order dates to this day (YYYY-MM-DD)."),
    as_json: bool = typer.Option(False, "--json", help="Print the service's raw response."),
) -> None:
    """Call a running service as an EHR would: signed JWT, context, optional prefetch; print the cards."""
    from .hook_client import HookError, Signer, send

    signer = None
    if key is not None:
        from .dev_keys import load_private

        if not iss:
            typer.echo("--key needs --iss (the issuer the service trusts)", err=True)
            raise typer.Exit(2)
        try:
            private, alg = load_private(key)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        signer = Signer(private, alg, kid or private.thumbprint(), iss, jku)
    try:
        response, problems = send(service, patient, service_url=service_url, fhir_base=fhir_base, user=user, token=token,
                                  orders=orders, prefetch=prefetch, signer=signer, today=_today(today))
    except HookError as exc:
        typer.echo(f"error: {exc}", err=True)
        if exc.body is not None:
            sys.stdout.write((json.dumps(exc.body, indent=2) if not isinstance(exc.body, str) else exc.body) + "\n")
        raise typer.Exit(1)
    for problem in problems:
        typer.echo(f"prefetch: {problem} (left out; the service fetches it)", err=True)
    if as_json:
        sys.stdout.write(json.dumps(response, indent=2) + "\n")
        return
    from rich.console import Console

    from .explain_view import cards_table

    Console().print(cards_table(response.get("cards") or [], title=f"Cards from {service}"))


@app.command()
def viewer(
    bundle: Optional[Path] = typer.Option(None, "--bundle", exists=True, dir_okay=False, help="A FHIR Bundle or JSON array of resources."),
    fhir_base: Optional[str] = typer.Option(None, "--fhir-base", help="A FHIR R4 server to read the patient from."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Patient id on --fhir-base."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token for --fhir-base."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port)."),
    today: Optional[str] = typer.Option(None, help="Show the patient as of this date (YYYY-MM-DD)."),
) -> None:
    """The timeline viewer for one patient, without an EHR: serves the page on 127.0.0.1 and prints its URL."""
    import asyncio

    import uvicorn

    from ..viewer.data import PatientData
    from ..viewer.demo import demo_app, loopback_socket

    day = _today(today)
    if bundle is not None:
        import fixtures

        data = PatientData(resources=_read_resources(bundle, day))
        pid = fixtures.patient_id(data.resources) or "unknown"

        async def source() -> PatientData:
            return data
        server_url = None
    elif fhir_base and patient:
        import httpx

        from ..fhir_client import FetchLimits, FhirFetcher
        from ..viewer.data import read_patient

        server_url, pid = fhir_base.rstrip("/"), patient

        async def source() -> PatientData:  # read again on every page load
            async with httpx.AsyncClient(timeout=30) as client:
                return await read_patient(FhirFetcher(client, FetchLimits(max_pages=50)), server_url, pid, token, 30.0)
    else:
        typer.echo("Give --bundle FILE, or --fhir-base URL and --patient ID.", err=True)
        raise typer.Exit(2)
    sock = loopback_socket(port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/viewer/"
    typer.echo(f"MBC timeline for Patient/{pid}: {url}  (Ctrl+C to stop)", err=True)
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    config = uvicorn.Config(demo_app(source, patient=pid, fhir_server=server_url, today=lambda: day),
                            log_level="warning", access_log=False)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
