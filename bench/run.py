"""Latency of the hook endpoint against a bare FastAPI floor, measured in the same run with wrk.

Why this shape (../shared/reference/performance.md): the machine is shared and noisy, so only
ratios to a floor measured alongside mean anything; runs of floor and service are interleaved and
the median of the repetitions is kept. wrk (C, epoll, Lua for the POST body) rather than a Python
client, which would be the bottleneck. Both servers are one uvicorn worker with the same flags.

    .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import patients  # noqa: E402

ROOT = patients.ROOT
PATH = f"/cds-services/{patients.SERVICE_ID}"
SERVER_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
CONCURRENCY = (1, 8)
TARGET_N, TARGET_RATIO, TARGET_P99_MS = 300, 1.5, 50.0

LUA = r"""
-- POST the body file named after "--"; report percentiles (microseconds) as one JSON line.
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  wrk.headers["Content-Type"] = "application/json"
  f:close()
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"p50":%d,"p95":%d,"p99":%d,"max":%d,"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d}\n',
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(name: str, target: list[str], env: dict[str, str], logs: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port), *SERVER_FLAGS]
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}{PATH}", proc, log)
    for _ in range(300):  # bounded: 30 s
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start-up; see {logs / (name + '.log')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within 30 s")


def verify(service: Server, floor: Server, bodies: dict[int, bytes]) -> None:
    """Refuse to time an error path: the service must answer 200 with cards for every N."""
    for n, body in bodies.items():
        for server in (floor, service):
            status, raw = post(server.url, body)
            cards = json.loads(raw).get("cards") if status == 200 else None
            if status != 200 or not cards:
                raise RuntimeError(f"{server.name} N={n}: HTTP {status}, body {raw[:300]!r}")
            if server is service:
                print(f"  service N={n}: 200, cards {[c['source'].get('topic', {}).get('code') for c in cards]}")


def wrk(url: str, body_path: Path, lua: Path, conns: int, seconds: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url, "--", str(body_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    result: dict[str, Any] = json.loads(line[len("BENCH "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if result["non2xx"] or result["socket_errors"]:
        print(f"  WARNING {url} C={conns}: {result['non2xx']} non-2xx, {result['socket_errors']} socket errors")
    return result


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def machine() -> str:
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), platform.processor())
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    return f"{os.cpu_count()} CPU ({model}), Python {platform.python_version()}, {wrk_version}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 2 repetitions (default 5 s, 3)")
    args = parser.parse_args()
    seconds, reps = (2, 2) if args.quick else (5, 3)
    if shutil.which("wrk") is None:
        print("wrk is not installed. Install it with: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2

    paths = patients.write_requests()
    bodies = {n: p.read_bytes() for n, p in paths.items()}
    print(f"Machine: {machine()}")
    print(f"Method: wrk -t1, {seconds} s per run, {reps} repetitions interleaved floor/service, median kept")
    with tempfile.TemporaryDirectory(prefix="mbc-bench-") as tmp:
        tmpdir = Path(tmp)
        lua = tmpdir / "post.lua"
        lua.write_text(LUA)
        env = {**os.environ, "MBC_LOG_LEVEL": "warning", "MBC_FEEDBACK_DB": str(tmpdir / "feedback.sqlite3"),
               "MBC_AUTH_REQUIRED": "false"}  # wrk sends no JWT; JWT checks are not part of this measurement
        servers: list[Server] = []
        try:
            servers.append(start("floor", ["--app-dir", "bench", "floor_app:app"], env, tmpdir))
            servers.append(start("service", ["--factory", "service.edge.app:app_factory"], env, tmpdir))
            floor, service = servers
            verify(service, floor, bodies)
            results: dict[tuple[int, int], dict[str, list[dict[str, Any]]]] = {}
            for n, path in paths.items():
                for server in servers:  # warm-up, discarded
                    wrk(server.url, path, lua, 8, 1)
                for conns in CONCURRENCY:
                    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "service": []}
                    for _ in range(reps):
                        for server in servers:  # floor, service, floor, service, ...
                            runs[server.name].append(wrk(server.url, path, lua, conns, seconds))
                    results[(n, conns)] = runs
                    print(f"  done N={n} C={conns}")
        finally:
            for server in servers:
                server.proc.terminate()
                try:
                    server.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait(timeout=10)
                server.log.close()

    print()
    print("| N | request KB | C | floor p50 / p95 / p99 ms | service p50 / p95 / p99 ms | floor req/s | service req/s | p50 ratio |")
    print("|---|---|---|---|---|---|---|---|")
    ms = lambda runs, k: median(runs, k) / 1000  # noqa: E731
    verdicts = []
    for (n, conns), runs in results.items():
        f, s = runs["floor"], runs["service"]
        ratio = ms(s, "p50") / ms(f, "p50")
        print(f"| {n} | {len(bodies[n]) / 1024:.0f} | {conns} "
              f"| {ms(f, 'p50'):.2f} / {ms(f, 'p95'):.2f} / {ms(f, 'p99'):.2f} "
              f"| {ms(s, 'p50'):.2f} / {ms(s, 'p95'):.2f} / {ms(s, 'p99'):.2f} "
              f"| {median(f, 'rps'):.0f} | {median(s, 'rps'):.0f} | {ratio:.2f} |")
        if n == TARGET_N:
            verdicts.append(f"N={n} C={conns}: p50 ratio {ratio:.2f} (target <= {TARGET_RATIO}: "
                            f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}); service p99 {ms(s, 'p99'):.1f} ms "
                            f"(target < {TARGET_P99_MS:.0f} ms: {'met' if ms(s, 'p99') < TARGET_P99_MS else 'MISSED'})")
    print()
    print("Targets (issue):")
    for v in verdicts:
        print(f"- {v}")
    out = patients.RESULTS / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine(), "seconds": seconds, "reps": reps,
                               "runs": [{"n": n, "c": c, **runs} for (n, c), runs in results.items()]}, indent=1))
    print(f"\nRaw runs: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
