#!/usr/bin/env bash
# Install backupd from an offline bundle (built by scripts/offline-bundle.sh; shipped as install.sh inside it).
# Uses nothing but the bundle: no network, no package index.
#   ./install.sh [--prefix DIR] [--python PYTHON] [--no-system] [--enable] [--verifier] [--uninstall]
#   --prefix DIR   the venv (default /opt/backupd); its bin/backupd is linked to /usr/local/bin/backupd
#   --no-system    only the venv (its share/ has the man pages, docs and bash completion): skip the Debian
#                  packages, the /usr/local/bin link, the system-wide man pages and completion, units and docs
#   --enable       enable and start the units (default: installed, not enabled)
#   --verifier     install the verifier's units instead of the backup host's (deploy/systemd/install.sh)
#   --uninstall    remove the program (venv, link, man pages, completion) and the units; keep state, evidence,
#                  /etc/backupd, the users and the Debian packages
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix=/opt/backupd python=python3 system=yes unit_args=() uninstall=no
usage() { sed -n '2,12s/^# \{0,1\}//p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix="$2"; shift ;;
    --python) [ $# -ge 2 ] || usage; python="$2"; shift ;;
    --no-system) system=no ;;
    --enable|--verifier) unit_args+=("$1") ;;
    --uninstall) uninstall=yes ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown option $1" >&2; usage ;;
  esac
  shift
done
say() { echo "install.sh: $*" >&2; }
prefix="$(realpath -m -- "$prefix")"  # the /usr/local/bin link must not be relative

if [ "$uninstall" = yes ]; then
  [ "$(id -u)" = 0 ] || { say "run as root"; exit 2; }
  [ -x "$prefix/bin/backupd" ] || [ ! -e "$prefix" ] || { say "$prefix is not a backupd venv; not removed"; exit 2; }
  "$here/deploy/systemd/install.sh" --uninstall
  [ "$(readlink /usr/local/bin/backupd 2>/dev/null)" = "$prefix/bin/backupd" ] && rm -f /usr/local/bin/backupd
  rm -f /usr/local/share/man/man1/backupd.1 /usr/local/share/man/man1/backupd-*.1 \
    /usr/share/bash-completion/completions/backupd
  rm -rf -- "$prefix"
  say "removed $prefix and the units; state and evidence (/var/lib/backupd*) and /etc/backupd are kept"
  exit 0
fi

(cd "$here" && sha256sum --quiet -c SHA256SUMS) || { say "bundle damaged: SHA256SUMS does not match"; exit 1; }
want="$(sed -n 's/^python //p' "$here/BUNDLE-INFO")"
have="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
  say "$python not found; install Python $want (or pass --python)"; exit 3; }
[ "$have" = "$want" ] || { say "the wheelhouse is for Python $want, $python is $have"; exit 3; }

if [ "$system" = yes ]; then
  [ "$(id -u)" = 0 ] || { say "run as root (or use --no-system --prefix DIR)"; exit 2; }
  missing=()
  for deb in "$here"/debs/*.deb; do
    pkg="$(dpkg-deb -f "$deb" Package)"
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$deb")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${#missing[@]} Debian package(s)"
    dpkg -i "${missing[@]}"
  fi
fi

# The host's pip configuration (index URLs, find-links, constraints) must not leak into an offline install.
for var in $(compgen -e | grep '^PIP_' || true); do unset "$var"; done
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
say "creating the venv $prefix"
"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --no-index --find-links "$here/wheelhouse" --require-hashes \
  -r "$here/requirements.lock"
"$prefix/bin/python" -m pip install --quiet --no-index --no-deps "$here"/backupd-*.whl
"$prefix/bin/backupd" --version >&2
# click's bash completion script, written by the installed backupd so it matches its commands
mkdir -p "$prefix/share/bash-completion/completions"
_BACKUPD_COMPLETE=bash_source "$prefix/bin/backupd" >"$prefix/share/bash-completion/completions/backupd"

if [ "$system" = yes ]; then
  ln -sfn "$prefix/bin/backupd" /usr/local/bin/backupd
  # man backupd, man backupd-drill, ...: the wheel's pages (share/man/man1), a removed command's page goes
  install -d -m 0755 /usr/local/share/man/man1
  rm -f /usr/local/share/man/man1/backupd.1 /usr/local/share/man/man1/backupd-*.1
  install -m 0644 "$prefix"/share/man/man1/backupd*.1 /usr/local/share/man/man1/
  install -D -m 0644 "$prefix/share/bash-completion/completions/backupd" \
    /usr/share/bash-completion/completions/backupd
  # users, directories, configs, units and docs; enables the units only with --enable
  "$here/deploy/systemd/install.sh" "${unit_args[@]}"
fi
say "done; backupd is $prefix/bin/backupd"
