# Two commands for a newcomer: `make demo` and `make test`.
# Each creates .venv on first use and installs heron with its test extras;
# the stamp file makes a second run install nothing new.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.heron-installed
BROWSER := $(VENV)/.heron-browser
EXTRAS := test,fast,serve,faces,browser

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# The browser tests drive Debian's chromium through Playwright. Installing it needs
# root and the Debian archive; where neither is there the browser tests skip
# and say why, so this step never fails the build.
$(BROWSER): $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  timeout 600 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver' \
	  >/dev/null 2>&1; } || echo "heron: chromium could not be installed; the browser tests will be skipped"
	touch $(BROWSER)

install: $(STAMP) $(BROWSER)

demo: $(STAMP)
	$(VENV)/bin/heron demo

test: $(STAMP) $(BROWSER)
	$(PY) -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/predict.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
