# Every target creates and uses .venv itself: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := $(shell find protos -name '*.proto')
PROTO_STAMP := protos/.generated

.PHONY: all install protos migrate seed run test lint bench clean

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
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO_SRC)
	touch $(PROTO_STAMP)

protos: $(PROTO_STAMP)

migrate: protos
	$(PY) -m credit_service migrate
	$(PY) -m render_service migrate

seed: migrate
	$(PY) -m credit_service seed

run: protos
	$(PY) -m carpet_common.devrun

test: protos
	./scripts/ensure-test-tools.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: protos
	$(PY) -m ruff check .

bench: protos
	$(PY) -m bench

clean:
	rm -rf $(VENV) var bench/results .pytest_cache .ruff_cache $(PROTO_STAMP) *.egg-info
	find protos -name '*_pb2*.py*' -delete
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
