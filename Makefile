# Two commands on a fresh machine (README):
#   make run    install and start the service on http://127.0.0.1:8080 (embedded defaults, no FHIR server needed)
#   make test   install everything (Python packages, both FHIR test engines: Medplum's Node packages, sekmet-fhir) and run all tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test container-test bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Node.js for the FHIR test server and the Medplum client test, from the npm registry (the platform
# package node-<os>-<arch> holds the official binary; no install script runs): Medplum 5.2.13 wants
# Node ^22.18.0 || >=24.2.0, and a machine's own node may be older (Debian bookworm ships 18, this
# machine has 20). `npm ci` runs under it too, so npm checks the engines against 22: no EBADENGINE.
NODE_VERSION := 22.23.3
NODE_PKG := node-$(shell uname -s | tr A-Z a-z)-$(shell uname -m | sed -e s/x86_64/x64/ -e s/aarch64/arm64/)
NODE_BIN := $(CURDIR)/.node/node_modules/.bin

.node/.installed-$(NODE_VERSION):
	@command -v npm >/dev/null || { echo "make test needs npm (any Node.js with npm) to install Node.js $(NODE_VERSION)"; exit 1; }
	rm -rf .node && npm install --silent --no-audit --no-fund --no-save --prefix .node $(NODE_PKG)@$(NODE_VERSION)
	touch $@

fhir-test-server/node_modules/.package-lock.json: fhir-test-server/package-lock.json .node/.installed-$(NODE_VERSION)
	PATH="$(NODE_BIN):$$PATH" npm ci --no-audit --no-fund --prefix fhir-test-server

# The second FHIR engine of the integration tests (sekmet-fhir), in its own venv: it pins its own FastAPI.
.venv-sekmet/.installed: fhir-test-server/sekmet-constraints.txt
	$(PYTHON) -m venv .venv-sekmet
	.venv-sekmet/bin/python -m pip install --quiet -c fhir-test-server/sekmet-constraints.txt sekmet-fhir
	touch $@

# The manifest checks (tests/test_kubernetes.py) in their own venv: kubernetes-validate ships the
# Kubernetes schemas; checkov pins many packages of its own.
.venv-iac/.installed: deploy/kubernetes/checks-constraints.txt
	$(PYTHON) -m venv .venv-iac
	.venv-iac/bin/python -m pip install --quiet -c deploy/kubernetes/checks-constraints.txt kubernetes-validate checkov
	touch $@

# Demo only: no EHR JWT is checked (the service logs a warning); production runs `mbc-cds-hooks serve` with MBC_TRUSTED_ISSUERS.
# The timeline viewer is on, so the summary card links it (README, Timeline viewer).
run: install
	MBC_AUTH_REQUIRED=false MBC_VIEWER_ENABLED=true $(VENV)/bin/mbc-cds-hooks serve

test: install fhir-test-server/node_modules/.package-lock.json .venv-sekmet/.installed .venv-iac/.installed
	@scripts/check-prerequisites.sh
	$(PY) -m mypy service mappings cds_hooks fixtures
	$(PY) -m pytest -q

# Build the Dockerfile for real (podman/buildah over a local Debian base) and smoke-test the image; needs root.
container-test: install
	scripts/container-test.sh

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .venv-sekmet .venv-iac .node fhir-test-server/node_modules .pytest_cache
