# Two commands on a fresh machine: `make demo` (set up, then compile a zoo model onto the default
# edge chip) and `make test` (set up, then lint and run the test suite). Both create .venv if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench bench-accuracy bench-quant clean chromium

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xbarforge demo

# Headless chromium lets tests/test_report_html.py open the `xbarforge report` page in a real browser.
# Installed only when missing, and only by root with apt-get, quietly; it never fails the build (without
# it that test skips with one line). About 10 s from Debian's mirror cache (see docs/report.md).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { export DEBIAN_FRONTEND=noninteractive; \
	    timeout 240 apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	    { timeout 120 apt-get update -qq >/dev/null 2>&1 && \
	      timeout 240 apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; } && \
	  echo "installed chromium (headless browser check of the HTML report)"; } || \
	  echo "chromium not installed: the HTML report's browser check will be skipped"

test: $(STAMP) chromium
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -q

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/compile_bench.py --readme
	$(PY) benchmarks/sim_bench.py
	$(PY) benchmarks/ir_drop_bench.py
	$(PY) benchmarks/fidelity_bench.py

# trains ResNet-20 on the CIFAR-10 JPEG copy (about 15-20 min on 2 cores) and simulates it on chips
bench-accuracy: $(STAMP)
	$(PY) benchmarks/accuracy_bench.py

# needs runs/r20 and runs/mv2 (xbarforge train resnet20 / mobilenetv2_cifar on CIFAR-10); about an hour on 2 cores
bench-quant: $(STAMP)
	$(PY) benchmarks/quant_bench.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
