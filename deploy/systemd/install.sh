#!/usr/bin/env bash
# Install backupd's systemd units, users and directories. Idempotent; run as root.
#   deploy/systemd/install.sh [--enable] [--verifier] [--uninstall]
# Secrets are not created here: put restic-password, s3-writer.env, s3-auditor.env and s3-canary.env into
# /etc/backupd/secrets (mode 0600, root) and s3-maintainer.env into /etc/backupd/maintenance-secrets yourself.
# --verifier installs only the verifier (a second host): user backupd-verifier, /etc/backupd/verifier.yaml,
# backupd-verifier.service/.timer; its secrets (restic-password, s3-auditor.env, s3-verifier.env,
# s3-canary.env) go into /etc/backupd/verifier-secrets, never the writer's or the maintainer's keys.
# --uninstall stops, disables and removes every backupd unit, the probe-userns helper and the docs; it never
# touches state or evidence (/var/lib/backupd*), configs and secrets (/etc/backupd) or the service users.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
enable=no verifier=no uninstall=no
for arg in "$@"; do
  case "$arg" in
    --enable) enable=yes ;;
    --verifier) verifier=yes ;;
    --uninstall) uninstall=yes ;;
    *) echo "install.sh: unknown option $arg (use --enable, --verifier, --uninstall)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 2; }

if [ "$uninstall" = yes ]; then
  units="backupd.service backupd-maintenance.service backupd-maintenance.timer backupd-verifier.service
    backupd-verifier.timer"
  for unit in $units; do
    # a unit not installed here is not an error (a verifier host has only the verifier's)
    [ -d /run/systemd/system ] && { systemctl disable --now "$unit" 2>/dev/null || true; }
    rm -f "/etc/systemd/system/$unit"
  done
  rm -rf /usr/local/lib/backupd /usr/share/doc/backupd
  [ -d /run/systemd/system ] && systemctl daemon-reload
  echo "install.sh: units removed; state and evidence (/var/lib/backupd*), /etc/backupd and the users stay" >&2
  exit 0
fi
command -v backupd >/dev/null || [ -x /usr/local/bin/backupd ] || {
  echo "install.sh: backupd is not installed (pip install . into a venv, link it to /usr/local/bin/backupd)" >&2; exit 3; }

# drill probes run in bubblewrap sandboxes made by the unprivileged service users (user namespaces)
command -v bwrap >/dev/null || echo "install.sh: warning: bwrap missing; drill probes will be unavailable" \
  "until the Debian package bubblewrap is installed" >&2
[ "$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)" = 1 ] || echo "install.sh: warning:" \
  "kernel.unprivileged_userns_clone=0; set it to 1 so the services can sandbox drill probes" >&2

add_user() { id "$1" >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$1"; }
install -d -m 0755 -o root -g root /etc/backupd /etc/backupd/policies
# the units' Documentation= points here
docs="$here/../../docs"
install -d -m 0755 -o root -g root /usr/share/doc/backupd
install -m 0644 "$docs"/*.md /usr/share/doc/backupd/
install -m 0644 "$here/../../README.md" /usr/share/doc/backupd/  # the command reference the guides point to

# drill probes run as a subordinate id of the service user, never as it: the units pin the user namespace
install -d -m 0755 -o root -g root /usr/local/lib/backupd
install -m 0755 "$here"/probe-userns.sh /usr/local/lib/backupd/probe-userns

if [ "$verifier" = yes ]; then
  add_user backupd-verifier
  /usr/local/lib/backupd/probe-userns allocate backupd-verifier
  install -d -m 0700 -o root -g root /etc/backupd/verifier-secrets
  install -d -m 0700 -o backupd-verifier -g backupd-verifier /var/lib/backupd-verifier
  if [ ! -e /etc/backupd/verifier.yaml ]; then
    cat >/etc/backupd/verifier.yaml <<CONF
# The verifier: drills, check slices and storage audits with read-only keys (docs/operator-guide.md).
role: verifier
policies: [/etc/backupd/policies/*.yaml]   # copies of the backup host's policies
state_dir: /var/lib/backupd-verifier        # its own state, ledger and Ed25519 signing key
secrets_dir: /run/credentials/backupd-verifier.service
host: $(hostname)                          # its evidence goes to evidence/<host>/ in the mirror
# hosts: [tos-01]                           # backup hosts whose snapshots it reads (default: policy site.host)
# evidence: {mirror: worm-primary, credentials_file: s3-verifier.env}   # needed by drills: they read the
#                                          backup host's announced snapshots from this mirror (docs/auditor-guide.md)
CONF
    chmod 0644 /etc/backupd/verifier.yaml
  fi
  install -m 0644 "$here"/backupd-verifier.service "$here"/backupd-verifier.timer /etc/systemd/system/
  command -v systemd-analyze >/dev/null && systemd-analyze verify /etc/systemd/system/backupd-verifier.service \
    /etc/systemd/system/backupd-verifier.timer
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$enable" = yes ]; then systemctl enable --now backupd-verifier.timer; fi
  fi
  echo "install.sh: verifier installed; put the policies in /etc/backupd/policies and restic-password," \
       "s3-auditor.env, s3-verifier.env and s3-canary.env in /etc/backupd/verifier-secrets, run" \
       "'runuser -u backupd-verifier -- backupd evidence key --config /etc/backupd/verifier.yaml', publish the key," \
       "then: systemctl enable --now backupd-verifier.timer" >&2
  exit 0
fi

for user in backupd backupd-maint; do
  add_user "$user"
done
/usr/local/lib/backupd/probe-userns allocate backupd
install -d -m 0700 -o root -g root /etc/backupd/secrets /etc/backupd/maintenance-secrets
install -d -m 0700 -o backupd -g backupd /var/lib/backupd
install -d -m 0700 -o backupd-maint -g backupd-maint /var/lib/backupd-maintenance

write_config() {  # path, state_dir, unit, role: never overwrite an operator's file
  [ -e "$1" ] && return 0
  cat >"$1" <<CONF
role: $4
policies: [/etc/backupd/policies/*.yaml]
state_dir: $2
# systemd hands the secrets over in \$CREDENTIALS_DIRECTORY (LoadCredential in the unit)
secrets_dir: /run/credentials/$3
daemon: {stop_timeout_seconds: 30}
metrics: {listen: 127.0.0.1:9187}
# notify: {webhook: https://..., smtp: {host: 127.0.0.1, to: [ops@example.jp]}, syslog: true}
CONF
  chmod 0644 "$1"
}
write_config /etc/backupd/backupd.yaml /var/lib/backupd backupd.service backup
write_config /etc/backupd/maintenance.yaml /var/lib/backupd-maintenance backupd-maintenance.service maintenance
# An older maintenance.yaml has no role: the unit now hands over the maintainer's keys under their own name
# (s3-maintainer.env), which only the maintenance role reads.
if ! grep -q '^role:' /etc/backupd/maintenance.yaml; then
  [ -z "$(tail -c1 /etc/backupd/maintenance.yaml)" ] || echo >>/etc/backupd/maintenance.yaml
  printf '%s\n' "role: maintenance   # added by install.sh: forget, prune, extend-locks with the maintainer's keys" \
    >>/etc/backupd/maintenance.yaml
fi

install -m 0644 "$here"/backupd.service "$here"/backupd-maintenance.service \
  "$here"/backupd-maintenance.timer /etc/systemd/system/
command -v systemd-analyze >/dev/null && systemd-analyze verify /etc/systemd/system/backupd*.service \
  /etc/systemd/system/backupd-maintenance.timer
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$enable" = yes ]; then
    systemctl enable --now backupd.service backupd-maintenance.timer
  fi
fi
echo "install.sh: installed; put policies in /etc/backupd/policies, restic-password, s3-writer.env," \
     "s3-auditor.env and s3-canary.env in /etc/backupd/secrets and s3-maintainer.env in" \
     "/etc/backupd/maintenance-secrets, check with 'backupd policy lint --role daemon|maintenance'," \
     "then: systemctl enable --now backupd.service backupd-maintenance.timer" >&2
