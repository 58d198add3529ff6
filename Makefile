# hdm: the two commands the README gives are `make reproduce` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test reproduce bench lab clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==25.3
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

reproduce: venv
	$(PY) -m hdm.reproduce --scale default

bench: venv
	$(PY) benchmarks/loss_speed.py

# Notebooks are jupytext pairs (notebooks/<name>.py + .ipynb): jupytext's contents manager writes both on save.
lab: venv
	$(PY) -m jupyter lab --ServerApp.contents_manager_class=jupytext.AsyncTextFileContentsManager notebooks/

clean:
	rm -rf $(VENV) .pytest_cache
