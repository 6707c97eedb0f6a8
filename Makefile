# facegate — every target sets itself up: a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A Python 3.13 interpreter: $(PYTHON) if given, else python3.13 on PATH (pyenv's 3.13.0 included).
PYTHON ?= $(shell for c in "python3.13" "env PYENV_VERSION=3.13.0 python3.13" "$$HOME/.pyenv/versions/3.13.0/bin/python3.13"; do \
	$$c -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; done)
VENV := .venv
SAM_VENV := .venv-sam
LINT_VENV := .venv-lint
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
PORT ?= 3000
STAGE ?= dev
# Lambda targets: python3.13 on arm64 (Amazon Linux 2023).
LAMBDA_PLATFORM := --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --implementation cp --python-version 3.13 --only-binary=:all:

.PHONY: help run test test-fast lint validate build deploy bench openapi mutants clean

help:
	@echo "make run       serve the API on http://127.0.0.1:$(PORT) (AWS emulated in-process, local engine)"
	@echo "make test      lint, validate the template and run every test"
	@echo "make lint      ruff + mypy + cfn-lint + sam validate --lint + checkov + bandit"
	@echo "make build     sam build (no Docker needed)"
	@echo "make deploy    sam deploy (STAGE=dev|prod)"
	@echo "make bench     run the benchmarks under bench/"
	@echo "make openapi   regenerate docs/openapi.json from the code"
	@echo "make mutants   mutation testing of router, health, strategy, latency, vendors/base+wire, signing (MUTANTS='facegate.router*')"

python-check:
	@test -n "$(PYTHON)" || { echo "error: facegate needs Python 3.13 (the Lambda runtime). Install it (e.g. 'pyenv install 3.13.0') or pass PYTHON=/path/to/python3.13." >&2; exit 1; }

$(VENV)/.installed: requirements-dev.txt layers/facegate/requirements.txt layers/engine/requirements.txt pyproject.toml | python-check
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==24.2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt | python-check
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	@touch $@

$(LINT_VENV)/.installed: requirements-lint.txt | python-check
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-lint.txt
	@touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	PORT=$(PORT) $(BIN)/python -m facegate_local.server

lint: $(VENV)/.installed $(SAM_VENV)/.installed $(LINT_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases facegate_local functions
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region us-east-1
	$(LINT_VENV)/bin/checkov --config-file .checkov.yaml
	$(LINT_VENV)/bin/bandit -q -c pyproject.toml -r layers functions facegate_local

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: $(VENV)/.installed $(SAM_VENV)/.installed  # the template tests run the SAM transform
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not e2e"

build: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 PATH="$(abspath $(SAM_VENV))/bin:$$PATH" $(SAM) build --parallel

deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --config-env $(STAGE)

bench: $(VENV)/.installed
	$(BIN)/python -m bench

# mutmut names modules by their path: run it where the layer's package is at the top.
# MUTANTS narrows the run to mutant names matching a glob (e.g. 'facegate.signing.shuxun*').
MUTANTS ?=
mutants: $(VENV)/.installed
	rm -rf build/mutants && mkdir -p build/mutants/tests
	cp -r layers/facegate/facegate build/mutants/facegate
	cp -r tests/conftest.py tests/fixtures tests/unit build/mutants/tests/
	cp pyproject.toml build/mutants/
	cd build/mutants && FACEGATE_SHARED=$(abspath ../shared) ../../$(BIN)/mutmut run $(MUTANTS) && ../../$(BIN)/mutmut results

openapi: $(VENV)/.installed
	$(BIN)/python -m facegate_local.openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json
	cp docs/openapi.json functions/openapi/openapi.json  # what GET /openapi.json serves in AWS (PublishOpenApi)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache
