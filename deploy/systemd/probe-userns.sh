#!/usr/bin/env bash
# The user namespace a service's drill probes run in, so they never run as the service's own uid or as root.
#   probe-userns.sh allocate USER      give USER 65536 subordinate uids and gids (/etc/subuid, /etc/subgid)
#   probe-userns.sh pin USER PATH      pin a user namespace owned by USER at PATH (replacing one there)
#   probe-userns.sh unpin PATH
# The namespace maps 0 to USER and 1..65536 to USER's subordinate range. A service that runs as USER and
# enters it (`nsenter --user=PATH`, as backupd-verifier.service does) is root there, over its own files
# only: outside it keeps exactly USER's access. backupd then sees itself as root and drops each probe
# process to the sandbox uid 65530, which is USER's subordinate id start+65529 on the host: it owns none
# of USER's files, keys or credentials. The maps are written here as root (pin runs from the unit's
# ExecStartPre=+), so the service needs no setuid helper (newuidmap), which its no_new_privs would defeat.
set -euo pipefail
die() { echo "probe-userns: $*" >&2; exit "${2:-2}"; }
[ "$(id -u)" = 0 ] || die "run as root"
COUNT=65536

# systemd runs even a unit's "+" commands in a mount namespace of their own when the unit has PrivateTmp=
# (all backupd units do): a pin mounted there would vanish with this script and the service would find only
# the placeholder file (nsenter: "reassociate to namespace 'ns/user' failed: Invalid argument"). So when
# systemd (PID 1, our parent) started us in another mount namespace than its own, pin and unpin act in
# systemd's, the one each later command of the unit is made from. The script goes along as an open file:
# its path may not exist there (a private /tmp).
if [ "${1:-}" != allocate ] && [ "$PPID" = 1 ] && [ "$(readlink /proc/1/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ]
then
  exec nsenter --mount=/proc/1/ns/mnt -- bash /proc/self/fd/3 "$@" 3<"$0"
fi

start_of() {  # file, user: the start of the user's first range of at least COUNT ids
  awk -F: -v n="$2" -v u="$(id -u "$2")" -v c="$COUNT" '($1 == n || $1 == u) && $3 >= c { print $2; exit }' "$1"
}

allocate() {  # a free range above every range in either file (and above 100000, where useradd's start)
  local user=$1 file top
  id "$user" >/dev/null 2>&1 || die "no user $user"
  for file in /etc/subuid /etc/subgid; do [ -e "$file" ] || install -m 0644 /dev/null "$file"; done
  top="$(awk -F: 'BEGIN { t = 100000 } $2 + $3 > t { t = $2 + $3 } END { printf "%d", t }' \
    /etc/subuid /etc/subgid)"
  top=$(( (top + COUNT - 1) / COUNT * COUNT ))  # the same fresh range for uids and gids
  [ -n "$(start_of /etc/subuid "$user")" ] || usermod --add-subuids "$top-$((top + COUNT - 1))" "$user"
  [ -n "$(start_of /etc/subgid "$user")" ] || usermod --add-subgids "$top-$((top + COUNT - 1))" "$user"
}

unpin() {
  if mountpoint -q "$1" 2>/dev/null || grep -q " $1 nsfs " /proc/self/mountinfo; then umount "$1"; fi
  rm -f "$1"
}

pin() {
  local user=$1 path=$2 uid gid us gs pid ours i
  uid="$(id -u "$user")" && gid="$(id -g "$user")" || die "no user $user"
  us="$(start_of /etc/subuid "$user")"; gs="$(start_of /etc/subgid "$user")"
  [ -n "$us" ] && [ -n "$gs" ] || die "$user has no range of $COUNT ids in /etc/subuid and /etc/subgid" \
    "(probe-userns.sh allocate $user; install.sh does)"
  install -d -m 0755 "$(dirname "$path")"
  unpin "$path"
  install -m 0444 /dev/null "$path"
  # the namespace's owner is the euid that creates it: USER, so USER may enter it later
  setpriv --reuid="$uid" --regid="$gid" --clear-groups -- unshare --user -- sleep 60 &
  pid=$!
  ours="$(readlink /proc/self/ns/user)"
  for i in $(seq 200); do
    [ "$(readlink "/proc/$pid/ns/user" 2>/dev/null || echo "$ours")" != "$ours" ] && break
    kill -0 "$pid" 2>/dev/null || die "could not create a user namespace as $user (user.max_user_namespaces?)" 3
    sleep 0.02
  done
  # each map must arrive in one write(): cat writes what it read at once
  cat <<<"0 $uid 1
1 $us $COUNT" >"/proc/$pid/uid_map"
  cat <<<"0 $gid 1
1 $gs $COUNT" >"/proc/$pid/gid_map"
  mount --bind "/proc/$pid/ns/user" "$path"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

case "${1:-}" in
  allocate) [ $# = 2 ] || die "usage: probe-userns.sh allocate USER"; allocate "$2" ;;
  pin) [ $# = 3 ] || die "usage: probe-userns.sh pin USER PATH"; pin "$2" "$3" ;;
  unpin) [ $# = 2 ] || die "usage: probe-userns.sh unpin PATH"; unpin "$2" ;;
  *) die "usage: probe-userns.sh allocate USER | pin USER PATH | unpin PATH" ;;
esac
