# leakwatch — every target does its own setup (scripts/bootstrap.sh is idempotent).
# On a fresh Debian machine: `make test` sets up and runs the test suite; `make demo` sets up
# and scans generated sample logs.
.PHONY: setup test demo bench clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@./scripts/bootstrap.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) scripts/demo.py

bench:
	@LEAKWATCH_EXTRAS=dev,bench ./scripts/bootstrap.sh
	$(PY) -m pytest bench/ --benchmark-only -p no:cacheprovider --benchmark-columns=min,median,max,rounds --benchmark-sort=name

clean:
	rm -rf build demo-out .pytest_cache src/leakwatch/_core/*.so src/leakwatch/_core/*.cpp src/leakwatch/_core/*.c
