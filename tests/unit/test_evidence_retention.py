"""Evidence locked as long as it must live (moto): evidence.retention, the explicit COMPLIANCE retain-until on every
evidence object, its extension by extend-locks and the storage audit's read-back. The refused delete on a real
SeaweedFS is in tests/integration/test_evidence_retention.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backupd.actions import extend as extend_action
from backupd.actions import keys as keys_action
from backupd.config.loader import Config
from backupd.errors import ConfigError
from backupd.evidence import keys, mirror, record, settings
from backupd.policy.schema import S3Destination
from backupd.storage import evidence_objects, extend, freeze, readback
from backupd.storage.lock_cache import LockCache
from tests.unit.cli_helper import cli, write_secrets

BUCKET = "worm"
YEAR = timedelta(days=365)
DEST = SimpleNamespace(bucket=BUCKET)


def _lock(s3, key: str, version: str | None = None) -> tuple[str | None, datetime | None]:
    head = s3.head_object(Bucket=BUCKET, Key=key, **({"VersionId": version} if version else {}))
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")


def _put(s3, key: str, until: datetime | None = None, body: bytes = b"x") -> str:
    lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until} if until else {}
    return s3.put_object(Bucket=BUCKET, Key=key, Body=body, **lock)["VersionId"]


def _cfg(**evidence) -> SimpleNamespace:
    return SimpleNamespace(evidence=evidence)


def test_retention_defaults_to_the_longer_of_audit_period_and_a_year():
    assert settings.of(_cfg()).retention == YEAR
    assert settings.of(_cfg(audit_period="30d")).retention == YEAR
    assert settings.of(_cfg(audit_period="2y")).retention == 2 * YEAR
    assert settings.of(_cfg(audit_period="30d", retention="60d")).retention == timedelta(days=60)
    now = datetime(2026, 7, 1, tzinfo=timezone.utc)
    assert settings.retain_until(_cfg(retention="3y"), now) == now + 3 * YEAR


@pytest.mark.parametrize(("evidence", "message"), [
    ({"retention": "6w"}, "evidence.retention: 6w is shorter than evidence.audit_period (1y)"),
    ({"audit_period": "2y", "retention": "1y"}, "evidence.retention: 1y is shorter than evidence.audit_period"),
    ({"retention": "forever"}, "evidence.retention: invalid duration"),
])
def test_retention_below_the_audit_period_is_a_config_error(evidence, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings.of(_cfg(**evidence))


def test_retention_below_the_audit_period_in_backupd_yaml_is_exit_2_naming_file_line_field(tmp_path):
    (tmp_path / "policies").mkdir()
    write_secrets(tmp_path / "secrets")
    path = tmp_path / "backupd.yaml"
    path.write_text("policies: [policies/*.yaml]\nsecrets_dir: secrets\nevidence:\n  audit_period: 1y\n"
                    "  retention: 6w\n")
    code, doc = cli("status", "--config", str(path))
    assert code == 2, doc
    assert f"{path}:5: evidence.retention: 6w is shorter than evidence.audit_period" in doc["error"], doc["error"]


def test_every_mirrored_evidence_object_is_locked_compliance_for_the_retention(s3, tmp_path):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    for i in range(2):
        record(cfg, "backup", {"target": f"t{i}"})
    before = datetime.now(timezone.utc)
    assert mirror.push_pending(cfg.state_dir, DEST, s3, 2 * YEAR) == 2
    mirror.checkpoint_if_due(cfg.state_dir, DEST, s3, keys.load_or_create(cfg.state_dir), timedelta(hours=1),
                             force=True, retention=2 * YEAR)
    found = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="evidence/tos-01/")["Contents"]]
    kinds = {k.split("/")[2].split(".")[0] if k.count("/") > 2 else k.rsplit("/", 1)[1] for k in found}
    assert kinds == {"records", "checkpoints", "keys", keys.PUB_NAME}, found
    for key in found:
        mode, until = _lock(s3, key)
        assert mode == "COMPLIANCE", key
        assert before + 2 * YEAR - timedelta(seconds=1) <= until <= datetime.now(timezone.utc) + 2 * YEAR, key


def test_incident_marker_and_escrow_copy_carry_their_own_lock(s3, monkeypatch):
    until = (datetime.now(timezone.utc) + 2 * YEAR).replace(microsecond=0)
    marker = {"id": "INC-1", "state": "open", "host": "tos-01", "started": "2026-07-01T00:00:00+00:00"}
    freeze.write(s3, BUCKET, "tos-01", marker, until)
    assert _lock(s3, freeze.marker_key("tos-01")) == ("COMPLIANCE", until)
    monkeypatch.setattr(keys_action, "s3_client", lambda dest, *a: s3)
    dest = S3Destination(kind="s3", endpoint="http://s3.test", bucket=BUCKET, path="repo", object_lock=True,
                         credentials_file="k.env", password_file="pw")
    assert keys_action._mirror(dest, "worm", {"sealed": "..."}, until)
    assert _lock(s3, "repo/.backupd-escrow/worm.json") == ("COMPLIANCE", until)


def test_extend_evidence_lengthens_every_version_under_the_evidence_prefixes_only(s3):
    now = datetime.now(timezone.utc).replace(microsecond=0)  # S3 keeps whole seconds
    short = now + timedelta(days=2)
    first = _put(s3, "evidence/tos-01/records/000000000001.json", short, b"genuine")
    second = _put(s3, "evidence/tos-01/records/000000000001.json", short, b"forged")  # the oldest is trusted
    _put(s3, ".backupd-incident/tos-01.json", short)
    _put(s3, "repo/.backupd-escrow/worm.json", None)  # written without a lock: it gets one
    s3.delete_object(Bucket=BUCKET, Key="repo/.backupd-escrow/worm.json")  # a delete marker: skipped
    _put(s3, "repo/data/aa/pack", short)  # restic data: the repository extender's business, not this one
    prefixes = evidence_objects.prefixes("repo", mirror=True)
    result = extend.extend_evidence(s3, BUCKET, prefixes, YEAR, now)
    assert (result.objects, result.extended, result.failed) == (4, 4, [])
    for key, version in (("evidence/tos-01/records/000000000001.json", first),
                         ("evidence/tos-01/records/000000000001.json", second)):
        assert _lock(s3, key, version) == ("COMPLIANCE", now + YEAR)
    assert _lock(s3, ".backupd-incident/tos-01.json")[1] == now + YEAR
    assert _lock(s3, "repo/data/aa/pack")[1] == short
    again = extend.extend_evidence(s3, BUCKET, prefixes, YEAR, now + timedelta(hours=1))
    assert (again.extended, again.already) == (0, 4)
    assert extend.extend_evidence(s3, BUCKET, evidence_objects.prefixes("repo", mirror=False), YEAR, now).objects == 2


def test_extend_evidence_reads_a_remembered_lock_only_when_it_is_due_again(s3, tmp_path, monkeypatch):
    """A weekly run must not HEAD (nor re-lock) every evidence version ever written: the cache remembers what
    was set, and a version is read again only once its lock comes within the margin of the goal."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for seq in range(1, 6):
        _put(s3, f"evidence/tos-01/records/{seq:012d}.json", now + timedelta(days=2))
    heads = []
    real = s3.head_object
    monkeypatch.setattr(s3, "head_object", lambda **kw: heads.append(kw["Key"]) or real(**kw))
    with LockCache(tmp_path / "locks.sqlite") as cache:
        first = extend.extend_evidence(s3, BUCKET, ["evidence/"], YEAR, now, cache=cache)
    assert (first.extended, len(heads)) == (5, 5)
    heads.clear()
    with LockCache(tmp_path / "locks.sqlite") as cache:
        weekly = extend.extend_evidence(s3, BUCKET, ["evidence/"], YEAR, now + timedelta(days=7), cache=cache)
    assert (weekly.extended, weekly.already, heads) == (0, 5, [])
    with LockCache(tmp_path / "locks.sqlite") as cache:
        due = extend.extend_evidence(s3, BUCKET, ["evidence/"], YEAR, now + timedelta(days=40), cache=cache)
    assert (due.extended, len(heads)) == (5, 5)
    assert _lock(s3, "evidence/tos-01/records/000000000001.json")[1] == now + timedelta(days=40) + YEAR


def test_extend_locks_extends_evidence_with_the_maintainer_identity(s3, tmp_path, monkeypatch):
    """The action: repository objects to now + R, the mirror destination's evidence to now + evidence.retention."""
    _put(s3, "evidence/tos-01/records/000000000001.json", datetime.now(timezone.utc) + timedelta(days=1))
    _put(s3, "repo/config", datetime.now(timezone.utc) + timedelta(days=1))
    used = []
    monkeypatch.setattr(extend_action, "s3_client", lambda dest, keys=None: used.append(keys) or s3)
    dest = S3Destination(kind="s3", endpoint="http://s3.test", bucket=BUCKET, path="repo", object_lock=True,
                         credentials_file="w.env", maintainer_credentials_file="m.env", password_file="pw",
                         lock_extension="6w")
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm",
                                                                                 "retention": "2y"})
    [out] = extend_action.run(cfg, SimpleNamespace(destinations={"worm": dest}, targets=[]))
    assert out["status"] == "ok" and out["evidence_extended"] == 1 and out["evidence_retention"] == "2y", out
    assert used and all(str(k).endswith("m.env") for k in used)
    until = _lock(s3, "evidence/tos-01/records/000000000001.json")[1]
    assert until >= datetime.now(timezone.utc) + 2 * YEAR - timedelta(minutes=1)
    assert _lock(s3, "repo/config")[1] < datetime.now(timezone.utc) + timedelta(weeks=7)


def test_the_maintenance_role_extends_the_mirrored_evidence_without_naming_a_mirror(s3, tmp_path, monkeypatch):
    """maintenance.yaml (role: maintenance) names no evidence.mirror: evidence/ in its buckets is still extended."""
    _put(s3, "evidence/tos-01/records/000000000001.json", datetime.now(timezone.utc) + timedelta(days=1))
    monkeypatch.setattr(extend_action, "s3_client", lambda dest, keys=None: s3)
    dest = S3Destination(kind="s3", endpoint="http://s3.test", bucket=BUCKET, path="repo", object_lock=True,
                         credentials_file="w.env", maintainer_credentials_file="m.env", password_file="pw")
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    [out] = extend_action.run(cfg, SimpleNamespace(destinations={"worm": dest}, targets=[]))
    assert out["status"] == "ok" and out["evidence_extended"] == 1, out
    assert _lock(s3, "evidence/tos-01/records/000000000001.json")[1] > datetime.now(timezone.utc) + YEAR / 2


def test_evidence_readback_flags_short_missing_and_lapsed_locks_but_not_the_extenders_margin(s3):
    now = datetime.now(timezone.utc)
    prefixes = evidence_objects.prefixes("repo", mirror=True)
    _put(s3, "evidence/tos-01/records/000000000001.json", now + YEAR)
    _put(s3, "evidence/tos-01/records/000000000002.json", now + YEAR - timedelta(hours=6))  # within the margin
    check, read = readback.evidence_readback(s3, BUCKET, prefixes, None, YEAR, now)
    assert check.ok and read == 2, check.detail
    _put(s3, "evidence/tos-01/records/000000000003.json", now + timedelta(days=42))  # the bucket's 6 weeks
    _put(s3, ".backupd-incident/tos-01.json", None)
    check, _ = readback.evidence_readback(s3, BUCKET, prefixes, None, YEAR, now)
    assert check.name == "evidence_retention" and not check.ok
    assert "000000000003.json: retain-until" in check.detail and "less than evidence.retention (1y)" in check.detail
    assert ".backupd-incident/tos-01.json: no Object Lock retention" in check.detail
    assert "000000000001" not in check.detail and "000000000002" not in check.detail
    check, _ = readback.evidence_readback(s3, BUCKET, prefixes, None, YEAR, now + YEAR + timedelta(days=1))
    assert "000000000001.json: retention lapsed" in check.detail


def test_a_version_whose_lock_cannot_be_read_is_named_and_never_stops_extension_or_audit(s3):
    """A host may put a version in its own prefix that HEAD refuses (e.g. SSE-C: 400 without its key): the
    extender still extends every other host's evidence, and the audit names it instead of failing whole."""
    from tests.unit.test_escrow_copies import RefusesHead
    now = datetime.now(timezone.utc).replace(microsecond=0)
    odd = _put(s3, "evidence/tos-01/records/000000000001.json", now + timedelta(days=2))
    _put(s3, "evidence/verifier-01/records/000000000001.json", now + timedelta(days=2))
    bucket = RefusesHead(s3, odd)
    result = extend.extend_evidence(bucket, BUCKET, ["evidence/"], YEAR, now)
    assert (result.objects, result.extended) == (2, 1) and len(result.failed) == 1
    assert result.failed[0].startswith("evidence/tos-01/records/000000000001.json") and "400" in result.failed[0]
    assert _lock(s3, "evidence/verifier-01/records/000000000001.json")[1] == now + YEAR
    check, read = readback.evidence_readback(bucket, BUCKET, ["evidence/"], None, YEAR, now)
    assert read == 2 and not check.ok and "evidence/tos-01/records/000000000001.json" in check.detail
    assert "1 of 2" in check.detail
