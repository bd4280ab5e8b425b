# The two commands the README gives: `make run` and `make test`. Both set everything up from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A CPU build of torch where there is no GPU (it lies on these machines' disks); the default CUDA build where there is.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
DEMO_DATA := $(CURDIR)/.demo

.PHONY: install install-serve system-packages run test test-quality lint typecheck demo-corpus bench bench-http bench-http-peer bench-slow-clients bench-scale bench-collections bench-recall clean

# Two installs into one .venv: what serving needs (`make run`: the package and its dependencies), and
# on top of it the `dev` and `ray` extras (`make test` and the benchmarks). pip is not quiet: a first
# install downloads hundreds of MiB, and its progress bars show that it is moving (sizes and times: README).
install-serve: $(VENV)/.installed-serve
install: $(VENV)/.installed

$(VENV)/.installed-serve: pyproject.toml
	test -x $(PY) || { PYTHON=$(PYTHON) .ci/system-packages venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-serve
	$(PY) -m pip install -e ".[dev,ray]"
	touch $@

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

# The Debian packages the tests need (PostgreSQL 15, Chromium and its driver), installed when missing; with them
# present this only looks at three paths. First, so that a machine where they cannot be installed says so at once.
system-packages:
	.ci/system-packages postgres chromium

# Every test but the full-corpus quality evaluation, which embeds all of SciFact with the real model:
# compute-bound, it alone outlasts the rest of the suite on a CPU without native bf16 (docs/benchmarks.md).
# Processes for the suite (a test file to each at a time, so module-scoped servers start once).
TEST_WORKERS ?= 2
test: system-packages install lint typecheck
	$(VENV)/bin/pytest -m "not quality" -n $(TEST_WORKERS) --dist loadfile

# The published SciFact figures reproduced (MTEB parity) and the default settings' quality; CI runs it after `test`.
test-quality: install
	$(VENV)/bin/pytest -m quality

demo-corpus: install-serve
	$(PY) -m indexer.ingest.demo $(DEMO_DATA)/corpus

HOST ?= 127.0.0.1
PORT ?= 8000

run: demo-corpus
	SEMSEARCH_DATA_DIR=$(DEMO_DATA)/data $(VENV)/bin/semsearch index $(DEMO_DATA)/corpus
	SEMSEARCH_DATA_DIR=$(DEMO_DATA)/data $(VENV)/bin/semsearch search "how do I read a file line by line" -k 3
	@echo "serving on http://$(HOST):$(PORT)  (try: curl '$(HOST):$(PORT)/search?q=parse+command+line+options&k=3')"
	SEMSEARCH_DATA_DIR=$(DEMO_DATA)/data $(VENV)/bin/semsearch serve --host $(HOST) --port $(PORT)

# Encoder, then ANN (each in its own process), then one summary table of ratios against the references.
bench: install
	$(PY) -m bench

# Apart from `bench`, which must stay under 15 minutes: indexing SciFact for it alone takes 3-5.
bench-http: install
	$(PY) -m bench.http_load

# semsearch dense and hybrid against txtai's API (the `bench` extra) over the same 2,000 SciFact documents'
# chunks, model and clients, in alternating rounds (about 10 minutes once both indexes are built).
bench-http-peer: $(VENV)/.installed-bench
	$(PY) -m bench.http_load --peer txtai --docs 2000 --clients 1,8,32 --seconds 8 --warmup 2 --rounds 6

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -e ".[bench]"
	touch $@

# A connected client's search latency while another process holds 1,000 idle half-open connections.
bench-slow-clients: install
	$(PY) -m bench.slow_clients

# Writes, filters, start-up and memory at 1M synthetic chunks and at 100k (N=... to change).
N ?= 1000000
bench-scale: install
	$(PY) -m bench.scale --n $(N)

# 100 collections of 2,000 synthetic chunks and one of 1M: a small one's search p50 served among them
# against alone, the server's memory against its index files, start to first answer.
bench-collections: install
	$(PY) -m bench.collections

# Recall of `auto` on tight synthetic clusters at 1M, raw and after the searcher's exact re-rank.
bench-recall: install
	$(PY) -m bench.recall --n $(N)

clean:
	rm -rf $(VENV) $(DEMO_DATA) .mypy_cache .ruff_cache .pytest_cache
