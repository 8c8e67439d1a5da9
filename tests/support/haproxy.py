"""HAProxy (Debian's package) in front of service replicas, as a hospital's load balancer would be.

Health checks on ``/readyz`` every 500 ms (down after 2 failures, up after 2 successes), and on a
refused connection a retry with redispatch to another replica. Deliberately *only* on connection
failures (``retry-on conn-failure``, HAProxy's default): a request a replica may have read is never
sent twice, since its JWT ``jti`` would be refused as a replay and feedback could double. So the
test shows that the service itself loses nothing while a peer restarts, not that a balancer hid it.

Without ``haproxy`` on PATH the tests skip, except under CI, where they fail (.ci/run installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.ci import missing
from tests.support.replicas import free_port

CHECK_INTER_MS, FALL, RISE = 500, 2, 2


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
    if found is None:
        missing("haproxy not found (apt-get install haproxy)", "the multi-replica test (.ci/run installs the package)")
    return found


CONFIG = """\
global
    maxconn 1000
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 2s  # a replica slow to answer /readyz on a busy machine is not marked down for it
    # On a refused connection only (a replica stopped listening or not started yet): retry, each
    # retry on another replica. Never after a request was sent (see the module docstring).
    retries 3
    retry-on conn-failure
    option redispatch 1

frontend cds
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {inter}ms fall {fall} rise {rise}
{servers}
"""


class Haproxy:
    def __init__(self, servers: dict[str, int], folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket = folder / "haproxy.sock"
        config = folder / "haproxy.cfg"
        config.write_text(CONFIG.format(
            socket=self.socket, port=self.port, inter=CHECK_INTER_MS, fall=FALL, rise=RISE,
            servers="\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in servers.items()),
        ))
        self._log = open(folder / "haproxy.log", "wb")
        self.proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(config)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert self.proc.poll() is None, (folder / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)

    def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it (UP, DOWN, UP 1/2, ...), from its stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "replicas" and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, name: str, status: str, timeout: float = 30.0) -> float:
        """Wait until HAProxy reports ``name`` as ``status``; returns time.monotonic() then."""
        deadline = time.monotonic() + timeout
        while (seen := self.states().get(name)) != status:
            assert time.monotonic() < deadline, f"haproxy: {name} is {seen}, not {status}, after {timeout:.0f} s"
            time.sleep(0.05)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
