"""Deployed as the operator guide says, under a real systemd as PID 1, every unit works.

One `systemd-nspawn --volatile=yes --boot` container (tests/integration/nspawn.py) is shared by the whole
module, in order: the offline bundle's system install plus `deploy/systemd/install.sh --verifier`, the shipped
unit files unchanged (one runtime drop-in shortens WatchdogSec so a ping is seen within seconds), SeaweedFS in
the container's network namespace. backupd.service gets READY, backs up, drills with a probe sandboxed by
bubblewrap in its user namespace, pings the watchdog, reloads and stops during a drill leaving no process and
no restic lock; the maintenance unit (forget, prune, extend-locks) and the verifier unit succeed; the timers
are listed; the journal holds no secret; the state directories are 0700. Then a newer bundle over the old one
keeps state, ledger and keys, and `install.sh --uninstall` removes program and units, never state or evidence.
Root only (CI runs as root); scripts/setup.sh installs systemd-container."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from demo._util import terminate, wait_until, write_secret
from tests.integration.nspawn import Machine

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NEWER = VERSION + ".post1"
BUCKET, HOST, VERIFIER = "backupd-tos", "tos-01", "verifier-01"
pytestmark = pytest.mark.integration

POLICY = """\
version: 1
site: {{name: Systemd Test Terminal, port: other, host: tos-01, allowable_downtime: 24h}}
destinations:
  worm-primary:
    kind: s3
    endpoint: {endpoint}
    bucket: backupd-tos
    path: restic
    region: us-east-1
    object_lock: true
    lock_mode: COMPLIANCE
    failure_domain: site-a
    credentials_file: s3-writer.env
    password_file: restic-password
    canary_credentials_file: s3-canary.env
    maintainer_credentials_file: s3-maintainer.env
    auditor_credentials_file: s3-auditor.env
targets:
  - name: tos-programs-production
    category: system_program
    environment: production
    owner: TOS system team
    sources: {{paths: [/srv/tos/programs/production]}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 14, keep_weekly: 6}}
    drill: programs
    destinations: [worm-primary]
  - name: tos-programs-slow
    category: system_program
    environment: evaluation
    owner: TOS development vendor
    sources: {{paths: [/srv/tos/programs/slow]}}
    frequency: 1d
    retention: {{keep_daily: 14, keep_weekly: 6}}
    drill: slow
    destinations: [worm-primary]
"""
# Drills due 10 s after the daemon starts (then every 10 s): the production probe answers at once, the slow
# one sleeps (a unique argv to find it by) until the stop test cancels it; then its spec asks --quick, so the
# verifier's drill of it answers at once too.
SPECS = {
    "programs": "version: 1\nname: programs\nkind: sample\nschedule: {sample: 10s, full: 90d}\n"
                "probes:\n  - {kind: programs, command: [bin/tos-server, --version], expect_output: '^tos-server ',"
                " timeout: 60s}\n",
    "slow": "version: 1\nname: slow\nkind: sample\nschedule: {sample: 10s, full: 90d}\n"
            "probes:\n  - {kind: programs, command: [bin/slow-server, --version], expect_output: '^slow ',"
            " timeout: 600s}\n",
}
SLOW_SLEEP = "589.765"
PROGRAMS = {"production/bin/tos-server": "#!/bin/sh\necho 'tos-server 1.0'\n",
            "slow/bin/slow-server": "#!/bin/sh\n[ \"$1\" = --quick ] || sleep " + SLOW_SLEEP + "\necho 'slow 1.0'\n"}
VERIFIER_YAML = f"""\
role: verifier
policies: [/etc/backupd/policies/*.yaml]
state_dir: /var/lib/backupd-verifier
secrets_dir: /run/credentials/backupd-verifier.service
host: {VERIFIER}
hosts: [{HOST}]
evidence: {{mirror: worm-primary, credentials_file: s3-verifier.env}}
"""
# The operator guide's steps 1 and 4 and its verifier set-up, literally; the secrets where the guide puts them.
INSTALL = r"""
set -euo pipefail
[ -e /var/lib/dpkg/status ] || cp -a /srv/dpkg /var/lib/dpkg  # this host's Debian packages are installed
tar -C /root -xzf "/srv/share/$BUNDLE.tar.gz"
"/root/$BUNDLE/install.sh"
"/root/$BUNDLE/deploy/systemd/install.sh" --verifier
put() { install -D -m 0600 -o root -g root "$1" "$2"; }
keys=/srv/share/seaweed/secrets
put /srv/share/restic-password /etc/backupd/secrets/restic-password
put $keys/s3-writer.env /etc/backupd/secrets/s3-writer.env
put $keys/s3-canary.env /etc/backupd/secrets/s3-canary.env
put $keys/s3-maintainer.env /etc/backupd/maintenance-secrets/s3-maintainer.env
put /srv/share/restic-password /etc/backupd/verifier-secrets/restic-password
for f in s3-auditor.env s3-verifier.env s3-canary.env; do put $keys/$f /etc/backupd/verifier-secrets/$f; done
cp -r /srv/share/site/policies /srv/share/site/restore_tests /etc/backupd/
chmod -R a+rX /etc/backupd/policies /etc/backupd/restore_tests
printf 'host: tos-01\nevidence: {mirror: worm-primary}\n' >>/etc/backupd/backupd.yaml
printf 'host: tos-01\n' >>/etc/backupd/maintenance.yaml
cp /srv/share/site/verifier.yaml /etc/backupd/verifier.yaml
cp -r /srv/share/site/tos /srv/tos
runuser -u backupd-verifier -- backupd evidence key --config /etc/backupd/verifier.yaml >/dev/null
# test knob, not the shipped unit: a watchdog ping is due within seconds instead of a minute
mkdir -p /run/systemd/system/backupd.service.d
printf '[Service]\nWatchdogSec=20s\n' >/run/systemd/system/backupd.service.d/watchdog.conf
systemctl daemon-reload
"""


def _bundles(archive: Path, out: Path) -> None:
    """out/backupd-offline-VERSION.tar.gz (the session's `archive`, built from this checkout), and a newer one
    (NEWER: the same bundle with the wheel rebuilt at a higher version, BUNDLE-INFO and SHA256SUMS to match)."""
    shutil.copy(archive, out / archive.name)
    work = out / "work"
    subprocess.run(["tar", "-C", str(out), "-xzf", str(archive)], check=True, timeout=120)
    old, new = out / f"backupd-offline-{VERSION}", out / f"backupd-offline-{NEWER}"
    old.rename(new)
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "backupd", "policies", "restore_tests", "deploy", "man", "docs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(
            ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                       if (ROOT / name).is_dir() else {}))
    toml = src / "pyproject.toml"
    toml.write_text(toml.read_text().replace(f'version = "{VERSION}"', f'version = "{NEWER}"', 1))
    for wheel in new.glob("backupd-*.whl"):
        wheel.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", str(new),
                    str(src)], check=True, capture_output=True, timeout=300)
    info = new / "BUNDLE-INFO"
    info.write_text(info.read_text().replace(f"backupd {VERSION}\n", f"backupd {NEWER}\n"))
    subprocess.run(f"find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS",
                   shell=True, cwd=new, check=True, timeout=120)
    subprocess.run(["tar", "-C", str(out), "-czf", str(out / f"{new.name}.tar.gz"), new.name], check=True,
                   timeout=120)
    shutil.rmtree(work)
    shutil.rmtree(new)


def _site(share: Path, endpoint: str) -> None:
    """Policy, drill specs, verifier.yaml and the TOS programs, as the operator would write them."""
    site = share / "site"
    (site / "policies").mkdir(parents=True)
    (site / "policies/tos-01.yaml").write_text(POLICY.format(endpoint=endpoint))
    (site / "restore_tests").mkdir()
    for name, text in SPECS.items():
        (site / "restore_tests" / f"{name}.yaml").write_text(text)
    (site / "verifier.yaml").write_text(VERIFIER_YAML)
    for rel, text in PROGRAMS.items():
        path = site / "tos/programs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)


class Site:
    """The booted machine with backupd installed, and what the checks share."""

    def __init__(self, machine: Machine, share: Path, keys: dict[str, str]):
        self.m, self.share, self.keys = machine, share, keys

    def sh(self, script: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return self.m.run(script, timeout=timeout, check=check)

    def start(self, unit: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`systemctl start unit` (bounded inside the machine too); on failure the unit's status and journal."""
        done = self.sh(f"timeout {timeout} systemctl start {unit}", timeout=timeout + 30, check=False)
        if done.returncode != 0:
            status = self.sh(f"systemctl status --no-pager -l {unit}; journalctl --no-pager -u {unit} | tail -60",
                             check=False).stdout
            pytest.fail(f"systemctl start {unit}: exit {done.returncode}\n{done.stderr}\n{status[-6000:]}")
        return done

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def ledger(self, state: str = "/var/lib/backupd") -> list[dict]:
        out = self.sh(f"cat {state}/evidence/ledger.jsonl 2>/dev/null || true").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def journal(self, unit: str | None = None) -> str:
        which = f"-u {unit}" if unit else ""
        return self.sh(f"journalctl --no-pager -o cat {which}", timeout=60).stdout

    def restic_locks(self) -> list[str]:
        """restic's lock files in the repository (read with the auditor's keys, --no-lock)."""
        script = ("set -a; . /etc/backupd/verifier-secrets/s3-auditor.env; set +a; "
                  "RESTIC_PASSWORD_FILE=/etc/backupd/verifier-secrets/restic-password "
                  f"restic --no-lock -r s3:{self.keys['endpoint']}/{BUCKET}/restic list locks")
        return self.sh(script, timeout=60).stdout.split()


@pytest.fixture(scope="module")
def site(offline_bundle, tmp_path_factory):
    assert os.geteuid() == 0, "the real-systemd test boots a container: run it as root (CI does)"
    assert shutil.which("systemd-nspawn"), "systemd-nspawn missing: scripts/setup.sh installs systemd-container"
    work = tmp_path_factory.mktemp("nspawn")
    share = work / "share"
    share.mkdir()
    _bundles(offline_bundle, share)
    write_secret(share / "restic-password", secrets.token_urlsafe(32) + "\n")
    machine = Machine(work / "machine", share)
    seaweed = None
    try:
        machine.boot()
        ready = share / "seaweed/ready.json"
        (share / "seaweed").mkdir()
        log = open(work / "seaweed-helper.log", "wb")
        seaweed = subprocess.Popen([*machine.nsenter("-n"), sys.executable, "-m", "tests.integration.nspawn",
                                    "seaweed", str(share / "seaweed"), BUCKET, "6w"], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_until(lambda: ready.exists() or seaweed.poll() is not None, 120, 0.5) and ready.exists(), \
            (work / "seaweed-helper.log").read_text()[-3000:]
        keys = json.loads(ready.read_text())
        _site(share, keys["endpoint"])
        done = machine.run(INSTALL, timeout=600, env={"BUNDLE": f"backupd-offline-{VERSION}"})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        yield Site(machine, share, keys)
    finally:
        machine.stop()
        terminate(seaweed, timeout=15)


def _secrets(site: Site) -> list[str]:
    """Every secret value the machine holds: S3 secret keys (and access keys) and the restic password."""
    found = [(site.share / "restic-password").read_text().strip()]
    for env in (site.share / "seaweed/secrets").glob("s3-*.env"):
        found += [line.split("=", 1)[1] for line in env.read_text().splitlines() if "=" in line]
    return found


def _wait(probe, timeout: float, what: str, interval: float = 1.0):
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def _slow_probe(site: Site) -> list[str]:
    """`pid uid` of the slow drill's sleeping probe process(es), if running."""
    out = site.sh(f"for p in $(pgrep -fx 'sleep {SLOW_SLEEP}' || true); do "
                  "echo \"$p $(stat -c %u /proc/$p) $(readlink /proc/$p/ns/pid)\"; done").stdout
    return out.splitlines()


def test_the_daemon_is_ready_backs_up_and_drills_with_a_sandboxed_probe(site):
    t0 = time.monotonic()
    site.start("backupd.service")  # Type=notify: returns once READY=1 arrived
    ready_in = time.monotonic() - t0
    state = site.show("backupd.service", "ActiveState", "SubState", "Type", "StatusText", "MainPID")
    assert (state["ActiveState"], state["SubState"], state["Type"]) == ("active", "running", "notify"), state
    assert ready_in < 30, ready_in

    def backed_up():
        kinds = [(r["kind"], r["data"].get("target")) for r in site.ledger()]
        return {t for k, t in kinds if k == "backup"} >= {"tos-programs-production", "tos-programs-slow"}
    _wait(backed_up, 180, "the first backups in the ledger")

    def drilled():
        failed = [line for line in site.journal("backupd.service").splitlines()
                  if '"job_end"' in line and '"drill-' in line and '"failed"' in line]
        if failed:
            pytest.fail(f"a drill failed under backupd.service: {failed[0]}")
        return [r for r in site.ledger() if r["kind"] == "drill"
                and r["data"].get("target") == "tos-programs-production"]
    drill = _wait(drilled, 180, "a drill of tos-programs-production in the ledger")[0]
    assert drill["data"].get("verdict") == "PASS", drill

    # the slow probe runs inside bubblewrap (its own PID namespace) as backupd's subordinate id, never backupd
    probe = _wait(lambda: _slow_probe(site), 120, "the slow drill's probe running")
    backupd_uid = int(site.sh("id -u backupd").stdout)
    sub_start = int(site.sh("awk -F: '$1 == \"backupd\" {print $2}' /etc/subuid").stdout)
    init_pidns = site.sh("readlink /proc/1/ns/pid").stdout.strip()
    for line in probe:
        _pid, uid, pidns = line.split()
        assert int(uid) == sub_start + 65529 and int(uid) != backupd_uid, probe
        assert pidns != init_pidns, probe


def test_the_watchdog_is_pinged_and_a_reload_keeps_the_daemon(site):
    def pinged():
        props = site.show("backupd.service", "WatchdogTimestampMonotonic", "ExecMainStartTimestampMonotonic")
        return int(props["WatchdogTimestampMonotonic"]) > int(props["ExecMainStartTimestampMonotonic"]) + 5e6
    _wait(pinged, 40, "a watchdog ping (WatchdogSec=20s) after the start")
    before = site.show("backupd.service", "MainPID", "NRestarts")
    site.sh("systemctl reload backupd.service", timeout=60)
    # kill -HUP returns at once: the daemon says RELOADING=1, then READY=1 once the policies are loaded again
    _wait(lambda: site.show("backupd.service", "SubState")["SubState"] != "reload", 30, "the reload's end", 0.2)
    after = site.show("backupd.service", "MainPID", "NRestarts", "ActiveState", "SubState")
    assert after["MainPID"] == before["MainPID"] and after["NRestarts"] == "0", (before, after)
    assert (after["ActiveState"], after["SubState"]) == ("active", "running"), after
    assert "Watchdog timeout" not in site.journal("backupd.service")


def test_a_stop_during_a_drill_leaves_no_process_and_no_lock(site):
    assert _slow_probe(site), "the slow drill should still be running"
    cgroup = site.show("backupd.service", "ControlGroup")["ControlGroup"]
    t0 = time.monotonic()
    site.sh("systemctl stop backupd.service", timeout=120)
    took = time.monotonic() - t0
    assert took < 45, took
    state = site.show("backupd.service", "ActiveState", "Result")
    assert state == {"ActiveState": "inactive", "Result": "success"}, state
    assert not _slow_probe(site)
    leftovers = site.sh("ps -e -o user=,comm= | grep -E '^(backupd|1[0-9]{5,})\\b' || true").stdout
    assert leftovers == "", leftovers
    assert site.sh(f"cat /sys/fs/cgroup/systemd{cgroup}/cgroup.procs 2>/dev/null || true").stdout == ""
    assert site.restic_locks() == []
    site.sh("sed -i 's/--version/--quick/' /etc/backupd/restore_tests/slow.yaml")  # the verifier's drill


def test_the_maintenance_service_forgets_prunes_and_extends_locks(site):
    site.start("backupd-maintenance.service", timeout=600)
    log = site.journal("backupd-maintenance.service")
    assert site.show("backupd-maintenance.service", "Result")["Result"] == "success", log[-4000:]


def test_the_verifier_service_drills_checks_and_audits(site):
    site.start("backupd-verifier.service", timeout=600)
    log = site.journal("backupd-verifier.service")
    assert site.show("backupd-verifier.service", "Result")["Result"] == "success", log[-4000:]
    kinds = {r["kind"] for r in site.ledger("/var/lib/backupd-verifier")}
    assert "drill" in kinds, kinds


def test_the_timers_are_listed(site):
    site.sh("systemctl enable --now backupd-maintenance.timer backupd-verifier.timer", timeout=60)
    listed = site.sh("systemctl list-timers --all --no-legend").stdout
    for timer in ("backupd-maintenance.timer", "backupd-verifier.timer"):
        assert re.search(rf"\s{re.escape(timer)}\s", listed), listed


def test_the_journal_holds_no_secret_and_the_state_directories_are_private(site):
    journal = site.journal()
    assert "backupd" in journal
    for value in _secrets(site):
        assert value not in journal, "a secret is in the journal"
    modes = site.sh("stat -c '%n %a %U' /var/lib/backupd /var/lib/backupd-maintenance "
                    "/var/lib/backupd-verifier").stdout.split("\n")
    assert [line.split()[1] for line in modes if line] == ["700", "700", "700"], modes


def test_a_newer_bundle_keeps_state_ledger_and_keys(site):
    keys = "sha256sum /var/lib/backupd/keys/* /var/lib/backupd-verifier/keys/*"
    before = site.sh(keys).stdout
    ledger = site.ledger()
    done = site.m.run(f"tar -C /root -xzf /srv/share/backupd-offline-{NEWER}.tar.gz && "
                      f"/root/backupd-offline-{NEWER}/install.sh", timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert site.sh("backupd --version").stdout.strip().endswith(NEWER)
    assert site.sh(keys).stdout == before
    site.start("backupd.service")
    assert site.show("backupd.service", "ActiveState")["ActiveState"] == "active"
    assert site.ledger()[:len(ledger)] == ledger  # the chain continues, nothing rewritten
    site.sh("systemctl stop backupd.service", timeout=120)


def test_uninstall_removes_program_and_units_but_never_state_or_evidence(site):
    state = "find /var/lib/backupd /var/lib/backupd-maintenance /var/lib/backupd-verifier /etc/backupd " \
            "-type f | sort | xargs sha256sum"
    before = site.sh(state).stdout
    done = site.m.run(f"/root/backupd-offline-{NEWER}/install.sh --uninstall", timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    gone = site.sh("ls /usr/local/bin/backupd /opt/backupd /etc/systemd/system/backupd* "
                   "/usr/local/lib/backupd 2>&1 || true").stdout
    assert gone.count("No such file") == 4, gone
    # (systemctl exits 1 when no unit file matches)
    assert site.sh("systemctl list-unit-files 'backupd*' --no-legend", check=False).stdout.strip() == ""
    assert site.sh(state).stdout == before
