#!/usr/bin/env bash
# `make test` prerequisites that make cannot install itself: say clearly what is missing and how to
# get it, instead of letting tests skip silently. (Python packages, Node.js 22 and the FHIR test
# engines are installed by make itself.)
set -u
missing=0
say() { echo "make test: $*" >&2; }

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is needed (found: $(python3 --version 2>&1))."; missing=1
fi

pg_bin=""
if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then pg_bin="$PG_BIN"; fi
if [ -z "$pg_bin" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || pg_bin=""
fi
if [ -z "$pg_bin" ]; then
  if [ "${MBC_TEST_SKIP_POSTGRES:-}" = "1" ]; then
    say "PostgreSQL server binaries not found; MBC_TEST_SKIP_POSTGRES=1: the PostgreSQL store tests will be SKIPPED."
  else
    say "PostgreSQL server binaries (initdb, postgres) not found. The feedback and JWT replay store tests start a"
    say "  throwaway PostgreSQL cluster. Install them (Debian/Ubuntu: sudo apt-get install -y postgresql; .ci/run does)"
    say "  or point PG_BIN at their bin directory; MBC_TEST_SKIP_POSTGRES=1 runs the rest and skips those tests."
    missing=1
  fi
elif [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  say "running as root: PostgreSQL refuses root, and the 'postgres' user (made by Debian's postgresql package) is missing."
  missing=1
fi

chromium="${MBC_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  say "Chromium not found at $chromium. The timeline viewer's browser tests drive Debian's chromium with Playwright"
  say "  (no browser is ever downloaded). Install it (sudo apt-get install -y chromium; .ci/run does) or set MBC_CHROMIUM."
  missing=1
fi

if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  say "HAProxy not found: the multi-replica rolling-restart test (tests/test_scaleout.py) will be SKIPPED"
  say "  (under CI it fails). Install it with sudo apt-get install -y haproxy (.ci/run does)."
fi

if ! command -v kubectl >/dev/null 2>&1; then
  say "kubectl not found: tests/test_kubernetes.py renders the manifests with 'kubectl kustomize'."
  missing=1
fi

exit $missing
