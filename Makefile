# Two commands matter on a fresh machine: `make run` and `make test`. Every target bootstraps
# .venv on first use; the stamp makes a second run skip the install (it is redone only when
# pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export QT_QPA_PLATFORM ?= offscreen
# glibc's default malloc thresholds make torch CPU inference ~1.7x slower on large batches.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296

.PHONY: run test test-long lint typecheck contracts bench demo-model package clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	env -u QT_QPA_PLATFORM $(VENV)/bin/sall-desktop

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

contracts: $(STAMP)
	$(VENV)/bin/lint-imports

test: lint typecheck contracts
	$(VENV)/bin/pytest -m "not long" -p no:cacheprovider

test-long: $(STAMP)
	$(VENV)/bin/pytest -m long -p no:cacheprovider

bench: $(STAMP)
	for b in benchmarks/bench_io.py benchmarks/bench_explain.py benchmarks/bench_gui_*.py; do [ -f "$$b" ] || continue; echo "== $$b"; $(PY) $$b || exit 1; done

package: $(STAMP)
	$(PY) -m pip install --quiet -e '.[package]'
	$(VENV)/bin/pyinstaller --noconfirm --clean packaging/pyinstaller/sall_desktop.spec

clean:
	rm -rf build dist .mypy_cache .ruff_cache
