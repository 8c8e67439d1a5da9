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

fhir-test-server/node_modules/.package-lock.json: fhir-test-server/package-lock.json
	npm ci --no-audit --no-fund --prefix fhir-test-server

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
	$(PY) -m mypy service mappings cds_hooks fixtures
	$(PY) -m pytest -q

# Build the Dockerfile for real (podman/buildah over a local Debian base) and smoke-test the image; needs root.
container-test: install
	scripts/container-test.sh

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .venv-sekmet .venv-iac fhir-test-server/node_modules .pytest_cache
