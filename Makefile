# Two commands on a fresh machine (README):
#   make run    install and start the service on http://127.0.0.1:8080 (embedded defaults, no FHIR server needed)
#   make test   install everything (Python packages, the FHIR test server's Node packages) and run all tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

fhir-test-server/node_modules/.package-lock.json: fhir-test-server/package-lock.json
	npm ci --no-audit --no-fund --prefix fhir-test-server

run: install
	$(VENV)/bin/mbc-cds-hooks serve

test: install fhir-test-server/node_modules/.package-lock.json
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) fhir-test-server/node_modules .pytest_cache
