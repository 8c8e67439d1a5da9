"""Start and stop the SMART authorization server of the viewer tests (``fhir-test-server/smart-auth.mjs``).

panva's oidc-provider behind a small Node script: authorization code with PKCE, RS256 JWT access
tokens for the FHIR servers named in ``audiences``, the launch's patient in the token answer. A
FHIR test server started with ``FHIR_TEST_SMART=json.dumps(auth.smart_configuration(...))`` accepts
its tokens. ``restart()`` keeps the port (the issuer URL) and changes the signing key, so tokens
issued before no longer verify.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import weakref
from typing import IO, Any

import httpx

from .fhir_server import REPO_ROOT, SERVER_DIR, FhirServerError, FhirTestServer, _terminate, free_port, node_executable

SCRIPT = SERVER_DIR / "smart-auth.mjs"
CAPABILITIES_V2 = ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient", "context-standalone-patient",
                   "sso-openid-connect", "permission-patient", "permission-v2", "permission-v1"]


class SmartAuthServer(FhirTestServer):
    """The authorization server's process; ``output`` and ``stop`` are the FHIR test server's own
    (same kind of Node process, same log file and clean-up), the rest is its own."""

    def __init__(self, *, clients: list[dict[str, Any]], audiences: list[str], port: int | None = None,
                 token_seconds: int = 300, startup_timeout: float = 20.0):
        # Not FhirTestServer.__init__: that starts Medplum.
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.clients, self.audiences = clients, audiences
        self.timeout = startup_timeout
        self.client = httpx.Client(timeout=1.0)  # closed by stop()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.start(token_seconds)

    def smart_configuration(self, capabilities: list[str] | None = None) -> dict[str, Any]:
        """The ``.well-known/smart-configuration`` a FHIR server that trusts this server publishes."""
        return {
            "issuer": self.url, "jwks_uri": f"{self.url}/jwks", "authorization_endpoint": f"{self.url}/auth",
            "token_endpoint": f"{self.url}/token", "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"], "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "patient/*.rs", "patient/*.read"],
            "response_types_supported": ["code"], "capabilities": CAPABILITIES_V2 if capabilities is None else capabilities,
        }

    def start(self, token_seconds: int = 300) -> None:
        node = node_executable()
        if node is None:
            raise FhirServerError("node not found on PATH")
        env = {**os.environ, "SMART_AUTH_CLIENTS": json.dumps(self.clients), "SMART_AUTH_AUDIENCES": json.dumps(self.audiences),
               "SMART_AUTH_TOKEN_SECONDS": str(token_seconds)}
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen([node, str(SCRIPT), str(self.port)], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise FhirServerError(f"SMART auth server exited with code {self._process.returncode}:\n{self.output()}")
            if f"listening on {self.url}" in self.output():
                try:
                    if self.client.get(f"{self.url}/.well-known/openid-configuration").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise FhirServerError(f"SMART auth server did not answer within {self.timeout:.0f} s:\n{self.output()}")

    def restart(self, token_seconds: int = 300) -> None:
        """Same port and issuer, new signing key (and token lifetime)."""
        self.stop(close_client=False)
        self.start(token_seconds)
