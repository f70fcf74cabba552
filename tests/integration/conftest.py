"""Integration fixtures: one real local stack (SeaweedFS with Object Lock, PostgreSQL, TOS data)
per test session, and a helper that runs the real backupd CLI against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = 5000


def _select_restic() -> None:
    """BACKUPD_TEST_RESTIC=PATH runs the whole suite with that restic binary (scripts/test.sh: restic 0.18):
    a directory with a `restic` link to it goes first on PATH, which backupd and the tests inherit."""
    chosen = os.environ.get("BACKUPD_TEST_RESTIC")
    if not chosen:
        return
    binary = Path(chosen).resolve()
    if not os.access(binary, os.X_OK):
        raise pytest.UsageError(f"BACKUPD_TEST_RESTIC={chosen}: not an executable file")
    folder = Path(tempfile.mkdtemp(prefix="backupd-restic-"))
    (folder / "restic").symlink_to(binary)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


_select_restic()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("stack"), containers=CONTAINERS, tree_scale=0.3) as s:
        yield s


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict:
        return json.loads(self.stdout)


@dataclass
class Setup:
    """A config plus policy directory for one test, against the shared stack."""

    stack: LocalStack
    dir: Path
    config: Path

    def cli(self, *args: str, timeout: float = 900) -> Run:
        env = {**os.environ, **self.stack.env, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "backupd", *args, "--config", str(self.config)],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in done.stderr, done.stderr
        return Run(done.returncode, done.stdout, done.stderr)


def make_setup(stack: LocalStack, workdir: Path, policy_dir: Path, **extra) -> Setup:
    """Write backupd.yaml for policy_dir with its own state directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"policies: ['{policy_dir}/*.yaml']", f"state_dir: '{workdir / 'state'}'",
             f"secrets_dir: '{stack.secrets_dir}'", "host: it-host"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    config = workdir / "backupd.yaml"
    config.write_text("\n".join(lines) + "\n")
    return Setup(stack, workdir, config)


@pytest.fixture(scope="session")
def example(stack, tmp_path_factory):
    """The shipped example policy (policies/, restore_tests/), backed up once per session and shared by the
    modules that only read it (restores, drills): (setup, backup JSON document)."""
    setup = make_setup(stack, tmp_path_factory.mktemp("example"), ROOT / "policies")
    run = setup.cli("backup", "--json")
    assert run.code == 0, run.stdout + run.stderr
    return setup, run.doc



@pytest.fixture(scope="session")
def offline_bundle(tmp_path_factory) -> Path:
    """scripts/offline-bundle.sh run once per session from this checkout (it downloads from PyPI and the Debian
    mirror): the archive, alone in its directory; test_offline_bundle.py and test_systemd_boot.py share it."""
    import shutil
    import tomllib

    assert shutil.which("apt-get"), "the bundle needs apt-get (Debian's own: a broken set-up)"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = tmp_path_factory.mktemp("offline-bundle")
    done = subprocess.run(["bash", str(ROOT / "scripts/offline-bundle.sh"), str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    archive = out / f"backupd-offline-{version}.tar.gz"
    assert done.stdout.strip() == str(archive) and [p.name for p in out.iterdir()] == [archive.name]
    return archive

POLICY_HEAD = """version: 1
site: {{name: Test Terminal, port: other}}
destinations:
  worm:
    kind: s3
    endpoint: {endpoint}
    bucket: backupd-tos
    path: {repo_path}
    object_lock: true
    credentials_file: s3-writer.env
    password_file: restic-password
targets:
"""

#: Targets that make any test policy satisfy the guideline's required categories.
FILLER = """  - name: filler-programs
    category: system_program
    environment: development
    owner: test
    sources: {{paths: ['{root}/programs/development']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
  - name: filler-exports
    category: container_data
    owner: test
    sources: {{paths: ['{root}/exports']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
  - name: filler-logs
    category: logs
    source: network_device
    owner: test
    sources: {{paths: ['{root}/logs/network']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


@pytest.fixture
def policy(stack, tmp_path):
    """policy(targets_yaml, repo_path, endpoint=None, **config) -> Setup with a lint-clean policy."""

    def make(targets: str, repo_path: str, endpoint: str | None = None, **extra) -> Setup:
        pdir = tmp_path / "policies"
        pdir.mkdir(exist_ok=True)
        head = POLICY_HEAD.format(endpoint=endpoint or stack.env["BACKUPD_S3_ENDPOINT"], repo_path=repo_path)
        (pdir / "test.yaml").write_text(head + targets + FILLER.format(root=stack.env["TOS_ROOT"]))
        return make_setup(stack, tmp_path / "work", pdir, **extra)

    return make


def program_target(name: str, drill: str, programs) -> str:
    """Policy YAML of an evaluation system-program target backing up `programs`, drilled with spec `drill`."""
    return f"""  - name: {name}
    category: system_program
    environment: evaluation
    owner: test
    sources: {{paths: ['{programs}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    drill: {drill}
"""
