"""The shipped systemd units pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration
UNITS = ("backupd.service", "backupd-maintenance.service", "backupd-maintenance.timer",
         "backupd-verifier.service", "backupd-verifier.timer")


def test_units_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: scripts/setup.sh installs systemd"
    exe = ROOT / ".venv" / "bin" / "backupd"
    assert exe.exists(), "run scripts/setup.sh first"
    for name in UNITS:  # verify checks ExecStart exists: point it at the venv's entry point
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        text = text.replace("/usr/local/lib/backupd/probe-userns", str(ROOT / "deploy/systemd/probe-userns.sh"))
        (tmp_path / name).write_text(text.replace("/usr/local/bin/backupd", str(exe)))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)],
                          capture_output=True, text=True, timeout=120)
    problems = [ln for ln in done.stderr.splitlines() if any(n in ln for n in UNITS)]
    assert done.returncode == 0 and not problems, done.stderr
    service = (ROOT / "deploy" / "systemd" / "backupd.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "User=backupd",
                 "CapabilityBoundingSet=CAP_DAC_READ_SEARCH", "LoadCredential=", "TimeoutStopSec=",
                 "ExecStartPre=-+/usr/local/lib/backupd/probe-userns pin backupd /run/backupd-userns/backupd",
                 "Environment=BACKUPD_PROBE_USERNS=/run/backupd-userns/backupd"):
        assert line in service


def test_the_verifier_unit_holds_no_writer_or_maintainer_keys():
    unit = (ROOT / "deploy" / "systemd" / "backupd-verifier.service").read_text()
    assert "User=backupd-verifier" in unit and "Environment=BACKUPD_CONFIG=/etc/backupd/verifier.yaml" in unit
    creds = {ln.split("=", 1)[1].split(":", 1)[0] for ln in unit.splitlines() if ln.startswith("LoadCredential=")}
    assert creds == {"restic-password", "s3-auditor.env", "s3-verifier.env", "s3-canary.env"}
    assert "/etc/backupd/secrets/" not in unit and "maintenance-secrets" not in unit
    for line in ("ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "ReadWritePaths=/var/lib/backupd-verifier", "backupd drill", "backupd check", "backupd audit storage"):
        assert line in unit, line
    # its steps (and so its drills' probes) run in the pinned user namespace: probes never as its own uid
    pin = "/run/backupd-userns/backupd-verifier"
    assert f"ExecStartPre=+/usr/local/lib/backupd/probe-userns pin backupd-verifier {pin}" in unit
    assert f"ExecStart=/usr/bin/nsenter --user={pin} -- " in unit
