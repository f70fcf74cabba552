"""`python -m demo.stack --serve`: the stack stays up, prints the environment that points backupd at it, and
stops every service on SIGTERM."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _exports(proc, deadline: float) -> dict[str, str]:
    env = {}
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            env[name] = shlex.split(value)[0]
            if name == "BACKUPD_CONFIG":
                return env
    raise AssertionError(f"no environment printed: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_serve_keeps_the_stack_up_for_backupd_and_stops_it_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "demo.stack", str(tmp_path / "stack"), "--containers", "300",
                             "--serve"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        env = _exports(proc, time.monotonic() + 300)
        lint = subprocess.run([sys.executable, "-m", "backupd", "policy", "lint", "--json"], cwd=ROOT,
                              env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    port = int(env["BACKUPD_S3_ENDPOINT"].rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.restic
def test_the_restic_on_path_is_the_one_the_suite_was_asked_to_use():
    # without BACKUPD_TEST_RESTIC the suite runs the distribution's restic (Debian's /usr/bin/restic)
    chosen = os.environ.get("BACKUPD_TEST_RESTIC") or "/usr/bin/restic"
    expected = subprocess.run([chosen, "version"], capture_output=True, text=True, check=True).stdout.split()[1]
    found = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert found == expected
