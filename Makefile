# failhook's tasks. Everything the project needs is installed by these targets into .venv
# (Python: the SDK and the orchestrator, editable) and node_modules (buf, its TypeScript plugin,
# tsc and the TypeScript worker's dependencies: one npm workspace); nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= var
CERT_DIR ?= $(DATA_DIR)/certs
LISTEN ?= 127.0.0.1:50051
PYTEST_ARGS ?=

.PHONY: run install certs test chromium check lint typecheck ts-build ts-check ts-test buf-lint buf-breaking generate check-generated ci bench bench-peers clean image container-test

NODE_STAMP := node_modules/.installed
NODE_MANIFESTS := package.json package-lock.json clients/typescript/package.json examples/typescript/package.json tests/typescript/package.json

$(STAMP): pyproject.toml clients/python/pyproject.toml service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e service -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP) $(NODE_STAMP)

$(NODE_STAMP): $(NODE_MANIFESTS)
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## The quick start: the orchestrator on SQLite, with development certificates (mTLS).
run: $(STAMP)
	@mkdir -p $(DATA_DIR)
	@test -f $(CERT_DIR)/ca.pem || $(BIN)/failhook certs init $(CERT_DIR)
	$(BIN)/failhook-orchestrator serve --listen $(LISTEN) \
	  --database sqlite+aiosqlite:///$(DATA_DIR)/failhook.db \
	  --tls-ca $(CERT_DIR)/ca.pem --tls-cert $(CERT_DIR)/orchestrator.pem --tls-key $(CERT_DIR)/orchestrator-key.pem

certs: $(STAMP)
	$(BIN)/failhook certs init $(CERT_DIR)

## The whole test suite (SQLite and PostgreSQL), the TypeScript unit tests first; the console's
## browser tests need Debian's Chromium.
test: $(STAMP) ts-test chromium
	$(BIN)/pytest $(PYTEST_ARGS)

## Debian's Chromium for the console's browser tests (installed as root where missing).
chromium:
	bash scripts/install-chromium.sh

## TypeScript: build every project (strict tsc, incremental), run the SDK's unit tests (node --test).
ts-build: $(NODE_STAMP)
	node_modules/.bin/tsc -b

ts-test: ts-build
	node --test clients/typescript/dist/test/

## tsc --strict: the SDK without output, then the projects that reference it (they need its declarations).
ts-check: $(NODE_STAMP)
	node_modules/.bin/tsc --noEmit -p clients/typescript
	node_modules/.bin/tsc -b

## Static checks: lint, format, types, proto lint and breaking, generated-code drift.
check: lint typecheck ts-check buf-lint buf-breaking check-generated

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

buf-lint: $(NODE_STAMP)
	node_modules/.bin/buf lint
	node_modules/.bin/buf format --diff --exit-code

## The contract must not break against the previous commit of main.
buf-breaking: $(NODE_STAMP)
	@if git cat-file -e HEAD~1:proto/failhook/v1 2>/dev/null; then \
	  node_modules/.bin/buf breaking --against '.git#ref=HEAD~1,subdir=proto' && echo "buf breaking: no breaking change against HEAD~1"; \
	else echo "buf breaking: HEAD~1 has no contract yet, nothing to compare"; fi

## Python stubs with grpcio-tools (scripts/gen_protos.py), TypeScript with buf and protoc-gen-es (buf.gen.yaml).
generate: $(STAMP) $(NODE_STAMP)
	$(BIN)/python scripts/gen_protos.py
	node_modules/.bin/buf generate

GENERATED := clients/python/failhook/v1 clients/typescript/src/gen

check-generated: generate
	@git add -N $(GENERATED) && git diff --exit-code --stat -- $(GENERATED) \
	  || (echo "generated code drifted from proto/: run 'make generate' and commit"; exit 1)

ci: test check

## The orchestrator's image (needs a Docker engine; CI builds and runs it with podman in tests/container).
image:
	docker build -t failhook-orchestrator .

container-test: $(STAMP)
	$(BIN)/pytest tests/container -s

## The benchmark; with the peers (Restate, Temporal) when `make bench-peers` has installed them.
PEERS := bench/.peers
bench: $(STAMP)
	$(BIN)/python bench/run.py $(if $(wildcard $(PEERS)/.installed),--peers) $(BENCH_ARGS)

## The benchmark's peers, into bench/.peers (git-ignored; never in CI): a venv with the Restate
## and Temporal Python packages and the `temporal` CLI, and node_modules with the Restate server.
bench-peers: $(PEERS)/.installed

$(PEERS)/.installed: bench/peer-deps/requirements.txt bench/peer-deps/package.json
	$(PYTHON) -m venv $(PEERS)/venv
	$(PEERS)/venv/bin/pip install --quiet --upgrade pip
	$(PEERS)/venv/bin/pip install --quiet -r bench/peer-deps/requirements.txt
	cp bench/peer-deps/package.json $(PEERS)/package.json
	SCARF_ANALYTICS=false npm install --prefix $(PEERS) --no-audit --no-fund --silent
	touch $@

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache clients/typescript/dist examples/typescript/dist tests/typescript/dist
