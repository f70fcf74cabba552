#!/usr/bin/env bash
# The tests: set up (idempotent), then unit tests (fast, moto) and integration/end-to-end tests
# against real restic, SeaweedFS and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -ra "$@"
# Without arguments: the integration suite once more with Debian 13's restic 0.18 (the newest supported),
# when scripts/restic-next.sh could fetch it; BACKUPD_SKIP_RESTIC_NEXT=1 skips this run.
if [ $# -eq 0 ] && [ -x .venv/bin/restic-0.18 ] && [ "${BACKUPD_SKIP_RESTIC_NEXT:-0}" != 1 ]; then
  echo "test: the integration suite again with $(.venv/bin/restic-0.18 version | cut -d' ' -f1-2)" >&2
  BACKUPD_TEST_RESTIC=.venv/bin/restic-0.18 exec .venv/bin/python -m pytest -ra tests/integration
fi
