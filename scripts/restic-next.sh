#!/usr/bin/env bash
# Places Debian 13 (trixie)'s restic at .venv/bin/restic-0.18, so the integration suite also runs against the
# newest restic the project supports (scripts/test.sh; tests/integration/conftest.py: BACKUPD_TEST_RESTIC).
# Uses a private apt state under .venv/apt-trixie: the machine's sources and package state stay untouched.
# restic is one static Go binary, so the trixie build runs on Debian 12. Idempotent; a failed download only warns.
set -euo pipefail
cd "$(dirname "$0")/.."
want=0.18
target=.venv/bin/restic-$want
if [ -x "$target" ] && "$target" version 2>/dev/null | grep -q "^restic $want\."; then
  exit 0
fi
state=.venv/apt-trixie
mkdir -p "$state/parts" "$state/lists/partial" "$state/cache/archives/partial" "$state/deb"
cat >"$state/parts/trixie.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$PWD/$state/parts"
      -o "Dir::State::Lists=$PWD/$state/lists" -o "Dir::Cache=$PWD/$state/cache" -o "Dir::State::status=/dev/null"
      -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
if ! apt-get "${opts[@]}" update -qq >/dev/null 2>"$state/update.log" \
   || ! (cd "$state/deb" && rm -f restic_*.deb && apt-get "${opts[@]}" download -qq restic 2>>"../update.log"); then
  echo "setup: warning: could not fetch Debian 13's restic (see $state/update.log); the restic $want run is skipped" >&2
  exit 0
fi
rm -rf "$state/x" && dpkg-deb -x "$state"/deb/restic_*.deb "$state/x"
install -m 0755 "$state/x/usr/bin/restic" "$target"
"$target" version | grep -q "^restic $want\." || { echo "setup: $target is not restic $want" >&2; rm -f "$target"; exit 1; }
echo "setup: $("$target" version | cut -d' ' -f1-2) at $target" >&2
