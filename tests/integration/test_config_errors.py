"""Causes named and exit codes consistent across backup, restore and drill on the real stack: wrong S3 keys,
wrong repository password, no repository; a private state_dir; non-UTF-8 file names end to end.

Bad secrets live in a copy of the stack's secrets directory; the shared stack's secrets are never touched."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TARGET = """  - name: docs
    category: documentation
    owner: test
    sources: {{paths: ['{src}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(4096))
    return src


def _with_secrets(setup, stack, tmp_path: Path, change) -> Path:
    """A copy of the stack's secrets with `change(folder)` applied, and the config pointed at it."""
    folder = tmp_path / f"secrets-{uuid.uuid4().hex[:6]}"
    shutil.copytree(stack.secrets_dir, folder)
    change(folder)
    text = setup.config.read_text().replace(f"secrets_dir: '{stack.secrets_dir}'", f"secrets_dir: '{folder}'")
    setup.config.write_text(text)
    return folder


def _bad_s3_secret(folder: Path) -> None:
    env = folder / "s3-writer.env"
    lines = [ln if not ln.startswith("AWS_SECRET_ACCESS_KEY=") else "AWS_SECRET_ACCESS_KEY=not-the-secret-key"
             for ln in env.read_text().splitlines()]
    env.write_text("\n".join(lines) + "\n")


def _bad_password(folder: Path) -> None:
    (folder / "restic-password").write_text("not-the-password\n")


@pytest.fixture
def backed_up(policy, stack, tmp_path):
    setup = policy(TARGET.format(src=_source(tmp_path)), f"t-causes-{uuid.uuid4().hex[:8]}",
                   retry_attempts=1, retry_wait_seconds=0)
    run = setup.cli("backup", "--target", "docs", "--json")
    assert run.code == 0, run.stdout + run.stderr
    return setup


def _three(setup, tmp_path: Path) -> dict:
    out = {}
    out["backup"] = setup.cli("backup", "--target", "docs", "--json")
    out["restore"] = setup.cli("restore", "--target", "docs", "--to", str(tmp_path / f"r-{uuid.uuid4().hex[:6]}"),
                               "--json")
    out["drill"] = setup.cli("drill", "--target", "docs", "--json")
    out["check"] = setup.cli("check", "--json")
    return out


def _message(run) -> str:
    doc = run.doc
    if "error" in doc:
        return doc["error"]
    items = doc.get("results") or doc.get("drills") or []
    return " ".join(str(i.get("error") or i.get("reason") or "") for i in items)


@pytest.mark.restic
@pytest.mark.parametrize(("change", "says", "not_says"), [
    (_bad_s3_secret, "S3 storage refused the credentials", "no repository"),
    (_bad_password, "wrong repository password", "refused the credentials"),
])
def test_wrong_secret_named_and_exit_2_everywhere(backed_up, stack, tmp_path, change, says, not_says):
    _with_secrets(backed_up, stack, tmp_path, change)
    runs = _three(backed_up, tmp_path)
    for command, run in runs.items():
        message = _message(run)
        assert run.code == 2, (command, run.stdout, run.stderr)
        assert says in message and not_says not in message, (command, message)
        assert "not-the-" not in run.stdout + run.stderr  # the bad secret itself is never printed


@pytest.mark.restic
def test_no_repository_is_named(policy, stack, tmp_path):
    setup = policy(TARGET.format(src=_source(tmp_path)), f"t-norepo-{uuid.uuid4().hex[:8]}")
    run = setup.cli("restore", "--target", "docs", "--to", str(tmp_path / "r"), "--json")
    assert run.code == 1 and "no repository" in _message(run), run.stdout


def test_state_dir_is_private_after_a_backup(backed_up):
    state = backed_up.dir / "state"
    loose = []
    for root, dirs, files in os.walk(state):
        for name in dirs + files:
            path = Path(root) / name
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                loose.append(f"{path.relative_to(state)} {stat.S_IMODE(mode):04o}")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "state.sqlite").exists() and list((state / "manifests").rglob("*"))
    assert loose == []


@pytest.mark.restic
def test_non_utf8_file_name_through_backup_restore_drill_and_evidence(policy, tmp_path):
    src = _source(tmp_path)
    bad = os.path.join(os.fsencode(src), b"bad\xff.txt")
    with open(bad, "wb") as handle:
        handle.write(b"not utf-8 named\n")
    setup = policy(TARGET.format(src=src), f"t-names-{uuid.uuid4().hex[:8]}")
    run = setup.cli("backup", "--target", "docs", "--json")
    assert run.code == 0, run.stdout + run.stderr
    out = tmp_path / "restored"
    run = setup.cli("restore", "--target", "docs", "--to", str(out), "--json")
    assert run.code == 0, run.stdout + run.stderr
    found = [os.fsencode(p) for p in out.rglob("*") if os.fsencode(p.name) == b"bad\xff.txt"]
    assert found and open(found[0], "rb").read() == b"not utf-8 named\n"
    run = setup.cli("drill", "--target", "docs", "--full", "--json")
    assert run.code == 0, run.stdout + run.stderr
    (drill,) = run.doc["drills"]
    assert drill["verification"]["ok"] and drill["verification"]["verified"] == drill["files_restored"] == 3
    bundle = tmp_path / "evidence.tar.gz"
    run = setup.cli("evidence", "export", "--out", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    run = setup.cli("evidence", "verify", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr


def test_policy_without_logs_target_still_backs_up_with_a_warning(stack, tmp_path):
    from tests.integration.conftest import POLICY_HEAD, make_setup

    pdir = tmp_path / "policies"
    pdir.mkdir()
    head = POLICY_HEAD.format(endpoint=stack.env["BACKUPD_S3_ENDPOINT"], repo_path=f"t-gap-{uuid.uuid4().hex[:8]}")
    (pdir / "gap.yaml").write_text(head + TARGET.format(src=_source(tmp_path)))  # no logs, programs or data
    setup = make_setup(stack, tmp_path / "work", pdir)
    run = setup.cli("backup", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["results"][0]["status"] == "ok"
    assert "guideline gap" in run.stderr and "no target with category logs" in run.stderr
    assert setup.cli("status", "--json").code == 0
    assert setup.cli("policy", "lint", "--json").code == 1


LOGS = """  - name: applogs
    category: logs
    source: server
    owner: test
    sources: {{paths: ['{src}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


def test_edited_log_with_a_non_utf8_name_is_reported_in_evidence(policy, tmp_path):
    src = tmp_path / "logs"
    src.mkdir()
    bad = os.path.join(os.fsencode(src), b"bad\xff.log")
    with open(bad, "wb") as handle:
        handle.write(b"line one\n" * 600)
    setup = policy(LOGS.format(src=src), f"t-logname-{uuid.uuid4().hex[:8]}")
    assert setup.cli("backup", "--target", "applogs", "--json").code == 0
    with open(bad, "r+b") as handle:  # edited in the middle: an append-only finding that names the file
        handle.seek(100)
        handle.write(b"FORGED")
    run = setup.cli("backup", "--target", "applogs", "--json")
    (result,) = run.doc["results"]
    problems = result["facts"]["append_only"]["problems"]
    assert [p["kind"] for p in problems] == ["edited"], result
    bundle = tmp_path / "evidence.tar.gz"
    assert setup.cli("evidence", "export", "--out", str(bundle), "--json").code == 0
    run = setup.cli("evidence", "verify", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
