"""Real ``mbc-cds-hooks serve`` processes for the scale-out tests, and a test EHR that signs calls.

Each replica is the installed command in its own process on 127.0.0.1 (its own port), configured
only through the environment, as a container would be; its JSON log goes to a file the test reads.
The EHR's keys are generated per test (``mbc-cds-hooks keys``' code), never committed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.kit.dev_keys import generate, load_private
from service.kit.hook_client import Signer

ROOT = Path(__file__).resolve().parents[2]
EHR_ISS = "https://ehr.scaleout.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SigningEhr:
    """A trusted issuer with its own key pair: ``signer`` signs calls, ``trusted`` is MBC_TRUSTED_ISSUERS."""

    signer: Signer
    trusted: str


def make_ehr(folder: Path) -> "SigningEhr":
    made = generate(folder, "ES384")
    key, alg = load_private(made.private)
    trusted = json.dumps([{"iss": EHR_ISS, "jwks_file": str(made.jwks)}])
    return SigningEhr(Signer(key, alg, made.kid, EHR_ISS), trusted)


def service_env(**settings: str) -> dict[str, str]:
    """This process's environment without any MBC_ setting, DATABASE_URL or metrics folder, plus ``settings``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR") and not k.startswith("MBC_")}
    env.update(settings)
    return env


class Replica:
    """One ``serve`` process; ``restart`` starts a new process with the same settings and port."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_dir: Path):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._env = {**env, "MBC_HOST": "127.0.0.1", "MBC_PORT": str(port)}
        self._log_dir = log_dir
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"{self.name}.{self.starts}.log"

    def start(self) -> "Replica":
        self.starts += 1
        with open(self.log_path, "wb") as log:
            # Its own process group, so that teardown can end a supervisor's workers too.
            self.proc = subprocess.Popen([sys.executable, "-m", "service.kit.cli", "serve"], cwd=ROOT, env=self._env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def readyz(self, timeout: float = 3.0) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=timeout)
        except httpx.TransportError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited: {self.log_tail()}"
            answer = self.readyz()
            if answer is not None and answer.status_code == 200:
                return
            assert time.monotonic() < deadline, f"{self.name} not ready within {timeout:.0f} s: {self.log_tail()}"
            time.sleep(0.1)

    def sigterm(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.exit_codes.append(code)
        return code

    def stop(self) -> None:
        """Test teardown: SIGTERM, then SIGKILL to the whole process group (workers included) if it
        does not end in 30 s. Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() != 0:  # killed or stuck: its workers may still run (a clean exit 0 ended them)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line of every start (a plain-text line would be a traceback: kept as text)."""
        records: list[dict[str, Any]] = []
        for n in range(1, self.starts + 1):
            for line in (self._log_dir / f"{self.name}.{n}.log").read_text(errors="replace").splitlines():
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        records.append({"text": line})
        return records

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
