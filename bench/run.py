"""Latency of the hook endpoint against a bare FastAPI floor, measured in the same run with wrk.

Why this shape (../shared/reference/performance.md): the machine is shared and noisy, so only
ratios to a floor measured alongside mean anything; runs of floor and service are interleaved and
the median of the repetitions is kept. wrk (C, epoll, Lua for the POST body) rather than a Python
client, which would be the bottleneck. All servers are one uvicorn worker with the same flags.

Signed calls, as every real EHR call is: two more service processes with JWT checking on (one
trusted ES384 issuer, static key set), the jti replay store in SQLite (the default) or in a
throwaway PostgreSQL cluster. Every request carries its own token (aud = the URL, fresh jti),
signed in bulk before each timed run and walked by the Lua script, so the driver signs nothing
while it is timed; a run that would need more tokens than were signed stops early and says so.

    .venv/bin/python bench/run.py [--quick] [--sizes 50,300,3000] [--signed-sizes 50,300] [--no-postgres]
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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import patients  # noqa: E402

sys.path.insert(0, str(patients.ROOT))
from joserfc import jwt as jose_jwt  # noqa: E402

from service.kit.dev_keys import generate as generate_keys, load_private  # noqa: E402

ROOT = patients.ROOT
PATH = f"/cds-services/{patients.SERVICE_ID}"
SERVER_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
CONCURRENCY = (1, 8)
TARGET_RATIO, TARGET_RATIO_N50, TARGET_P99_MS = 1.5, 1.3, 50.0  # p50 / floor: N=300 (issue 12), N=50 unsigned (issue 15)

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


SIGNED_LUA = r"""
-- POST the body file with one pre-signed token per request from the token file (both named after
-- "--"); stop when the tokens run out (a token used twice would be refused as a replay).
local tokens, next_token = {}, 0
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
  for line in io.lines(args[2]) do tokens[#tokens + 1] = line end
end
request = function()
  next_token = next_token + 1
  if next_token > #tokens then
    wrk.thread:stop()
    next_token = #tokens
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[next_token]}, body)
end
""" + LUA[LUA.index("done = function"):]
ISSUER = "https://bench-ehr.example.test"


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    signed: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 30.0, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(name: str, target: list[str], env: dict[str, str], logs: Path, signed: bool = False) -> Server:
    port = free_port()
    if signed:  # aud is checked against the public base URL: the exact URL wrk calls
        env = {**env, "MBC_AUTH_REQUIRED": "true", "MBC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    cmd = [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port), *SERVER_FLAGS]
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}{PATH}", proc, log, signed)
    for _ in range(300):  # bounded: 30 s
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start-up; see {logs / (name + '.log')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within 30 s")


class Signer:
    """ES384 tokens from the bench issuer's key, one per request (fresh jti), as an EHR signs them."""

    def __init__(self, keys_dir: Path):
        self.files = generate_keys(keys_dir, alg="ES384")
        self.key, self.alg = load_private(self.files.private)

    def token(self, aud: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": aud, "exp": now + 3000, "iat": now, "jti": str(uuid.uuid4())}
        return jose_jwt.encode({"alg": self.alg, "typ": "JWT", "kid": self.files.kid}, claims, self.key, algorithms=[self.alg])

    def token_file(self, aud: str, count: int, path: Path) -> Path:
        path.write_text("\n".join(self.token(aud) for _ in range(count)) + "\n")
        return path


def verify(servers: list[Server], bodies: dict[int, bytes], signer: Signer) -> None:
    """Refuse to time an error path: every server must answer 200 with cards for every N it is timed at."""
    for n, body in bodies.items():
        for server in servers:
            status, raw = post(server.url, body, token=signer.token(server.url) if server.signed else None)
            cards = json.loads(raw).get("cards") if status == 200 else None
            if status != 200 or not cards:
                raise RuntimeError(f"{server.name} N={n}: HTTP {status}, body {raw[:300]!r}")
            if server.name == "service":
                print(f"  service N={n}: 200, cards {[c['source'].get('topic', {}).get('code') for c in cards]}")
            if server.signed:  # a token used twice is refused: the replay store is really on
                token = signer.token(server.url)
                first, again = post(server.url, body, token=token)[0], post(server.url, body, token=token)[0]
                if (first, again) != (200, 401):
                    raise RuntimeError(f"{server.name}: a replayed token got {again} (first {first}), not 401")


def wrk(url: str, body_path: Path, lua: Path, conns: int, seconds: int, tokens: Path | None = None) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url, "--", str(body_path)]
    cmd += [str(tokens)] if tokens else []
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


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 2 repetitions (default 5 s, 3)")
    parser.add_argument("--sizes", type=_sizes, default=patients.SIZES, help="N of the unsigned runs (default 50,300,3000)")
    parser.add_argument("--signed-sizes", type=_sizes, default=(50, 300), help="N of the signed runs (default 50,300)")
    parser.add_argument("--no-postgres", action="store_true", help="no signed run with PostgreSQL as the replay store")
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit (git archive ... | tar -x): its "
                        "service runs unsigned beside this one, as 'baseline', for a before/after in the same run")
    args = parser.parse_args()
    seconds, reps = (2, 2) if args.quick else (5, 3)
    if shutil.which("wrk") is None:
        print("wrk is not installed. Install it with: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2

    paths = patients.write_requests(tuple(sorted(set(args.sizes) | set(args.signed_sizes))))
    bodies = {n: p.read_bytes() for n, p in paths.items()}
    print(f"Machine: {machine()}")
    print(f"Method: wrk -t1, {seconds} s per run, {reps} repetitions interleaved floor/service(/signed), median kept")
    cluster = None
    with tempfile.TemporaryDirectory(prefix="mbc-bench-") as tmp:
        tmpdir = Path(tmp)
        lua, signed_lua = tmpdir / "post.lua", tmpdir / "signed.lua"
        lua.write_text(LUA)
        signed_lua.write_text(SIGNED_LUA)
        signer = Signer(tmpdir / "keys")
        env = {**os.environ, "MBC_LOG_LEVEL": "warning", "MBC_FEEDBACK_DB": str(tmpdir / "feedback.sqlite3"),
               "MBC_AUTH_REQUIRED": "false",
               "MBC_TRUSTED_ISSUERS": json.dumps([{"iss": ISSUER, "jwks_file": str(signer.files.jwks)}])}
        env.pop("DATABASE_URL", None)
        servers: list[Server] = []
        try:
            servers.append(start("floor", ["--app-dir", "bench", "floor_app:app"], env, tmpdir))
            servers.append(start("service", ["--factory", "service.edge.app:app_factory"], env, tmpdir))
            if args.baseline:
                servers.append(start("baseline", ["--app-dir", str(args.baseline.resolve()), "--factory",
                                                  "service.edge.app:app_factory"],
                                     {**env, "PYTHONPATH": str(args.baseline.resolve()),
                                      "MBC_FEEDBACK_DB": str(tmpdir / "baseline.sqlite3")}, tmpdir))
            if args.signed_sizes:
                servers.append(start("signed-sqlite", ["--factory", "service.edge.app:app_factory"],
                                     {**env, "MBC_FEEDBACK_DB": str(tmpdir / "signed.sqlite3")}, tmpdir, signed=True))
                if not args.no_postgres:
                    cluster = _postgres()
                    if cluster is not None:
                        url = cluster.create_database("bench")
                        servers.append(start("signed-postgresql", ["--factory", "service.edge.app:app_factory"],
                                             {**env, "DATABASE_URL": url}, tmpdir, signed=True))
            verify(servers, bodies, signer)
            results: dict[tuple[int, int], dict[str, list[dict[str, Any]]]] = {}
            for n, path in paths.items():
                timed = [s for s in servers if (s.signed and n in args.signed_sizes) or (not s.signed and n in args.sizes)]
                for server in timed:  # warm-up, discarded
                    tokens = signer.token_file(server.url, 2000, tmpdir / "warm.tokens") if server.signed else None
                    wrk(server.url, path, signed_lua if server.signed else lua, 8, 1, tokens)
                for conns in CONCURRENCY:
                    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in timed}
                    for _ in range(reps):
                        for server in timed:  # floor, service, signed..., floor, service, ...
                            tokens = None
                            if server.signed:
                                # Enough tokens for the unsigned service's pace, with room: signed calls are slower.
                                pace = runs["service"][-1]["rps"] if runs.get("service") else 1000.0
                                need = int(pace * seconds * 1.5) + 500
                                tokens = signer.token_file(server.url, need, tmpdir / f"{server.name}.tokens")
                            result = wrk(server.url, path, signed_lua if server.signed else lua, conns, seconds, tokens)
                            if tokens is not None and result["requests"] >= need - conns:
                                print(f"  WARNING {server.name} N={n} C={conns}: ran out of tokens ({need}); run shortened")
                            runs[server.name].append(result)
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
            if cluster is not None:
                cluster.stop()

    print()
    print("| N | request KB | C | server | p50 / p95 / p99 ms | req/s | p50 / floor | p50 - service ms |")
    print("|---|---|---|---|---|---|---|---|")
    ms = lambda runs, k: median(runs, k) / 1000  # noqa: E731
    verdicts = []
    for (n, conns), runs in results.items():
        floor_p50 = ms(runs["floor"], "p50") if "floor" in runs else None
        service_p50 = ms(runs["service"], "p50") if "service" in runs else None
        for name, r in runs.items():
            ratio = f"{ms(r, 'p50') / floor_p50:.2f}" if floor_p50 else "-"
            delta = f"{ms(r, 'p50') - service_p50:+.2f}" if service_p50 and name.startswith("signed") else ""
            print(f"| {n} | {len(bodies[n]) / 1024:.0f} | {conns} | {name} "
                  f"| {ms(r, 'p50'):.2f} / {ms(r, 'p95'):.2f} / {ms(r, 'p99'):.2f} | {median(r, 'rps'):.0f} | {ratio} | {delta} |")
        if floor_p50 and service_p50:
            target = {300: TARGET_RATIO, 50: TARGET_RATIO_N50}.get(n)
            if target:
                ratio_n = service_p50 / floor_p50
                p99 = ms(runs["service"], "p99")
                verdicts.append(f"N={n} C={conns}: unsigned service p50 ratio {ratio_n:.2f} (target <= {target}: "
                                f"{'met' if ratio_n <= target else 'MISSED'})"
                                + (f"; p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'})"
                                   if n == 300 else ""))
    print()
    print("Targets (issues 12 and 15):")
    for v in verdicts:
        print(f"- {v}")
    out = patients.RESULTS / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine(), "seconds": seconds, "reps": reps,
                               "runs": [{"n": n, "c": c, **runs} for (n, c), runs in results.items()]}, indent=1))
    print(f"\nRaw runs: {out.relative_to(ROOT)}")
    return 0


def _postgres() -> Any:
    """A throwaway PostgreSQL cluster (tests/support/postgres.py), or None with a note when it cannot start."""
    from tests.support.postgres import PostgresCluster, PostgresError, find_bin

    bin_dir = find_bin()
    if bin_dir is None:
        print("  no PostgreSQL server binaries (apt-get install postgresql): no signed-postgresql run")
        return None
    try:
        return PostgresCluster(bin_dir)
    except PostgresError as exc:
        print(f"  PostgreSQL did not start ({exc}): no signed-postgresql run")
        return None


if __name__ == "__main__":
    sys.exit(main())
