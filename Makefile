# The README's two commands: `sudo make demo` and `sudo make check`.
PY := .venv/bin/python
.PHONY: setup test check lint types demo clean

setup:
	bash .ci/install

lint: setup
	.venv/bin/ruff check appliance tests

types: setup
	.venv/bin/mypy

test: setup
	$(PY) -m pytest -q -ra

check: lint types test

demo: setup
	bash scripts/demo.sh

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache results
