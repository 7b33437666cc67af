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

.PHONY: run test test-long fuzz lint typecheck contracts bench bench-sall bench-loop demo-model package package-check clean

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

# Issue 22's mutation campaign (tests/fuzz/campaign.py): N mutated images and DICOMs through
# read_image, each in a worker process; prints inputs, LoadErrors, other exceptions, crashes,
# hangs and blow-ups, and fails on any of the last four. FUZZ_ARGS="--save DIR" keeps them.
# make test-long runs 100,000 inputs of it (seed 22).
N ?= 2000
SEED ?= 1
FUZZ_ARGS ?=
fuzz: $(STAMP)
	$(PY) tests/fuzz/campaign.py --inputs $(N) --seed $(SEED) $(FUZZ_ARGS)

# Each prints figures and ratios measured in one run. bench_decode runs inside bench_io; the SALL
# ablation (5 seeds, long) is `make bench-sall`.
BENCHMARKS := benchmarks/bench_io.py benchmarks/bench_grading.py benchmarks/bench_explain.py \
	benchmarks/bench_finetune_epoch.py benchmarks/bench_gui_startup.py benchmarks/bench_gui_folder.py \
	benchmarks/bench_gui_viewer.py benchmarks/bench_gui_inference.py benchmarks/bench_gui_finetune.py \
	benchmarks/bench_triage.py
bench: $(STAMP)
	@for b in $(BENCHMARKS); do [ -f "$$b" ] || continue; echo "== $$b"; $(PY) $$b || exit 1; done
	@echo "== benchmarks/bench_gui_inference.py, the bundled demo model's architecture"
	$(PY) benchmarks/bench_gui_inference.py --backbone efficientnet_b0 --size 128

bench-sall: $(STAMP)
	$(PY) benchmarks/sall_vs_single_task.py

# The correction loop on a new clinic (docs/loop-benchmark.md). Quick by default: 200 random
# corrections, 3 seeds, the AdaBN and scratch baselines (15 min on 2 cores). The whole curve:
# make bench-loop LOOP_ARGS=--full ; DR-only corrections: LOOP_ARGS=--dr-only
LOOP_ARGS ?=
bench-loop: $(STAMP)
	$(PY) benchmarks/loop_curve.py $(LOOP_ARGS)

# The bundled demo model model_zoo/weights/demo/ (docs/demo-model.md): regenerates the synthetic
# set, trains a SALL student with training/configs/demo.toml (fixed seeds, CPU, ~25 min on 2 busy
# cores) and replaces the committed card + weights. Rerunning it rebuilds from scratch.
DEMO_DATA := build/demo-data
DEMO_RUN  := build/demo-run
DEMO_OUT  := model_zoo/weights/demo
demo-model: $(STAMP)
	rm -rf $(DEMO_DATA) $(DEMO_RUN) $(DEMO_OUT).tmp
	nice -n 5 $(PY) -m training synth --out $(DEMO_DATA) --n 1200 --seed 2024 --size 256 \
		--dicom-fraction 0 > /dev/null
	nice -n 5 $(PY) -m training sall --manifest $(DEMO_DATA)/manifest.csv --out $(DEMO_RUN) \
		--config training/configs/demo.toml --run-id demo-model \
		--intended-use "$$($(PY) -c 'from model_zoo.cards import SYNTHETIC_INTENDED_USE as u; print(u)')" \
		> /dev/null
	mkdir -p $(DEMO_OUT).tmp
	cp -r $(DEMO_RUN)/model/card.json $(DEMO_RUN)/model/weights.safetensors $(DEMO_RUN)/model/sets \
		$(DEMO_OUT).tmp/
	$(PY) -c "from model_zoo.checkpoints import load_checkpoint as l; l('$(DEMO_OUT).tmp', device='cpu')"
	rm -rf $(DEMO_OUT) && mv $(DEMO_OUT).tmp $(DEMO_OUT)
	@echo "demo model written to $(CURDIR)/$(DEMO_OUT) (run folder $(DEMO_RUN), report $(DEMO_RUN)/report.json)"

# One-folder bundle dist/sall-desktop/ with sall-desktop and sall-train (docs/packaging.md).
# ~5 min on 2 cores, 3.4 GB (CPU bundle); SALL_BUNDLE_CUDA=1 keeps every CUDA library (GPU bundle).
package: $(STAMP)
	$(PY) -m pip install --quiet -e '.[package]'
	test -f model_zoo/weights/demo/card.json || test -n "$$SALL_DEMO_MODEL_DIR" || $(MAKE) demo-model
	$(VENV)/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
		packaging/pyinstaller/sall_desktop.spec
	du -sh dist/sall-desktop

# The built bundle's own self-test (offscreen) and its training CLI; needs `make package` first.
package-check:
	test -x dist/sall-desktop/sall-desktop || { echo "no bundle in dist/: run make package"; exit 1; }
	QT_QPA_PLATFORM=offscreen dist/sall-desktop/sall-desktop --self-test
	dist/sall-desktop/sall-train --help > /dev/null
	@echo "package-check: the bundle works"

clean:
	rm -rf build dist .mypy_cache .ruff_cache
