#!/usr/bin/env bash
# The main job: set up (idempotent), then the complete local demonstration on real restic,
# SeaweedFS (Object Lock) and PostgreSQL, all on 127.0.0.1. Extra arguments go to demo/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m demo.run "$@"
