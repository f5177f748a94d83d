# pruneguard: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
THREADS ?= auto
# test processes (pytest-xdist): one per core by default; TEST_WORKERS=0 runs the suite in this process.
# loadgroup: tests marked xdist_group("ray") share one worker, so two local Ray clusters never compete
TEST_WORKERS ?= auto

.PHONY: setup demo test lint bench data browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 first: the CPU wheel on this machine's disk. A bare `torch` would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# AutoAttack (Croce & Hein, MIT) and ART (dev-only reference for benchmarks): --no-deps, their needs are above.
	$(PY) -m pip install -q --no-deps pyautoattack==0.2.0 adversarial-robustness-toolbox==1.20.1
	touch $(STAMP)

# shell: install Debian package $(1) (what is missing: $(2)) where apt-get is usable as root; $(3): what to do if the
# install fails, $(4): if apt-get is not usable
apt_install = if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "$(2) not found: installing Debian's $(1)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1)) >/dev/null \
	    || echo "warning: could not install $(1); $(3)"; \
	else echo "warning: $(2) not found and apt-get is not usable; $(4)"; fi

data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && [ -z "$$PRUNEGUARD_DATA" ]; then \
	  $(call apt_install,dataset-fashion-mnist,Fashion-MNIST,use --data-dir or pruneguard download,see README (Data)); \
	fi

setup: $(STAMP)

# the headless browser the report tests render pages in (they are skipped without one); CI installs it, a user's
# `make test` does not install system packages beyond the dataset
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(call apt_install,chromium,chromium,the browser tests will be skipped,the browser tests will be skipped); }

demo: setup data
	$(VENV)/bin/pruneguard demo --out runs/demo --overwrite --threads $(THREADS)

test: setup data
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
