"""Evidence locked for evidence.retention on a real SeaweedFS: every evidence object carries its own COMPLIANCE
retain-until, so the writer cannot delete a version even where the bucket's default retention does not hold
(here: a bucket with Object Lock and no default rule), extend-locks lengthens it with the maintainer identity,
and `audit storage` flags an evidence object locked for less than evidence.retention."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from backupd.actions import keys as keys_action
from backupd.config.loader import Config
from backupd.evidence import keys, mirror, record
from backupd.policy.schema import S3Destination
from backupd.storage import evidence_objects, extend, freeze
from demo.seaweed import SeaweedFS
from tests.integration.test_storage import Env, _dest

pytestmark = pytest.mark.integration
NO_DEFAULT, LOCKED = "ev-nodefault", "ev-locked"
DAY = timedelta(days=1)
#: A writer confined to host it-host's prefixes (the audit's confinement probe is refused), with
#: PutObjectRetention only where it writes evidence.
CONFINED = {"confined": [f"Read:{LOCKED}", f"List:{LOCKED}"] + [
    f"{a}:{LOCKED}/{p}*" for p in ("audited/", "evidence/it-host/", ".backupd-incident/") for a in ("Write", "Tagging")]
    + [f"PutObjectRetention:{LOCKED}/{p}*" for p in ("audited/.backupd-escrow/", "evidence/it-host/",
                                                      ".backupd-incident/")]}


@pytest.fixture(scope="module")
def sw(tmp_path_factory):
    """Own SeaweedFS: an Object Lock bucket without a default rule, and a 42-day COMPLIANCE one."""
    base = tmp_path_factory.mktemp("sw")
    with SeaweedFS(base / "weed", secrets_dir=base / "secrets", buckets=[NO_DEFAULT, LOCKED],
                   extra_identities=CONFINED) as s:
        admin = s.client("admin")
        admin.create_bucket(Bucket=NO_DEFAULT, ObjectLockEnabledForBucket=True)
        admin.put_bucket_versioning(Bucket=NO_DEFAULT, VersioningConfiguration={"Status": "Enabled"})
        s.create_locked_bucket(LOCKED, days=42)
        yield s


def _versions(s3, prefix: str) -> list[tuple[str, str]]:
    listing = s3.list_object_versions(Bucket=NO_DEFAULT, Prefix=prefix)
    return [(v["Key"], v["VersionId"]) for v in listing.get("Versions", [])]


def _delete_refused(s3, key: str, version: str) -> bool:
    try:
        s3.delete_object(Bucket=NO_DEFAULT, Key=key, VersionId=version)
    except ClientError:
        return True
    return False


def test_writer_cannot_delete_evidence_versions_where_the_bucket_default_does_not_hold(sw, tmp_path):
    writer = sw.client("writer")
    # control: in this bucket an object written without its own retain-until is deletable by the writer
    # (that is how every evidence object was written before); so a refusal below is the object's own lock
    plain = writer.put_object(Bucket=NO_DEFAULT, Key="evidence/tos-01/records/plain.json", Body=b"x")["VersionId"]
    assert not _delete_refused(writer, "evidence/tos-01/records/plain.json", plain)

    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    for i in range(2):
        record(cfg, "backup", {"target": f"t{i}"})
    dest = SimpleNamespace(bucket=NO_DEFAULT)
    assert mirror.push_pending(cfg.state_dir, dest, writer, DAY) == 2
    assert mirror.checkpoint_if_due(cfg.state_dir, dest, writer, keys.load_or_create(cfg.state_dir), DAY,
                                    force=True, retention=DAY)
    until = datetime.now(timezone.utc) + DAY
    freeze.write(writer, NO_DEFAULT, "tos-01", {"id": "INC-1", "state": "open", "host": "tos-01"}, until)
    repo = S3Destination(kind="s3", endpoint=sw.endpoint, bucket=NO_DEFAULT, path="repo", object_lock=True,
                         credentials_file=sw.secrets_dir / "s3-writer.env", password_file=tmp_path / "pw")
    assert keys_action._mirror(repo, "worm", {"sealed": "envelope"}, until)

    evidence = [v for v in _versions(writer, "") if not v[0].endswith("plain.json")]
    kinds = {k.split("/")[2] if k.startswith("evidence/") and k.count("/") > 2 else k for k, _ in evidence}
    assert kinds == {"records", "checkpoints", "keys", f"evidence/tos-01/{keys.PUB_NAME}",
                     ".backupd-incident/tos-01.json", "repo/.backupd-escrow/worm.json"}, evidence
    for key, version in evidence:
        assert _delete_refused(writer, key, version), f"the writer deleted {key}"
        head = writer.head_object(Bucket=NO_DEFAULT, Key=key, VersionId=version)
        assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] > until - DAY / 2
    key, version = evidence[0]
    with pytest.raises(ClientError):  # nor shorten the lock
        writer.put_object_retention(Bucket=NO_DEFAULT, Key=key, VersionId=version, Retention={
            "Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(timezone.utc) + timedelta(hours=1)})

    result = extend.extend_evidence(sw.client("maintainer"), NO_DEFAULT,
                                    evidence_objects.prefixes("repo", mirror=True), timedelta(days=400),
                                    datetime.now(timezone.utc))
    assert result.extended == len(evidence) and not result.failed
    head = writer.head_object(Bucket=NO_DEFAULT, Key=key, VersionId=version)
    assert head["ObjectLockRetainUntilDate"] > datetime.now(timezone.utc) + timedelta(days=399)


def test_audit_storage_flags_an_evidence_object_locked_for_less_than_the_retention(sw, tmp_path):
    data = tmp_path / "data"
    for sub in ("programs", "exports", "logs"):
        (data / sub).mkdir(parents=True)
        (data / sub / "f").write_bytes(b"x")
    env = Env(sw, data, tmp_path, {"worm": _dest(sw, LOCKED, "audited").replace("s3-writer.env", "s3-confined.env")})
    with open(tmp_path / "backupd.yaml", "a") as handle:
        handle.write("evidence: {mirror: worm, retention: 400d}\n")
    assert env.cli("keys", "init").returncode == 0  # its evidence record goes to the mirror, locked 400 days

    clean = env.cli("audit", "storage", "--json")
    checks = {c["name"]: c for c in json.loads(clean.stdout)["destinations"][0]["checks"]}
    assert clean.returncode == 0 and checks["evidence_retention"]["ok"], clean.stdout + clean.stderr
    assert "0 object" not in checks["evidence_retention"]["detail"]

    # an evidence object locked only for the bucket's 42 days (as every one was before), well short of 400d
    key = "evidence/it-host/records/999999999999.json"
    sw.client("confined").put_object(Bucket=LOCKED, Key=key, Body=b"{}\n")
    flagged = env.cli("audit", "storage", "--json")
    assert flagged.returncode == 1, flagged.stdout + flagged.stderr
    doc = json.loads(flagged.stdout)["destinations"][0]
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "finding" and not checks["evidence_retention"]["ok"]
    assert f"{key}: retain-until" in checks["evidence_retention"]["detail"]
    assert "less than evidence.retention (400d)" in checks["evidence_retention"]["detail"]
    assert [n for n, c in checks.items() if not c["ok"] and c["severity"] == "error"] == ["evidence_retention"]
