# pesflow: `make demo` installs everything and runs the main job; `make test` installs
# everything and runs the test suite. Both are idempotent: set-up takes seconds once done.
.PHONY: setup demo test test-slow lint

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/pesflow demo

test: setup
	@bash scripts/test.sh

test-slow: setup
	@bash scripts/test.sh -m slow

lint: setup
	@.venv/bin/ruff check pesflow tests benchmarks
