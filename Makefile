# failhook's tasks. Everything the project needs is installed by these targets into .venv
# (Python) and node_modules (buf); nothing has to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= var
CERT_DIR ?= $(DATA_DIR)/certs
LISTEN ?= 127.0.0.1:50051
PYTEST_ARGS ?=

.PHONY: run install certs test check lint typecheck buf-lint buf-breaking generate check-generated ci bench clean image container-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

node_modules/.bin/buf: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.bin/buf

## The quick start: the orchestrator on SQLite, with development certificates (mTLS).
run: $(STAMP)
	@mkdir -p $(DATA_DIR)
	@test -f $(CERT_DIR)/ca.pem || $(BIN)/failhook certs init $(CERT_DIR)
	$(BIN)/failhook-orchestrator serve --listen $(LISTEN) \
	  --database sqlite+aiosqlite:///$(DATA_DIR)/failhook.db \
	  --tls-ca $(CERT_DIR)/ca.pem --tls-cert $(CERT_DIR)/orchestrator.pem --tls-key $(CERT_DIR)/orchestrator-key.pem

certs: $(STAMP)
	$(BIN)/failhook certs init $(CERT_DIR)

## The whole test suite (SQLite and PostgreSQL).
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## Static checks: lint, format, types, proto lint and breaking, generated-code drift.
check: lint typecheck buf-lint buf-breaking check-generated

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

buf-lint: node_modules/.bin/buf
	node_modules/.bin/buf lint
	node_modules/.bin/buf format --diff --exit-code

## The contract must not break against the previous commit of main.
buf-breaking: node_modules/.bin/buf
	@if git cat-file -e HEAD~1:proto/failhook/v1 2>/dev/null; then \
	  node_modules/.bin/buf breaking --against '.git#ref=HEAD~1,subdir=proto' && echo "buf breaking: no breaking change against HEAD~1"; \
	else echo "buf breaking: HEAD~1 has no contract yet, nothing to compare"; fi

generate: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

check-generated: generate
	@git add -N clients/python/failhook/v1 && git diff --exit-code --stat -- clients/python/failhook/v1 \
	  || (echo "generated code drifted from proto/: run 'make generate' and commit"; exit 1)

ci: test check

## The orchestrator's image (needs a Docker engine; CI builds and runs it with podman in tests/container).
image:
	docker build -t failhook-orchestrator .

container-test: $(STAMP)
	$(BIN)/pytest tests/container -s

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
