"""The second FHIR engine of the integration tests: sekmet-fhir (PyPI), a FastAPI + SQLite FHIR R4 server.

It runs from its own virtual environment (``.venv-sekmet``, made by ``make test`` from
``fhir-test-server/sekmet-constraints.txt``): it pins its own FastAPI and pydantic, which must not
decide ours. Each instance gets a temporary directory for its settings and SQLite database, binds
127.0.0.1 on a free port and has its simulator off (it would otherwise answer orders by itself).
See ``../shared/reference/fhir-test-server.md`` for why this engine and what it was checked for.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import weakref
from pathlib import Path

import httpx

from .fhir_server import (
    REPO_ROOT,
    REQUEST_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    FhirServerError,
    FhirTestServer,
    _terminate,
    free_port,
)

VENV = Path(os.environ.get("SEKMET_VENV", REPO_ROOT / ".venv-sekmet"))
SEKMET = VENV / "bin" / "sekmet"


def sekmet_installed() -> bool:
    return SEKMET.is_file()


class SekmetServer(FhirTestServer):
    """Same interface as FhirTestServer (base_url, post_bundle, search, reset, stop, context manager)."""

    def __init__(self, *, startup_timeout: float = STARTUP_TIMEOUT_S) -> None:  # noqa: D107 - no super(): no node
        if not sekmet_installed():
            raise FhirServerError(f"{SEKMET} missing: `make test` installs it (pip install -c fhir-test-server/sekmet-constraints.txt sekmet-fhir)")
        self._extra_env: dict[str, str] = {}
        self.token = None
        self._process = None
        self._log = None
        self._finalizer = None
        self._dir = tempfile.TemporaryDirectory(prefix="sekmet-")
        self.client = httpx.Client(headers={"Accept": "application/fhir+json"}, timeout=REQUEST_TIMEOUT_S)
        for attempt in range(3):  # a picked free port can be taken before the server binds it
            self.port = free_port()
            try:
                self._start_sekmet(startup_timeout)
                return
            except FhirServerError:
                self.stop(close_client=False)
                if attempt == 2:
                    self.client.close()
                    self._dir.cleanup()
                    raise

    @property
    def config(self) -> Path:
        return Path(self._dir.name) / "settings.yaml"

    def _start_sekmet(self, timeout: float) -> None:
        self.config.write_text(
            f"base_url: http://127.0.0.1:{self.port}/fhir\nhost: 127.0.0.1\nport: {self.port}\n"
            "simulator:\n  enabled: false\nlog_inbound: false\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FHIR_TEST_", "MBC_", "SEKMET_"))}
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [str(SEKMET), "serve", "-c", str(self.config)], cwd=self._dir.name, env=env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        self._wait_ready(f"Uvicorn running on http://127.0.0.1:{self.port}", timeout, "sekmet")

    def reset(self) -> None:
        """Delete every resource (``sekmet reset``: the same SQLite file, the server keeps running)."""
        done = subprocess.run([str(SEKMET), "reset", "--yes", "-c", str(self.config)], cwd=self._dir.name,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise FhirServerError(f"sekmet reset failed: {done.stdout}{done.stderr}")

    def stop(self, *, close_client: bool = True) -> None:
        super().stop(close_client=close_client)
        if close_client:
            self._dir.cleanup()
