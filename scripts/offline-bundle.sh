#!/usr/bin/env bash
# Build one archive that installs backupd on a host without network access (a closed TOS network).
#   scripts/offline-bundle.sh [OUT_DIR]            (default OUT_DIR: dist/)
# Writes OUT_DIR/backupd-offline-<version>.tar.gz holding: the backupd wheel, a wheelhouse of every runtime
# dependency pinned with sha256 hashes in requirements.lock (versions taken from .venv, test extras left out),
# the Debian packages restic, bubblewrap and postgresql-client-15 with their non-required dependencies, the
# systemd units, the docs and install.sh (run `install.sh --help` inside the unpacked bundle).
# Needs network access to the package registries (PyPI and the Debian mirror) while it builds; run it on a
# machine of the same Debian release, architecture and Python minor version as the target host.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "offline-bundle.sh: $py missing; run scripts/setup.sh first" >&2; exit 3; }
version="$("$py" -c 'import importlib.metadata as m; print(m.version("backupd"))')"
name="backupd-offline-$version"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"  # apt-get download runs as _apt and must reach the debs directory
stage="$work/$name"
mkdir -p "$stage/wheelhouse" "$stage/debs" "$stage/deploy"

echo "offline-bundle.sh: backupd wheel" >&2
# from a copy: setuptools leaves build/ behind, and a stale build/lib would ship deleted modules
mkdir "$work/src"
cp -r "$root/pyproject.toml" "$root/README.md" "$root/backupd" "$root/policies" "$root/restore_tests" \
  "$root/deploy" "$root/man" "$root/docs" "$work/src/"  # man/, docs/: the wheel's share/man/man1, share/doc/backupd
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$py" -m pip wheel --quiet --no-cache-dir --no-deps -w "$stage" "$work/src" >&2

echo "offline-bundle.sh: runtime dependency closure pinned from .venv" >&2
# Walk backupd's Requires-Dist without extras (so pytest/moto stay out) through the installed distributions;
# markers are evaluated for this interpreter, the one the target must match.
"$py" - >"$work/pins.txt" <<'PY'
import importlib.metadata as md
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # the build venv always has pip, which vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

seen, todo = {}, [(r, None) for r in md.requires("backupd") or []]
while todo:
    text, extra = todo.pop()
    req = Requirement(text)
    env = {"extra": extra or ""}
    if req.marker is not None and not req.marker.evaluate(env):
        continue
    key = canonicalize_name(req.name)
    extras = sorted(req.extras)
    if (key, tuple(extras)) in seen:
        continue
    dist = md.distribution(req.name)
    seen[(key, tuple(extras))] = f"{key}=={dist.version}"
    todo += [(r, None) for r in dist.requires or []]
    todo += [(r, e) for e in extras for r in dist.requires or []]
print("\n".join(sorted(set(seen.values()))))
PY
[ -s "$work/pins.txt" ] || { echo "offline-bundle.sh: no runtime dependencies found" >&2; exit 1; }

echo "offline-bundle.sh: downloading $(wc -l <"$work/pins.txt") wheels" >&2
"$py" -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: -d "$stage/wheelhouse" -r "$work/pins.txt" >&2
{
  echo "# backupd $version runtime dependencies: exact versions from the build venv, sha256 of the bundled wheels."
  echo "# pip install --no-index --find-links wheelhouse --require-hashes -r requirements.lock"
  while read -r pin; do
    want="${pin%%==*}"
    hashes=""
    for whl in "$stage"/wheelhouse/*.whl; do
      base="$(basename "$whl")"
      dist="$(echo "${base%%-*}" | tr 'A-Z' 'a-z' | sed 's/[_.]/-/g')"
      ver="$(echo "$base" | cut -d- -f2)"
      [ "$dist" = "$want" ] && [ "$ver" = "${pin#*==}" ] || continue
      hashes="$hashes --hash=$("$py" -m pip hash -a sha256 "$whl" | sed -n 's/^--hash=//p')"
    done
    [ -n "$hashes" ] || { echo "offline-bundle.sh: no wheel downloaded for $pin" >&2; exit 1; }
    echo "$pin$hashes"
  done <"$work/pins.txt"
} >"$stage/requirements.lock"

echo "offline-bundle.sh: Debian packages" >&2
# The named packages plus their direct dependencies, less those every Debian host has: Priority: required ones and
# the base libraries that required packages pull in anyway (libc6, libssl3, ... would only add megabytes).
pkgs="restic bubblewrap postgresql-client-15"
base=" libc6 libssl3 zlib1g libzstd1 liblz4-1 libselinux1 libcap2 "
deps="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
  $pkgs 2>/dev/null | sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \([^<>]*\)$/\2/p' | sort -u)"
wanted="$pkgs"
for dep in $deps; do
  prio="$(apt-cache show --no-all-versions "$dep" 2>/dev/null | sed -n 's/^Priority: //p' | head -1)"
  [ -n "$prio" ] && [ "$prio" != required ] && [[ "$base" != *" $dep "* ]] && wanted="$wanted $dep"
done
(cd "$stage/debs" && apt-get download $wanted >&2) || {
  echo "offline-bundle.sh: apt-get download failed (run apt-get update?)" >&2; exit 3; }

echo "offline-bundle.sh: units, docs, installer" >&2
cp -r "$root/deploy/systemd" "$stage/deploy/"
cp -r "$root/docs" "$root/policies" "$root/README.md" "$stage/"
cp "$root/scripts/offline-install.sh" "$stage/install.sh"
chmod 0755 "$stage/install.sh"
{
  echo "backupd $version"
  echo "python $("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  echo "arch $(dpkg --print-architecture)"
  echo "debian $(cat /etc/debian_version 2>/dev/null || echo unknown)"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$stage/BUNDLE-INFO"
(cd "$stage" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)
tar -C "$work" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
