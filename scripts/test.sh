#!/usr/bin/env bash
# Set up (if needed) with the test extras and run the whole test suite with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
exec .venv/bin/python -m pytest "$@"
