# modelfleet — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= all,dev

.PHONY: demo test e2e check format bench soak system-deps venv clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

demo: system-deps $(STAMP)
	$(BIN)/python examples/demo.py

test: system-deps $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" --cov --cov-report=term $(PYTEST_ARGS)

# A real single-node Kubernetes (built from Debian's source package) for the end-to-end test.
e2e: system-deps $(STAMP)
	scripts/k8s/build.sh
	scripts/k8s/down.sh
	scripts/k8s/up.sh
	trap 'scripts/k8s/down.sh' EXIT; KUBECONFIG=$${K8S_RUN:-/tmp/modelfleet-k8s}/kubeconfig \
	  $(BIN)/python -m pytest -m e2e -p no:cacheprovider -s tests/e2e $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache .coverage

bench: $(STAMP)
	benchmarks/peers/setup.sh
	$(BIN)/python benchmarks/serving.py $(BENCH_ARGS)

# Opt-in, not part of `make test`: a real server under mixed clients for SOAK_SECONDS (180).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $${SOAK_SECONDS:-180}
