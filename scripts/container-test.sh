#!/usr/bin/env bash
# Build the Dockerfile for real and smoke-test the image, without Docker or a registry:
# podman builds it over a Debian base made locally with debootstrap, buildah runs its CMD on the
# host network (see ../shared/reference/container-build.md). Needs root on Debian bookworm.
#
#   scripts/container-test.sh            (or: make container-test)
#
# Environment: IMAGE (tag to build), BASE_IMAGE (default localhost/debian-py:bookworm, made if
# missing), MBC_CONTAINER_CACHE (directory that keeps the base rootfs tarball between runs, e.g. a
# CI cache; default /var/cache/mbc-cds-hooks), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "container-test: run as root" >&2; exit 2; }
  exec sudo --preserve-env=IMAGE,BASE_IMAGE,MBC_CONTAINER_CACHE,DEBIAN_MIRROR "$0" "$@"
fi

IMAGE=${IMAGE:-localhost/mbc-cds-hooks:test}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-py:bookworm}
CACHE=${MBC_CONTAINER_CACHE:-/var/cache/mbc-cds-hooks}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=.venv/bin/python
START=$SECONDS
step() { printf '[container-test %4ss] %s\n' "$((SECONDS - START))" "$*"; }

# 1. Tools.
missing=()
for tool in podman:podman buildah:buildah debootstrap:debootstrap pgrep:procps; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x "$PY" ] || { step "installing the project venv (make install)"; make install; }

# 2. Base image: python3 from Debian packages; the rootfs tarball is cached in $CACHE.
if ! podman image exists "$BASE_IMAGE"; then
  tarball="$CACHE/debian-py-bookworm.tar"
  if [ ! -s "$tarball" ]; then
    step "debootstrap bookworm (minbase + python3) -> $tarball"
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d /var/tmp/debian-py.XXXXXX)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bookworm "$rootfs" "$MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  step "importing $tarball as $BASE_IMAGE"
  podman import --quiet "$tarball" "$BASE_IMAGE" >/dev/null
fi

# 3. Build (docker format keeps the HEALTHCHECK; podman's layer cache makes rebuilds quick).
step "building $IMAGE"
ca=()  # pip in the build trusts what the host trusts (a proxy's CA too)
[ -s /etc/ssl/certs/ca-certificates.crt ] && ca=(--volume /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt)
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
podman build --isolation=chroot --format docker "${ca[@]}" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" . >/dev/null
# Drop the image this build replaced (the layer cache stays, so the next build is quick).
[ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ] && podman rmi "$previous" >/dev/null 2>&1 || true
podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "[container-test] image size %.0f MB\n", $1 / 1e6}'

# 4. Run the image's CMD on a free port; always stop it and remove the container.
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
ctr="" pid=""
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  [ "$rc" -ne 0 ] && [ -s "$work/service.log" ] && { echo "--- service log"; tail -n 40 "$work/service.log"; } >&2
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT INT TERM

ctr=$(buildah from "$IMAGE")
buildah config --env MBC_HOST=127.0.0.1 --env MBC_PORT="$port" --env MBC_WORKERS=2 --env MBC_AUTH_REQUIRED=false "$ctr"
uid=$(buildah run --isolation=chroot "$ctr" -- python3 -c 'import os; print(os.getuid())')
[ "$uid" != 0 ] || { echo "container-test: the image runs as root" >&2; exit 1; }
mapfile -t cmd < <(buildah inspect --type container --format '{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' "$ctr")
step "starting ${cmd[*]} as uid $uid on 127.0.0.1:$port"
setsid buildah run --isolation=chroot "$ctr" -- "${cmd[@]}" </dev/null >"$work/service.log" 2>&1 &
pid=$!

"$PY" - "$port" "$pid" <<'EOF'
import os, sys, time, httpx
base, pid = f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    try:
        if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    try:
        alive = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        alive = False
    if not alive:
        sys.exit("container-test: the service exited before answering /healthz")
    if time.monotonic() > deadline:
        sys.exit("container-test: /healthz did not answer within 60 s")
    time.sleep(0.3)
EOF
step "service is up"

# The image's own HEALTHCHECK command, run inside the container.
health=$(podman image inspect --format '{{index .Config.Healthcheck.Test 1}}' "$IMAGE")
buildah run --isolation=chroot "$ctr" -- sh -c "$health" || { echo "container-test: HEALTHCHECK failed" >&2; exit 1; }

.venv/bin/mbc-cds-hooks sample-request --bundle fixtures/patients/mbc-hrpos-bone-1.json >"$work/hook.json"
"$PY" - "$port" "$work/hook.json" <<'EOF'
import json, sys, httpx
base, body = f"http://127.0.0.1:{sys.argv[1]}", open(sys.argv[2], "rb").read()
services = httpx.get(f"{base}/cds-services", timeout=10).json()["services"]
assert "mbc-patient-view" in {s["id"] for s in services}, services
r = httpx.post(f"{base}/cds-services/mbc-patient-view", content=body, headers={"Content-Type": "application/json"}, timeout=30)
assert r.status_code == 200, (r.status_code, r.text[:500])
codes = [c["source"]["topic"]["code"] for c in r.json()["cards"]]
assert "mbc-summary" in codes, codes
assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
metrics = httpx.get(f"{base}/metrics", timeout=10).text  # both workers' figures (multiprocess mode)
assert 'mbc_hook_requests_total{hook="patient-view",service="mbc-patient-view",status="200"} 1.0' in metrics, metrics[-2000:]
print(f"[container-test] GET /cds-services: {len(services)} services; patient-view cards: {', '.join(codes)}")
EOF

# Graceful stop as `docker stop` does it: SIGTERM to the image's CMD process only (buildah's own
# processes would kill it outright); it must finish and exit 0 by itself.
runner=$(pgrep -g "$pid" -f '^buildah-chroot-exec' | head -n 1 || true)
main=""; [ -z "$runner" ] || main=$(pgrep -P "$runner" | head -n 1 || true)
[ -n "$main" ] || { echo "container-test: could not find the CMD's process under buildah run" >&2; exit 1; }
step "stopping with SIGTERM (the CMD's process $main)"
kill -TERM "$main"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$pid" 2>/dev/null; then echo "container-test: the service did not stop within 20 s of SIGTERM" >&2; exit 1; fi
status=0; wait "$pid" || status=$?
pid=""
[ "$status" -eq 0 ] || { echo "container-test: the service exited with status $status after SIGTERM" >&2; exit 1; }
grep -q "Finished server process" "$work/service.log" || { echo "container-test: no clean uvicorn shutdown in the log" >&2; exit 1; }
step "passed"
