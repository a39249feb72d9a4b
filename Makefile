# leakwatch — every target does its own setup (scripts/bootstrap.sh is idempotent).
# On a fresh Debian machine: `make test` sets up and runs the test suite; `make demo` sets up
# and runs a breach drill (~80 s): synthetic logs with planted leaks replayed through the real
# watch path at 60x, live in the incident console in a terminal (q stops), headless with the
# score printed otherwise (CI); exit 0 when the drill passed. `make demo-scan` scans generated
# sample logs and walks an incident through its clocks, playbook and notice instead.
# Shorter drill: `make demo LEAKWATCH_DEMO_SPEED=300`.
.PHONY: setup test demo demo-scan bench clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@./scripts/bootstrap.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) scripts/demo.py

demo-scan: setup
	$(PY) scripts/demo.py --scan

bench:
	@LEAKWATCH_EXTRAS=dev,bench ./scripts/bootstrap.sh
	$(PY) -m pytest bench/ --benchmark-only -p no:cacheprovider --benchmark-columns=min,median,max,rounds --benchmark-sort=name

clean:
	rm -rf build demo-out .pytest_cache src/leakwatch/_core/*.so src/leakwatch/_core/*.cpp src/leakwatch/_core/*.c
