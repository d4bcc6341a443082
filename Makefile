# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
# PYTHON is the interpreter that creates .venv; everything after runs inside .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	PYTHON=$(abspath $(PY)) bash examples/train_wm/world_model_demo.sh

test: install
	$(PY) -m pytest -q tests

clean:
	rm -rf saves .pytest_cache
