# The two commands of the README (`make demo`, `make test`) do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo quickstart test lint docs bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The flagship demo: the noisy-cone part of the programmable-VI reproduction (Table 4 and
# Figure 2, NumPyro in the same run; about two minutes on 2 CPU cores) into results/.
demo: $(STAMP)
	$(PY) -m paper_reproductions programmable_vi --part cone --out results/programmable_vi

quickstart: $(STAMP)
	$(PY) examples/quickstart.py

test: $(STAMP)
	XLA_FLAGS="--xla_force_host_platform_device_count=2" $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check genvi tests benchmarks examples paper_reproductions

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) benchmarks/adev_overhead.py

clean:
	rm -rf $(VENV) site .pytest_cache
