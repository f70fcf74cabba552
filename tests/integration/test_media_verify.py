"""`backupd media verify` on the verifier terminal, with loop-mounted ext4 images as media (mounted read-only
for the check): a synced medium checks clean and the check is signed in the verifier's ledger; a snapshot
written straight into the medium's repository is refused by name; a newest generation of encrypted files is
flagged by the change judgement; on an offline terminal an export bundle pinned to the host's key stands in
for the WORM mirror."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Setup
from tests.integration.media import MediaSet
from tests.integration.test_media import _with_media

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"), reason="needs root and losetup")]

VERIFIER_SECRETS = ("s3-auditor.env", "s3-verifier.env", "s3-canary.env", "restic-password")


def _target(data: Path) -> str:
    return f"""  - name: docs
    category: documentation
    owner: test
    sources: {{paths: ['{data}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    offline: {{max_age: 8d}}
"""


@pytest.fixture
def media(tmp_path):
    with MediaSet(tmp_path / "media") as found:
        for name in ("weekly-a", "weekly-b"):
            found.add(name)
        yield found


@pytest.fixture
def data(tmp_path) -> Path:
    """The target's own files (20 text files): the test encrypts them, so never the shared TOS tree."""
    root = tmp_path / "data"
    root.mkdir()
    for i in range(20):
        (root / f"report-{i:02d}.txt").write_text(f"berth {i} crane schedule\n" * 80)
    return root


def _host_setup(policy, stack, data: Path, media: MediaSet, **extra) -> tuple[Setup, str]:
    host = f"ev-mv-{uuid.uuid4().hex[:8]}"  # its records mirrored to the session bucket (writer: ev-*)
    setup = policy(_target(data), f"t-mv-{host}", **extra)
    setup.config.write_text(setup.config.read_text().replace("host: it-host", f"host: {host}"))
    _with_media(setup, media, names=("weekly-a", "weekly-b"))
    path = setup.config.parent.parent / "policies" / "test.yaml"  # the verifier reads with the auditor's keys
    path.write_text(path.read_text().replace("    credentials_file: s3-writer.env\n",
                                             "    credentials_file: s3-writer.env\n"
                                             "    auditor_credentials_file: s3-auditor.env\n", 1))
    return setup, host


def _verifier(stack, tmp_path: Path, host: str) -> Setup:
    """A verifier with its own state and key; its own ledger stays local (no evidence mirror of its own)."""
    secrets = tmp_path / "verifier-secrets"
    secrets.mkdir(mode=0o700)
    for name in VERIFIER_SECRETS:  # never the writer's keys
        shutil.copy(stack.secrets_dir / name, secrets / name)
        (secrets / name).chmod(0o600)
    vdir = tmp_path / "verifier"
    vdir.mkdir()
    config = vdir / "verifier.yaml"
    config.write_text("\n".join([
        "role: verifier", f"policies: ['{tmp_path / 'policies'}/*.yaml']", f"state_dir: '{vdir / 'state'}'",
        f"secrets_dir: '{secrets}'", "host: media-verifier", f"hosts: [{host}]"]) + "\n")
    return Setup(stack, vdir, config)


def _synced(setup: Setup, media: MediaSet, name: str) -> Path:
    """Sync the medium, then remount it read-only, as the verifier terminal mounts it."""
    mount = media[name].attach()
    run = setup.cli("media", "sync", "--medium", name, "--json")
    assert run.code == 0 and run.doc["read_back"] == "ok", run.stdout + run.stderr
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    return mount


def _records(setup: Setup, kind: str) -> list[dict]:
    lines = (setup.dir / "state" / "evidence" / "ledger.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _tree_state(mount: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in mount.rglob("*")}


def test_a_synced_medium_checks_clean_and_a_planted_snapshot_is_refused(policy, stack, media, data, tmp_path):
    setup, host = _host_setup(policy, stack, data, media, evidence="{mirror: worm}")
    assert setup.cli("backup", "--target", "docs", "--json").code == 0
    (data / "report-00.txt").write_text("berth 0 crane schedule, amended\n" * 80)
    assert setup.cli("backup", "--target", "docs", "--json").code == 0
    mount = _synced(setup, media, "weekly-a")
    verifier = _verifier(stack, tmp_path, host)
    before = _tree_state(mount)

    run = verifier.cli("media", "verify", str(mount), "--mirror", "worm", "--json")
    assert run.code == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc["status"] == "clean" and doc["findings"] == [] and doc["medium"] == "weekly-a"
    assert doc["uuid"] == media["weekly-a"].uuid and doc["read_only"] and doc["read_data"] == {host: "ok"}
    assert len([s for s in doc["snapshots"] if s["kind"] == "data"]) == 2
    judged = doc["judgement"][0]
    assert judged["target"] == "docs" and judged["reference"] and judged["flags"] == []
    assert _tree_state(mount) == before  # nothing written to the medium
    signed = _records(verifier, "media-verify")
    assert signed[-1]["seq"] == doc["seq"] and signed[-1]["data"]["status"] == "clean"
    assert signed[-1]["host"] == "media-verifier"
    status = verifier.cli("status", "--json")
    assert status.doc["media_checks"][0]["status"] == "clean"

    # a snapshot written straight into the medium's repository with the password: refused, by name
    subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
    env = {**os.environ, "RESTIC_REPOSITORY": str(mount / "backupd" / host / "repository"),
           "RESTIC_PASSWORD_FILE": str(Path(stack.secrets_dir) / "restic-password")}
    planted_dir = tmp_path / "planted"
    planted_dir.mkdir()
    (planted_dir / "evil.txt").write_text("not from the backup host\n")
    subprocess.run(["restic", "backup", "--host", host, "--tag", "backupd,target=docs", str(planted_dir)],
                   env=env, check=True, capture_output=True)
    planted = json.loads(subprocess.run(["restic", "snapshots", "--json", "--no-lock", "--path", str(planted_dir)],
                                        env=env, check=True, capture_output=True, text=True).stdout)[0]
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)

    run = verifier.cli("media", "verify", str(mount), "--mirror", "worm", "--json")
    assert run.code == 1, run.stdout + run.stderr
    found = [f for f in run.doc["findings"] if f["kind"] == "unannounced"]
    assert [f["snapshot_id"] for f in found] == [planted["id"]], run.doc["findings"]
    assert planted["short_id"] in found[0]["message"] and "planted" in found[0]["message"]
    assert _records(verifier, "media-verify")[-1]["data"]["status"] == "failed"
    human = verifier.cli("media", "verify", str(mount), "--mirror", "worm")
    assert human.code == 1 and planted["short_id"] in human.stderr + human.stdout
    status = verifier.cli("status", "--json")  # marked until a clean check
    assert status.code == 1 and status.doc["media_checks"][0]["status"] == "failed"

    # the backup host's own config is refused: a check by the writer proves nothing
    run = setup.cli("media", "verify", str(mount), "--json")
    assert run.code == 2 and "verifier" in run.doc["error"]


def test_offline_with_a_bundle_flags_a_mass_encrypted_newest_generation(policy, stack, media, data, tmp_path):
    setup, host = _host_setup(policy, stack, data, media)
    assert setup.cli("backup", "--target", "docs", "--json").code == 0
    for path in sorted(data.iterdir())[:15]:  # ransomware: most files rewritten with random bytes
        path.write_bytes(os.urandom(2048))
    assert setup.cli("backup", "--target", "docs", "--json").code == 0
    mount = _synced(setup, media, "weekly-b")
    bundle = tmp_path / "evidence.tar.gz"
    assert setup.cli("evidence", "export", "--out", str(bundle), "--json").code == 0
    key = setup.dir / "state" / "keys" / "evidence-ed25519.pub"
    verifier = _verifier(stack, tmp_path, host)

    # a bundle's own key proves nothing: pin the host's key
    run = verifier.cli("media", "verify", str(mount), "--bundle", str(bundle), "--json")
    assert run.code == 2 and "--public-key" in run.doc["error"]

    run = verifier.cli("media", "verify", str(mount), "--bundle", str(bundle), "--public-key", str(key), "--json")
    assert run.code == 1, run.stdout + run.stderr
    doc = run.doc
    assert doc["source"].startswith("bundle") and doc["read_data"] == {host: "ok"}
    assert [f["kind"] for f in doc["findings"]] == ["suspect"], doc["findings"]
    assert "mass encryption suspected" in doc["findings"][0]["message"]
    judged = doc["judgement"][0]
    assert judged["change"]["changed"] == 15 and judged["change"]["high_entropy_share"] >= 0.6
    assert _records(verifier, "media-verify")[-1]["data"]["status"] == "failed"

    # a bundle under another key does not verify: nothing counts as announced
    other = verifier.dir / "state" / "keys" / "evidence-ed25519.pub"
    run = verifier.cli("media", "verify", str(mount), "--bundle", str(bundle), "--public-key", str(other), "--json")
    assert run.code == 1 and "does not verify" in run.doc["error"]
