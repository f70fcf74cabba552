"""Offline copies on rotated media: three loop-mounted ext4 images as the rotation set weekly-a/b/c.
Sync, detach, reattach; a medium from outside the set, one carrying a snapshot the ledger never announced
and a full one are refused with nothing written; status shows the offline age; a full restore from a medium
with the S3 endpoint unreachable verifies every file against its backup-time manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.media import MediaSet

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"), reason="needs root and losetup")]


def _target(root: str) -> str:
    return f"""  - name: docs
    category: documentation
    owner: test
    sources: {{paths: ['{root}/exports']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    offline: {{max_age: 8d}}
"""


def _with_media(setup, media: MediaSet, names=("weekly-a", "weekly-b", "weekly-c")) -> None:
    path = setup.config.parent.parent / "policies" / "test.yaml"
    text = path.read_text().replace("targets:\n", "  offsite:\n    kind: removable\n    password_file: "
                                    "restic-password\n    media:\n" + "".join(media[n].yaml() for n in names)
                                    + "targets:\n", 1)
    path.write_text(text)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _restic_snapshots(stack, repo: Path) -> list[dict]:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo),
           "RESTIC_PASSWORD_FILE": str(Path(stack.secrets_dir) / "restic-password")}
    done = subprocess.run(["restic", "snapshots", "--json", "--no-lock"], env=env, capture_output=True, text=True)
    return json.loads(done.stdout or "[]")


@pytest.fixture
def media(tmp_path):
    with MediaSet(tmp_path / "media") as found:
        for name in ("weekly-a", "weekly-b", "weekly-c", "stranger"):
            found.add(name)
        yield found


def test_sync_rotate_refuse_and_restore_from_a_medium(policy, stack, media, tmp_path):
    root = stack.env["TOS_ROOT"]
    setup = policy(_target(root), f"t-media-{os.getpid()}")
    _with_media(setup, media)
    assert setup.cli("policy", "lint").code == 0
    assert setup.cli("backup", "--target", "docs", "--json").code == 0

    # nothing attached: a dependency missing (exit 3), nothing recorded
    run = setup.cli("media", "sync", "--json")
    assert run.code == 3 and "no medium of the rotation set is attached" in run.doc["error"]

    # weekly-a: sync, read back, recorded, may be detached
    mount_a = media["weekly-a"].attach()
    run = setup.cli("media", "sync", "--json")
    assert run.code == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc["medium"] == "weekly-a" and doc["uuid"] == media["weekly-a"].uuid
    assert doc["read_back"] == "ok" and doc["targets"]["docs"]["generations"] == 1
    assert len(doc["copied"]) == 1 and doc["copied"][0]["original"]
    on_medium = _restic_snapshots(stack, mount_a / "backupd" / "it-host" / "repository")
    assert [s["original"] for s in on_medium] == [doc["copied"][0]["original"]]
    assert json.loads((mount_a / "backupd" / "it-host" / "last-sync.json").read_text())["seq"] == doc["seq"]
    human = setup.cli("media", "sync")
    assert human.code == 0 and "may be detached" in human.stderr + human.stdout
    media["weekly-a"].detach()

    # a new generation; weekly-b gets both, weekly-a (reattached) only the missing one
    assert setup.cli("backup", "--target", "docs", "--json").code == 0
    media["weekly-b"].attach()
    run = setup.cli("media", "sync", "--medium", "weekly-b", "--json")
    assert run.code == 0 and run.doc["targets"]["docs"]["generations"] == 2 and len(run.doc["copied"]) == 2
    media["weekly-b"].detach()
    media["weekly-a"].attach()
    run = setup.cli("media", "sync", "--json")
    assert run.code == 0 and len(run.doc["copied"]) == 1 and run.doc["targets"]["docs"]["generations"] == 2

    # two set media attached at once: name one (exit 2)
    media["weekly-b"].attach()
    run = setup.cli("media", "sync", "--json")
    assert run.code == 2 and "--medium" in run.doc["error"]
    media["weekly-b"].detach()
    media["weekly-a"].detach()

    # a medium from outside the set: refused, nothing written
    stranger = media["stranger"].attach()
    run = setup.cli("media", "sync", "--mountpoint", str(stranger), "--json")
    assert run.code == 2 and "is not a medium of the rotation set" in run.doc["error"], run.stdout
    assert not (stranger / "backupd").exists()
    media["stranger"].detach()

    # status: per target the newest offline copy, its age against max_age, and where it is
    run = setup.cli("status", "--json")
    row = next(r for r in run.doc["targets"] if r["target"] == "docs")
    assert row["offline_status"] == "ok" and row["offline_medium"] == "weekly-a"
    assert 0 <= row["offline_age_seconds"] < 600 and row["offline_max_age_seconds"] == 8 * 86400
    assert set(row["offline_media"]) == {"weekly-a", "weekly-b"}

    # restore with the S3 endpoint unreachable: from the attached medium, on its own, and said so
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    path = setup.config.parent.parent / "policies" / "test.yaml"
    path.write_text(path.read_text().replace(stack.env["BACKUPD_S3_ENDPOINT"], f"http://127.0.0.1:{dead}"))
    media["weekly-b"].attach()
    run = setup.cli("restore", "--target", "docs", "--to", str(tmp_path / "restored"), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.doc["destination"] == "offsite:weekly-b" and "unreachable" in run.doc["explanation"]
    assert run.doc["verification"]["ok"] and run.doc["verification"]["verified"] > 0
    restored = tmp_path / "restored" / Path(root).relative_to("/") / "exports"
    assert _tree(restored) == _tree(Path(root) / "exports")
    run = setup.cli("restore", "--target", "docs", "--destination", "weekly-b", "--to", str(tmp_path / "r2"),
                    "--json")
    assert run.code == 0 and run.doc["destination"] == "offsite:weekly-b" and run.doc["verification"]["ok"]

    # a drill with S3 down drills the medium, says so, and counts for the verified RPO
    run = setup.cli("drill", "--target", "docs", "--full", "--json")
    report = run.doc["drills"][0]
    assert report["destination"] == "offsite:weekly-b" and "unreachable" in report["source"], run.stdout
    assert report["verdict"] in ("PASS", "WARN"), run.stdout
    row = next(r for r in setup.cli("status", "--json").doc["targets"] if r["target"] == "docs")
    assert row["verified_snapshot_time"] is not None


def test_a_full_medium_and_a_planted_snapshot_are_refused(policy, stack, media, tmp_path):
    root = stack.env["TOS_ROOT"]
    setup = policy(_target(root), f"t-media-r-{os.getpid()}")
    _with_media(setup, media)
    assert setup.cli("backup", "--target", "docs", "--json").code == 0

    # full: a filler leaves less room than the copy needs; refused before the repository is created
    mount = media["weekly-c"].attach()
    filler = mount / "filler"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "wb") as out:
        out.truncate(0)
        out.write(b"\0" * (free - (2 << 20)))
    run = setup.cli("media", "sync", "--json")
    assert run.code == 1 and "only" in run.doc["error"] and "MiB are free" in run.doc["error"], run.stdout
    assert not (mount / "backupd" / "it-host" / "repository").exists()
    filler.unlink()

    # a snapshot the ledger never announced (written with the password, straight to the medium): refused
    assert setup.cli("media", "sync", "--json").code == 0
    repo = mount / "backupd" / "it-host" / "repository"
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo),
           "RESTIC_PASSWORD_FILE": str(Path(stack.secrets_dir) / "restic-password")}
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "evil.txt").write_text("not from the backup host\n")
    subprocess.run(["restic", "backup", "--host", "it-host", "--tag", "target=docs", str(planted)], env=env,
                   check=True, capture_output=True)
    before = sorted(p.name for p in (repo / "snapshots").iterdir())
    assert setup.cli("backup", "--target", "docs", "--json").code == 0
    run = setup.cli("media", "sync", "--json")
    assert run.code == 1 and "never announced" in run.doc["error"], run.stdout
    assert sorted(p.name for p in (repo / "snapshots").iterdir()) == before  # nothing written

    # the evidence report lists every rotation (the refusals too); G6 met by the verified one; verify rebuilds it
    bundle = tmp_path / "evidence.tar.gz"
    run = setup.cli("evidence", "export", "--out", str(bundle), "--json")
    assert run.doc["conformance"]["G6"] == "met", run.stdout
    with tarfile.open(bundle) as tar:
        report = json.load(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("report.json"))))
    docs = next(t for t in report["targets"] if t["name"] == "docs")
    assert [(r["medium"], r["status"], r["read_back"]) for r in docs["offline_rotations"]] == [
        ("weekly-c", "refused", "not run"), ("weekly-c", "ok", "ok"), ("weekly-c", "refused", "not run")]
    assert setup.cli("evidence", "verify", str(bundle), "--json").code == 0
