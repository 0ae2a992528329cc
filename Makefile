# Every target creates and uses .venv itself: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# protos/third_party: Google's HTTP annotations, vendored for protoc and buf; their Python
# modules come from the googleapis-common-protos package.
PROTO_SRC := $(shell find protos -name '*.proto' -not -path 'protos/third_party/*')
PROTO_STAMP := protos/.generated

.PHONY: all install protos migrate seed run test lint bench profile mutate sim clients clean

all: protos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

# Stubs are generated next to the .proto files (git-ignored) with the repo root as the
# include path, so `protos/carpet/credit/v1/account.proto` imports as
# `protos.carpet.credit.v1.account_pb2` with no sys.path edits.
$(PROTO_STAMP): $(STAMP) $(PROTO_SRC)
	$(PY) -m grpc_tools.protoc -I . -I protos/third_party --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO_SRC)
	touch $(PROTO_STAMP)

protos: $(PROTO_STAMP)

migrate: protos
	$(PY) -m credit_service migrate
	$(PY) -m render_service migrate

seed: migrate
	$(PY) -m credit_service seed
	$(PY) -m render_service seed

run: protos
	$(PY) -m carpet_common.devrun

# The admin page tests drive Debian's chromium and the Node client's tests need npm and its
# dependencies: the script installs what is missing.
test: protos
	./scripts/ensure-test-tools.sh
	$(PY) -m pytest $(PYTEST_ARGS)

# buf breaking compares the protos with the previous commit's (BUF_AGAINST to choose another
# baseline, e.g. a release tag: BUF_AGAINST='.git#tag=v1.0.0').
BUF_AGAINST ?= .git\#ref=HEAD~1

lint: protos
	$(PY) -m ruff check .
	$(PY) scripts/check_determinism.py
	$(PY) -m mypy
	$(VENV)/bin/buf lint
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
		$(VENV)/bin/buf breaking --against '$(BUF_AGAINST)'; \
	else echo "buf breaking: no previous commit to compare with (shallow clone?)"; fi
	$(VENV)/bin/hadolint Containerfile
	VENV=$(VENV) ./scripts/lint-kubernetes.sh

bench: protos
	$(PY) -m bench

# The deterministic simulation (docs/reliability.md): SEED (default: a fresh one), STEPS
# (default: a million), SIM_DATABASE (a PostgreSQL URL; default: SQLite in memory).
SEED ?=
STEPS ?= 1000000
SIM_DATABASE ?=
sim: protos
	$(PY) -m tests.sim --steps $(STEPS) $(if $(SEED),--seed $(SEED)) \
		$(if $(SIM_DATABASE),--database '$(SIM_DATABASE)')

# Where a submission's CPU goes: py-spy flame graphs of both services under render.submit.
profile: protos
	$(PY) -m pip install --quiet -e '.[profile]'
	$(PY) -m bench.profile

# Mutation testing of the money, grants, audit, sign-in and policy modules (cosmic-ray, in a
# copy of the repository under var/mutate; not part of make test). MODULE=path runs one module,
# LINES=a-b only the mutants of those lines.
mutate: protos
	$(PY) -m pip install --quiet -e '.[mutate]'
	$(PY) scripts/mutate.py

# The client packages for internal backends (`README.md`), their stubs and types generated
# from protos/ as they build: a wheel in clients/python/dist, the Node package in clients/node/dist.
clients: $(STAMP)
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir clients/python/dist ./clients/python
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error && npm run build

clean:
	rm -rf $(VENV) var bench/results .pytest_cache .ruff_cache .mypy_cache $(PROTO_STAMP) *.egg-info \
		clients/python/build clients/python/dist clients/python/*.egg-info \
		clients/node/node_modules clients/node/dist clients/node/src/generated clients/node/protos
	find protos -name '*_pb2*.py*' -delete
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
