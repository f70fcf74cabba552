#!/usr/bin/env bash
# The tests: set up (idempotent), then unit tests (fast, moto) and integration/end-to-end tests
# against real restic, SeaweedFS and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -ra "$@"
