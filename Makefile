# hdm: the two commands the README gives are `make reproduce` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# read by every kernel of the environment (papermill's, Lab's): see jupyter/ipython_kernel_config.py
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py

.PHONY: venv test reproduce check bench lab clean

venv: $(STAMP) $(KERNEL_CONFIG)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==25.3
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m hdm.jit
	touch $(STAMP)

$(KERNEL_CONFIG): jupyter/ipython_kernel_config.py $(STAMP)
	mkdir -p $(dir $@)
	cp $< $@

# two pytest-xdist workers taking whole files (a file's fixtures are built once), the longest files first
# (tests/conftest.py, which also runs every test process on one thread)
PYTEST_XDIST := -n 2 --dist loadfile --no-loadscope-reorder
test: venv
	$(PY) -m pytest -q $(PYTEST_XDIST)

reproduce: venv
	$(PY) -m hdm.reproduce --scale default

# after a rerun: which numbers agree with the committed ones, within what tolerance, and whether a verdict moved
SCALE ?= default
check: venv
	$(PY) -m hdm.reproduce --check --scale $(SCALE)

bench: venv
	$(PY) benchmarks/loss_speed.py

# JupyterLab on the repository (results/ included), opening on notebooks/. jupyter/jupyter_server_config.py: jupytext
# pairs (notebooks/<name>.py + .ipynb, both written on save, the .ipynb without outputs) and Lab's settings.
lab: venv
	$(PY) -m jupyter lab --config=jupyter/jupyter_server_config.py --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks

clean:
	rm -rf $(VENV) .pytest_cache
