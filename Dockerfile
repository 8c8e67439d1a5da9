# Multi-stage: build a virtual environment with the pinned dependencies (constraints.txt), copy it
# into a runtime stage that holds only the venv and runs as a non-root user.
# No "# syntax=" line: BuildKit would fetch a frontend image from a registry at build time.
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module; every stage uses it so the venv's
# interpreter path is the same in both (scripts/container-test.sh builds over a local Debian base).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# PIP_CERT: optional CA bundle for a TLS-intercepting proxy (a path mounted into the build, e.g.
# by scripts/container-test.sh); build args are not kept in the runtime stage.
ARG PIP_CERT=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first (their own layer, rebuilt only when pyproject.toml or constraints.txt change).
COPY pyproject.toml constraints.txt ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY service ./service
COPY mappings ./mappings
COPY cds_hooks ./cds_hooks
COPY fixtures ./fixtures
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes --quiet setuptools pip

FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin mbc \
 && mkdir -p /app/data && chown mbc:mbc /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MBC_HOST=0.0.0.0 \
    MBC_PORT=8080 \
    MBC_WORKERS=1 \
    MBC_FEEDBACK_DB=/app/data/feedback.sqlite3
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MBC_PORT', '8080'), timeout=2)"
# SIGTERM (docker stop): MBC_DRAIN_SECONDS (5) of draining, then in-flight calls finish within
# MBC_SHUTDOWN_GRACE_SECONDS (10): give `docker stop -t` (compose: stop_grace_period) more than both.
CMD ["mbc-cds-hooks", "serve"]
