# Two commands on a fresh machine: `make demo` (main job) and `make test` (full suite).
# Both create .venv, install the pinned dependencies and the package (editable), then run.

PYTHON_SYSTEM ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install interfaces install-gpu test test-fast demo lint bench clean tracks

UV_VERSION := 0.13.9

# uv downloads, installs and byte-compiles in parallel: ~30 s here against ~100 s for pip, the
# same pinned set. Byte-compiling at install matters where PYTHONDONTWRITEBYTECODE is set:
# every process (each node, each CLI run of the tests) would otherwise compile JAX's sources
# again. pip, which reads the machine's pip configuration, takes over if uv cannot install.
$(STAMP): requirements.txt requirements-dev.txt setup.py package.xml
	$(PYTHON_SYSTEM) -m venv $(VENV)
	( $(PIP) install --quiet uv==$(UV_VERSION) && $(VENV)/bin/uv pip install --quiet \
	    --compile-bytecode --python $(PY) -r requirements.txt -r requirements-dev.txt ) \
	  || $(PIP) install --quiet -r requirements.txt -r requirements-dev.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m compileall -q mppi_ros
	touch $(STAMP)

install: $(STAMP)

# ackermann_msgs, built with rosidl into .venv (cached: rebuilt when its sources change).
INTERFACES := $(VENV)/.interfaces
$(INTERFACES): $(STAMP) test/interfaces/build.sh $(wildcard test/interfaces/*/* test/interfaces/*/msg/*)
	bash test/interfaces/build.sh $(VENV)
	touch $(INTERFACES)

interfaces: $(INTERFACES)

install-gpu: install
	# onnxruntime and onnxruntime-gpu install the same module: keep only the GPU one.
	$(PIP) uninstall -y onnxruntime
	$(PIP) install -r requirements-gpu.txt

test: install interfaces
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: install interfaces
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow" $(PYTEST_ARGS)

demo: install
	$(PY) -m mppi_ros.cli demo

lint: install
	$(VENV)/bin/ruff check mppi_ros test

tracks: install
	$(PY) -m mppi_ros.cli tracks generate

clean:
	rm -rf $(VENV) build *.egg-info demo_output bench_output .pytest_cache
