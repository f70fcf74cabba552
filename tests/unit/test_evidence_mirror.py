"""WORM mirror logic on moto: push once per record, never overwrite, pull rebuilds and flags overwrites."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from backupd.config.loader import Config
from backupd.evidence import keys, mirror, record, record_format
from backupd.evidence.guard import LedgerRegression
from backupd.evidence.ledger import Ledger
from backupd.evidence.verify import verify_lines

BUCKET = "evidence-bkt"


@pytest.fixture
def cfg(tmp_path):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    for i in range(3):
        record(cfg, "backup", {"target": f"t{i}"})
    return cfg


DEST = SimpleNamespace(bucket=BUCKET)


def test_push_then_pull_reproduces_the_ledger(s3, cfg, tmp_path):
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 3
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 0  # nothing pending, nothing re-put
    record(cfg, "forget", {"target": "t0"})
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 1
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled")
    assert got.host == "tos-01" and got.records == 4 and not got.problems
    assert got.ledger.read_bytes() == Ledger(cfg.state_dir).path.read_bytes()
    assert got.public_key.read_bytes() == (cfg.state_dir / "keys" / keys.PUB_NAME).read_bytes()


def test_lost_index_does_not_reupload(s3, cfg):
    mirror.push_pending(cfg.state_dir, DEST, s3)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (cfg.state_dir / "evidence" / name).unlink(missing_ok=True)
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 3  # confirmed by HEAD, not re-put
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="evidence/")["Versions"]
    assert len(versions) == 5  # 3 records + the public key (anchor and keys/<kid>.pub), one version each


def own_record(cfg, seq: int) -> bytes:
    """Another record at seq signed by the host's own key: what a rolled-back ledger wrote once."""
    return record_format.build(seq, record_format.GENESIS, "tos-01", "backup", {"target": "other"},
                               keys.load_or_create(cfg.state_dir)) + b"\n"


def test_existing_object_with_other_content_is_never_overwritten(s3, cfg):
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1), Body=own_record(cfg, 1))
    with pytest.raises(LedgerRegression, match="not overwriting"):
        mirror.push_pending(cfg.state_dir, DEST, s3)


def test_pull_uses_the_oldest_version_and_reports_overwrites(s3, cfg, tmp_path):
    mirror.push_pending(cfg.state_dir, DEST, s3)
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 2), Body=b"forged\n")
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled")
    assert any("foreign object evidence/tos-01/records/000000000002.json" in p for p in got.problems)
    assert [f["why"] for f in got.foreign] == ["not signed by the host's key chain"]
    pub = keys.read_public(got.public_key)
    assert verify_lines(got.ledger.read_bytes().split(b"\n")[:-1], [pub]).ok
