"""A used JWT stays used across a restart of the service, with the default single worker and SQLite.

A real ``mbc-cds-hooks serve`` process is killed (SIGKILL: no shutdown code runs) and started
again on the same MBC_FEEDBACK_DB; the token it accepted before must now be refused (401). The
same after a graceful restart (SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parents[1]
ISS = "https://ehr.restart.example.test"
KEY = ECKey.generate_key("P-384", parameters={"kid": "restart-1"}, private=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _token(aud: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode({"alg": "ES384", "typ": "JWT", "kid": "restart-1"}, claims, KEY, algorithms=["ES384"])


class Served:
    """``mbc-cds-hooks serve`` as a child process, one worker, SQLite in ``data``."""

    def __init__(self, data: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        jwks = data / "jwks.json"
        jwks.write_text(json.dumps({"keys": [{**KEY.as_dict(private=False), "use": "sig"}]}))
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR") and not k.startswith("MBC_")}
        self.env.update(MBC_PORT=str(self.port), MBC_WORKERS="1", MBC_LOG_LEVEL="warning",
                        MBC_FEEDBACK_DB=str(data / "feedback.sqlite3"), MBC_PUBLIC_BASE_URL=self.base,
                        MBC_TRUSTED_ISSUERS=json.dumps([{"iss": ISS, "jwks_file": str(jwks)}]))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "service.kit.cli", "serve"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read().decode() if self.proc.stdout else ""
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.2)

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def discovery(self, token: str) -> int:
        return httpx.get(f"{self.base}/cds-services", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def test_a_used_token_is_refused_after_kill_9_and_after_a_graceful_restart(served: Served) -> None:
    served.start()
    used = _token(f"{served.base}/cds-services")
    assert served.discovery(used) == 200
    assert served.discovery(used) == 401  # replay, same process

    served.stop(signal.SIGKILL)  # no shutdown code runs: only what was committed counts
    served.start()
    assert served.discovery(used) == 401, "a token used before the crash was accepted again"
    assert served.discovery(_token(f"{served.base}/cds-services")) == 200  # fresh tokens still pass

    served.stop(signal.SIGTERM)
    served.start()
    assert served.discovery(used) == 401, "a token used before the restart was accepted again"
