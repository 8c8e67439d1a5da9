"""Start and stop the in-memory FHIR R4 test server (``fhir-test-server/server.cjs``) from pytest.

The server is Medplum's FHIR engine behind a small Node adapter; see ``fhir-test-server/README.md``.
This module never installs anything: CI runs ``npm ci --prefix fhir-test-server`` before pytest,
and tests should skip when :func:`node_available` or :func:`modules_installed` is false.

Typical use::

    server = FhirTestServer()                       # starts node, waits for /metadata
    server.post_bundle(bundle)                      # transaction or batch; raises on errors
    server.search("Observation?patient=mbc-demo-1") # any GET relative to the base URL
    server.reset()                                  # POST $reset: wipe all data
    server.stop()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO_ROOT / "fhir-test-server"
SERVER_SCRIPT = SERVER_DIR / "server.cjs"
TOKEN_ENV = "FHIR_TEST_REQUIRE_TOKEN"

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0
_START_ATTEMPTS = 3  # a picked free port can be taken by someone else before node binds it


class FhirServerError(RuntimeError):
    """The test server could not start, or answered a request with an error."""


# The Node.js that `make test` installs from the npm registry (Makefile NODE_VERSION): Medplum 5.2.13
# wants Node ^22.18 or >=24.2; the machine's node (20 here) is only the fallback.
LOCAL_NODE = SERVER_DIR.parent / ".node" / "node_modules" / ".bin" / "node"


def node_executable() -> str | None:
    """The project's Node.js (.node/, from `make test`), else ``node`` on PATH, or None."""
    return str(LOCAL_NODE) if LOCAL_NODE.exists() else shutil.which("node")


def node_available() -> bool:
    """True when a ``node`` binary is available."""
    return node_executable() is not None


def modules_installed() -> bool:
    """True when ``npm ci --prefix fhir-test-server`` has been run."""
    return (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def operation_outcome_text(body: Any) -> str:
    """Readable summary of an OperationOutcome (details, diagnostics and expression per issue)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return str(body)[:2000]
    parts = []
    for issue in body.get("issue", []):
        text = (
            issue.get("details", {}).get("text")
            or issue.get("diagnostics")
            or issue.get("code", "")
        )
        where = ", ".join(issue.get("expression", []) or issue.get("location", []))
        parts.append(
            f"{issue.get('severity', 'error')}: {text}" + (f" at {where}" if where else "")
        )
    return "; ".join(parts) or "OperationOutcome without issues"


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup (garbage collection, interpreter exit): never orphan a node process."""
    if process.poll() is None:
        process.kill()
        process.wait()


class FhirTestServer:
    """A running ``server.cjs`` process on a free port of 127.0.0.1.

    The constructor starts the process and waits until ``GET {base_url}/metadata`` answers 200.
    ``env`` adds environment variables for the server, e.g. ``{"FHIR_TEST_REQUIRE_TOKEN": "t"}``;
    when that token is set, this helper's own requests send it as a bearer token.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ) -> None:
        node = node_executable()
        if node is None:
            raise FhirServerError("node not found on PATH")
        if not modules_installed():
            raise FhirServerError(
                f"{SERVER_DIR}/node_modules is missing: "
                "run `npm ci --no-audit --no-fund --prefix fhir-test-server`"
            )
        self._extra_env = dict(env or {})
        self.token: str | None = self._extra_env.get(TOKEN_ENV) or None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.port = 0
        headers = {"Accept": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.client = httpx.Client(headers=headers, timeout=REQUEST_TIMEOUT_S)

        attempts = 1 if port is not None else _START_ATTEMPTS
        for attempt in range(attempts):
            try:
                self._start(node, port if port is not None else free_port(), startup_timeout)
                return
            except FhirServerError:
                self.stop(close_client=False)
                if attempt == attempts - 1:
                    self.client.close()
                    raise

    @property
    def base_url(self) -> str:
        """FHIR base, e.g. ``http://127.0.0.1:41234/fhir`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _start(self, node: str, port: int, timeout: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_TEST_")}
        env.update(self._extra_env)
        # A file, not a pipe: nobody drains a pipe during tests, and FHIR_TEST_LOG=1 could fill one.
        self._log = tempfile.TemporaryFile()
        self.port = port
        self._process = subprocess.Popen(
            [node, "--experimental-websocket", str(SERVER_SCRIPT), str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        self._wait_ready(f"listening on {self.base_url}", timeout, "FHIR test server")

    def _wait_ready(self, ready_line: str, timeout: float, name: str) -> None:
        """Wait for this process's own start-up line, then for /metadata: if the port was taken
        meanwhile, /metadata could be answered by whatever else holds it."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise FhirServerError(f"{name} exited with code {self._process.returncode}:\n{self.output()}")
            if ready_line in self.output():
                try:
                    if self.client.get(f"{self.base_url}/metadata", timeout=1.0).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise FhirServerError(f"{name} did not answer within {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self, *, close_client: bool = True) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if close_client:
            self.client.close()

    def __enter__(self) -> FhirTestServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _check(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if not response.is_success:
            raise FhirServerError(
                f"{response.request.method} {response.request.url} -> HTTP {response.status_code}: "
                f"{operation_outcome_text(body)}"
            )
        if not isinstance(body, dict):
            raise FhirServerError(
                f"{response.request.method} {response.request.url}: expected a JSON object"
            )
        return body

    def reset(self) -> None:
        """Delete every resource (``POST {base}/$reset``)."""
        self._check(self.client.post(f"{self.base_url}/$reset"))

    def post_bundle(
        self, bundle: Mapping[str, Any], *, check_entries: bool = True
    ) -> dict[str, Any]:
        """POST a transaction or batch Bundle to the base URL and return the response Bundle.

        Raises FhirServerError with the OperationOutcome text on a non-2xx answer (a failed
        transaction stores nothing). With ``check_entries``, a batch entry whose own status is
        not 2xx also raises, naming the entry.
        """
        response = self.client.post(
            self.base_url, json=dict(bundle), headers={"Content-Type": "application/fhir+json"}
        )
        result = self._check(response)
        if check_entries:
            failures = []
            for index, entry in enumerate(result.get("entry", [])):
                status = str(entry.get("response", {}).get("status", ""))
                if not status.startswith("2"):
                    text = operation_outcome_text(entry.get("response", {}).get("outcome"))
                    failures.append(f"entry[{index}] {status}: {text}")
            if failures:
                raise FhirServerError("Bundle entries failed: " + " | ".join(failures))
        return result

    def search(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``{base}/{path}`` (a search such as ``Condition?patient=x`` or a read such as
        ``Patient/x``) and return the JSON body; raises FhirServerError on a non-2xx answer."""
        return self._check(self.client.get(f"{self.base_url}/{path.lstrip('/')}", params=params))
