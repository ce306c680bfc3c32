#!/usr/bin/env bash
# Run the test suite in .venv (after scripts/setup.sh). Extra arguments go to pytest.
# pytest's exit status 5 (no tests collected) is a failure here, like any non-zero status.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/python -m pytest "$@"
status=$?
[ $status -eq 5 ] && echo "pytest collected no tests: failing" >&2
exit $status
