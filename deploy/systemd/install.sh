#!/usr/bin/env bash
# Install backupd's systemd units, users and directories. Idempotent; run as root.
#   deploy/systemd/install.sh [--enable]
# Secrets are not created here: put restic-password and s3-writer.env into /etc/backupd/secrets
# (mode 0600, root) and s3-maintainer.env into /etc/backupd/maintenance-secrets yourself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 2; }
command -v backupd >/dev/null || [ -x /usr/local/bin/backupd ] || {
  echo "install.sh: backupd is not installed (pip install . into a venv, link it to /usr/local/bin/backupd)" >&2; exit 3; }

for user in backupd backupd-maint; do
  id "$user" >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
done
install -d -m 0755 -o root -g root /etc/backupd /etc/backupd/policies
install -d -m 0700 -o root -g root /etc/backupd/secrets /etc/backupd/maintenance-secrets
install -d -m 0700 -o backupd -g backupd /var/lib/backupd
install -d -m 0700 -o backupd-maint -g backupd-maint /var/lib/backupd-maintenance

write_config() {  # path, state_dir, unit: never overwrite an operator's file
  [ -e "$1" ] && return 0
  cat >"$1" <<CONF
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
write_config /etc/backupd/backupd.yaml /var/lib/backupd backupd.service
write_config /etc/backupd/maintenance.yaml /var/lib/backupd-maintenance backupd-maintenance.service

install -m 0644 "$here"/backupd.service "$here"/backupd-maintenance.service \
  "$here"/backupd-maintenance.timer /etc/systemd/system/
command -v systemd-analyze >/dev/null && systemd-analyze verify /etc/systemd/system/backupd*.service \
  /etc/systemd/system/backupd-maintenance.timer
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "${1:-}" = "--enable" ]; then
    systemctl enable --now backupd.service backupd-maintenance.timer
  fi
fi
echo "install.sh: installed; put policies in /etc/backupd/policies and secrets in /etc/backupd/secrets," \
     "then: systemctl enable --now backupd.service backupd-maintenance.timer" >&2
