"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, ``postgres`` on 127.0.0.1.

Uses Debian's server binaries (/usr/lib/postgresql/*/bin, or PG_BIN). PostgreSQL refuses to run
as root, so under root the cluster belongs to the ``postgres`` user the Debian package creates.
Password (SCRAM) authentication over TCP, as a deployed DATABASE_URL would use.

Fixtures: ``postgres_cluster`` (one per session) and ``postgres_url`` (a fresh database per test).
Without the binaries the tests fail with a message naming the prerequisite; MBC_TEST_SKIP_POSTGRES=1
skips them knowingly (never under CI, which must test PostgreSQL).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest



class PostgresError(RuntimeError):
    pass


def find_bin() -> Path | None:
    """The newest installed server's bin directory, or None."""
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traversable(path: str) -> bool:
    p = Path(path).resolve()
    return all(q.stat().st_mode & 0o001 for q in [p, *p.parents])


class PostgresCluster:
    """One cluster, started on construction; ``create_database`` gives each test its own database."""

    user = "mbc"

    def __init__(self, bin_dir: Path, start_timeout: float = 30.0, port: int | None = None, password: str | None = None):
        self.bin = bin_dir
        self.password = password or secrets.token_urlsafe(16)
        self.port = port or _free_port()  # a given port: a database that "comes back" where a service expects it
        root = os.geteuid() == 0
        # Under root the server runs as 'postgres', which must be able to reach the temp dir.
        parent = tempfile.gettempdir() if not root or _traversable(tempfile.gettempdir()) else "/tmp"
        self.dir = Path(tempfile.mkdtemp(prefix="mbc-pg-", dir=parent))
        self._run_as: dict[str, Any] = {}
        if root:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError("running as root needs the 'postgres' user (Debian's postgresql package creates it)") from None
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        (self.dir / "pw").write_text(self.password)
        if self._run_as:
            os.chown(self.dir / "pw", self._run_as["user"], self._run_as["group"])
        data = self.dir / "data"
        try:
            self._initdb(data)
        except Exception:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self._log = open(self.dir / "postgres.log", "wb")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.dir), "-c", "max_connections=200"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir, **self._run_as,
        )
        self._wait_ready(start_timeout)

    def _initdb(self, data: Path) -> None:
        self._run([
            str(self.bin / "initdb"), "-D", str(data), "-U", self.user, f"--pwfile={self.dir / 'pw'}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
        ])

    def _run(self, argv: list[str], as_owner: bool = True) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=self.dir, timeout=60,
                                env={**os.environ, "PGPASSWORD": self.password}, **(self._run_as if as_owner else {}))
        if result.returncode != 0:
            raise PostgresError(f"{Path(argv[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise PostgresError(f"postgres exited: {self.log_tail()}")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)])
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not accept connections within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its DATABASE_URL."""
        self._run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name], as_owner=False)
        return self.url(name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def require_bin() -> Path:
    """The server binaries, or skip (fail under CI)."""
    bin_dir = find_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)"
        if os.environ.get("MBC_TEST_SKIP_POSTGRES") == "1" and not os.environ.get("CI"):
            pytest.skip(f"{message}; skipped because MBC_TEST_SKIP_POSTGRES=1")
        # Never a silent skip: a missing prerequisite fails, naming itself (CI must test PostgreSQL too).
        pytest.fail(f"{message}; or set MBC_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL tests knowingly")
    return bin_dir


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bin_dir = require_bin()
    try:
        cluster = PostgresCluster(bin_dir)
    except PostgresError as exc:
        pytest.fail(f"throwaway PostgreSQL cluster did not start: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.create_database(f"t_{secrets.token_hex(6)}")
