# hasherd: the usual targets. Everything runs from a virtual environment in .venv that
# `make deps` creates; every other target depends on it, so `make test` and `make run`
# work on a fresh clone with only python3 (>= 3.11) present.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SECONDS ?= 3

.PHONY: bench bench-hashcat bench-kernel bench-deps bench-rig deps system-deps build run test test-coverage test-bench format lint typecheck pre-commit lanes clean install uninstall systemd-check

deps: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian tools the tests call (promtool, systemd-analyze, bpftool); a no-op once present.
system-deps:
	bash tools/install-system-deps.sh

# optional: hashcat and a CPU OpenCL runtime, the reference of `make bench-hashcat`
bench-deps:
	bash tools/install-system-deps.sh --bench

build: deps
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	$(BIN)/python -m hasherd.kernel.lanegen --check

# The main job: train the sample corpus shipped in the package (resumes if interrupted),
# then check every stored weight on the reference evaluator.
run: deps
	$(BIN)/hasherd train
	$(BIN)/hasherd verify --db data/weights/hasherd.db

test: deps system-deps lint typecheck
	$(BIN)/python -m pytest -q

test-coverage: deps system-deps
	$(BIN)/python -m pytest -q --cov=hasherd --cov-report=term-missing

bench: deps
	$(BIN)/hasherd bench --seconds $(SECONDS)

# the kernel against hashcat -m 21400 on the same CPU: in the trainer's call shape (its
# 64 records in 2 groups: 32 records x 256 per evaluate_many), one record of 256, and a
# large batch of one record (4096)
bench-hashcat: deps bench-deps
	$(BIN)/hasherd bench --seconds $(SECONDS) --evaluator numba --population 256 --records 32 --against hashcat
	$(BIN)/hasherd bench --seconds $(SECONDS) --evaluator numba --against hashcat
	$(BIN)/hasherd bench --seconds $(SECONDS) --evaluator numba --population 4096 --against hashcat

# the same job on numba alone and on numba plus a slow emulated chip chain (about a minute)
# where the kernel's time goes on one thread: hashing alone, the driver, zone 2, SHA-NI
bench-kernel: deps
	$(BIN)/python tools/bench_kernel.py

bench-rig: deps
	$(BIN)/python tools/bench_rig.py

test-bench: deps
	$(BIN)/hasherd bench --seconds $(SECONDS) --json
	$(BIN)/python tools/bench_train.py --quick

format: deps
	$(BIN)/ruff format hasherd tests tools
	$(BIN)/ruff check --fix hasherd tests tools

lint: deps
	$(BIN)/ruff format --check hasherd tests tools
	$(BIN)/ruff check hasherd tests tools

typecheck: deps
	$(BIN)/mypy hasherd

pre-commit: lint typecheck test

lanes: deps
	$(BIN)/python -m hasherd.kernel.lanegen

# As root: hasherd as a systemd service, in a virtual environment in $(PREFIX)
# (systemd/INSTALL.md). `make uninstall` keeps the config and the data; PURGE=1 drops them.
PREFIX ?= /opt/hasherd
install:
	bash tools/install.sh --prefix $(PREFIX)

uninstall:
	bash tools/install.sh --uninstall --prefix $(PREFIX) $(if $(filter 1,$(PURGE)),--purge)

# As root, not part of `make test`: boots Debian in systemd-nspawn and checks the
# installed service there (tools/systemd-check.sh; minutes, needs the network once).
systemd-check:
	bash tools/systemd-check.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
