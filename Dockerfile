# syntax=docker/dockerfile:1
# Multi-stage: build a virtual environment with the pinned dependencies, copy it into a slim runtime.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY mappings ./mappings
COPY cds_hooks ./cds_hooks
COPY fixtures ./fixtures
RUN /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --home /app mbc && mkdir -p /app/data && chown mbc /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER mbc
ENV PATH=/opt/venv/bin:$PATH \
    MBC_HOST=0.0.0.0 \
    MBC_PORT=8080 \
    MBC_WORKERS=1 \
    MBC_FEEDBACK_DB=/app/data/feedback.sqlite3
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
  CMD python3 -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"MBC_PORT\",\"8080\")}/healthz', timeout=2)"
CMD ["mbc-cds-hooks", "serve"]
