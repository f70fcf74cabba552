#!/usr/bin/env bash
# The tests: set up (idempotent), then unit tests (fast, moto) and integration/end-to-end tests
# against real restic, SeaweedFS and PostgreSQL. Extra arguments go to pytest. Each pass prints its 20
# slowest tests.
# Tests run on BACKUPD_TEST_WORKERS (default 3) pytest-xdist workers, a whole module to a worker (its module
# fixtures are built once; each worker brings up its own session stack on free ports). Three on two cores:
# the tests wait more than they compute (restic and SeaweedFS round trips, daemons' timers, deadlines).
# BACKUPD_TEST_WORKERS=0 runs everything in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
workers=(-n "${BACKUPD_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder)  # in tests/conftest.py's order
status=0  # a failure in the first pass still lets the second run: CI shows both
.venv/bin/python -m pytest -ra --durations=20 "${workers[@]}" "$@" || status=$?
# Without arguments: once more with Debian 13's restic 0.18 (the newest supported), when scripts/restic-next.sh
# could fetch it; BACKUPD_SKIP_RESTIC_NEXT=1 skips this pass. It runs the tests marked `restic`, not the whole
# integration suite: what changes between restic versions is what backupd/engine/ hands restic and reads back
# (argv and flags, JSON and text output, exit codes, the gates in backupd/engine/feature.py) and how restic
# behaves on signals, stalls and stale locks. The marked tests reach every restic subcommand backupd runs
# (backup of paths and of a command's stdin, restore, dump, snapshots, forget, prune, check with
# --read-data-subset, copy and init --copy-chunker-params, key add/list/remove, list/cat locks, unlock) and
# every gate (exit codes 10-12, --stdin-from-command, full snapshot ids, --stuck-request-timeout), plus
# test_stack_serve's check that the restic on PATH is 0.18 (`tag`, on a backup restic calls incomplete, has
# no integration test yet). The rest (evidence, S3 grants and locks, probes,
# sandbox, PostgreSQL loading, rendering, scheduling) reaches restic only through those same paths.
if [ $# -eq 0 ] && [ -x .venv/bin/restic-0.18 ] && [ "${BACKUPD_SKIP_RESTIC_NEXT:-0}" != 1 ]; then
  echo "test: the tests marked restic again with $(.venv/bin/restic-0.18 version | cut -d' ' -f1-2)" >&2
  BACKUPD_TEST_RESTIC=.venv/bin/restic-0.18 .venv/bin/python -m pytest -ra --durations=20 "${workers[@]}" \
    -m restic tests/integration || status=$((status ? status : $?))
fi
exit "$status"
