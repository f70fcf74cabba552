"""Evidence anchored outside the host (moto for the WORM mirror): truncation, rollback and a swapped-in
re-signed ledger are detected by verify against the mirror and refused by the next append; a refused
mirror upload is a finding the daemon alerts on; checkpoints are signed and compared."""

from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import evidence_keys, evidence_verify
from backupd.config.loader import Config
from backupd.daemon.service import Service
from backupd.evidence import checkpoint, guard, keys, mirror, record, record_format
from backupd.evidence.guard import LedgerRegression
from backupd.evidence.ledger import Ledger
from backupd.notify import Alerts

BUCKET = "evidence-bkt"
DEST = SimpleNamespace(bucket=BUCKET)
HOUR = SimpleNamespace(total_seconds=lambda: 3600.0)


@pytest.fixture
def host(tmp_path, s3, monkeypatch):
    """A host whose every record goes to the (moto) mirror: (cfg, ledger path)."""
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    monkeypatch.setattr(mirror, "connect_if_configured", lambda c: mirror.Remote("worm", DEST, s3, "tos-01"))
    for i in range(1, 6):
        record(cfg, "backup", {"target": f"t{i}", "status": "ok"})
    return cfg, Ledger(cfg.state_dir).path


def _pull(s3, tmp_path):
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled", "tos-01")
    return got


def _ev(cfg):
    return cfg.state_dir / "evidence"


def test_every_record_is_mirrored_and_a_signed_checkpoint_covers_the_head(host, s3, tmp_path):
    cfg, path = host
    got = _pull(s3, tmp_path)
    assert got.records == 5 and got.ledger.read_bytes() == path.read_bytes()
    [cp] = got.checkpoints  # the first record pushed one; the next is due an hour later
    pub = keys.read_public(cfg.state_dir / "keys" / keys.PUB_NAME)
    assert checkpoint.signature_ok(cp, pub) and cp["kid"] == keys.fingerprint(pub)
    assert checkpoint.load_local(_ev(cfg))["seq"] == cp["seq"] == 1
    mirror.checkpoint_if_due(cfg.state_dir, DEST, s3, keys.load_or_create(cfg.state_dir), HOUR, force=True)
    assert max(c["seq"] for c in _pull(s3, tmp_path / "2").checkpoints) == 5
    doc = evidence_verify.verify(path, mirror_copy=_pull(s3, tmp_path / "3"))
    assert doc["ok"], doc["problems"]


def test_truncated_ledger_is_detected_against_the_mirror_and_refuses_the_next_append(host, s3, tmp_path):
    cfg, path = host
    mirror.checkpoint_if_due(cfg.state_dir, DEST, s3, keys.load_or_create(cfg.state_dir), HOUR, force=True)
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"".join(l + b"\n" for l in lines[:3]))  # seq 4 and 5 cut off: verifies INTACT alone
    assert evidence_verify.verify(path, [cfg.state_dir / "keys" / keys.PUB_NAME])["ok"]
    doc = evidence_verify.verify(path, mirror_copy=_pull(s3, tmp_path))
    assert not doc["ok"] and doc["ledger"]["first_bad_seq"] == 4
    assert any("WORM mirror holds records up to seq 5" in p for p in doc["problems"])
    assert any("checkpoint of seq 5" in p and "cut off" in p for p in doc["problems"])
    with pytest.raises(LedgerRegression, match="seq 5 was already mirrored") as exc:
        record(cfg, "backup", {"target": "t6"})
    assert exc.value.exit_code == 1
    assert path.read_bytes().count(b"\n") == 3  # nothing appended, no old seq reused
    assert guard.open_finding(_ev(cfg))["source"] == "local"
    with pytest.raises(LedgerRegression, match="appends are refused"):
        record(cfg, "backup", {"target": "t7"})


def test_rolled_back_state_dir_is_refused_by_the_mirror_before_anything_is_appended(host, s3, tmp_path):
    cfg, path = host
    saved = tmp_path / "saved"
    shutil.copytree(_ev(cfg), saved)  # the attacker's old copy: ledger, index and checkpoint at seq 5
    for i in range(6, 9):
        record(cfg, "backup", {"target": f"t{i}"})
    shutil.rmtree(_ev(cfg))
    shutil.copytree(saved, _ev(cfg))  # rolled back as a whole: every local reference agrees
    before = path.read_bytes()
    doc = evidence_verify.verify(path, mirror_copy=_pull(s3, tmp_path))
    assert not doc["ok"] and any("up to seq 8" in p for p in doc["problems"])
    with pytest.raises(LedgerRegression, match="already exists"):
        record(cfg, "backup", {"target": "t9"})
    assert path.read_bytes() == before
    assert guard.open_finding(_ev(cfg))["source"] == "mirror"


def test_swapped_in_resigned_ledger_is_detected_and_refused(host, s3, tmp_path):
    cfg, path = host
    mirror.checkpoint_if_due(cfg.state_dir, DEST, s3, keys.load_or_create(cfg.state_dir), HOUR, force=True)
    other = Ed25519PrivateKey.generate()
    out, prev = [], record_format.GENESIS
    for line in path.read_bytes().split(b"\n")[:-1]:
        rec = record_format.parse(line)
        data = {**rec["data"], "status": "failed"} if rec["seq"] == 2 else rec["data"]
        new = record_format.build(rec["seq"], prev, rec["host"], rec["kind"], data, other, rec["time"])
        out.append(new)
        prev = record_format.line_hash(new)
    path.write_bytes(b"".join(l + b"\n" for l in out))
    kdir = cfg.state_dir / "keys"
    (kdir / keys.PUB_NAME).write_bytes(keys.public_pem(other.public_key()))  # attacker swaps the key files too
    (kdir / keys.KEY_NAME).unlink()
    keys.write_private(kdir / keys.KEY_NAME, other)
    assert evidence_verify.verify(path, [kdir / keys.PUB_NAME])["ok"]  # self-consistent with the swapped key
    doc = evidence_verify.verify(path, mirror_copy=_pull(s3, tmp_path))
    assert not doc["ok"] and doc["ledger"]["first_bad_seq"] == 1
    assert doc["key_source"].startswith("WORM mirror")
    text = " ".join(doc["problems"])
    assert "not the trusted key" in text and "differs from the WORM mirror" in text
    assert "differs from the signed checkpoint" in text
    with pytest.raises(LedgerRegression, match="ledger replaced"):
        record(cfg, "backup", {"target": "t6"})


def test_refused_mirror_upload_is_a_finding_that_blocks_appends_and_alerts(host, s3, tmp_path):
    cfg, path = host
    rolled_back = record_format.build(6, record_format.GENESIS, "tos-01", "backup", {},
                                      keys.load_or_create(cfg.state_dir))  # signed by this host: a regression
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 6), Body=rolled_back + b"\n")
    with pytest.raises(LedgerRegression, match="already exists"):
        record(cfg, "backup", {"target": "t6"})  # the probe sees seq 6 taken before appending
    sent = []
    fake = SimpleNamespace(cfg=cfg, _side_thread=None, alerts=Alerts(
        tmp_path / "alerts", SimpleNamespace(rate_limit_per_hour=100), lambda *a, **k: None,
        send_to={"test": sent.append}))
    for _ in range(2):
        Service._evidence_health(fake, time.time())
    assert [(m.kind, m.state) for m in sent] == [("evidence_regression", "firing")]
    assert "already exists" in sent[0].summary


def test_push_of_a_conflicting_record_is_a_finding(tmp_path, s3):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})  # no mirror configured yet: stays pending
    other = record_format.build(1, record_format.GENESIS, "tos-01", "backup", {"x": 1},
                                keys.load_or_create(cfg.state_dir))  # this host's key: the ledger was replaced
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1), Body=other + b"\n")
    with pytest.raises(LedgerRegression, match="not overwriting"):
        mirror.push_pending(cfg.state_dir, DEST, s3)
    assert guard.open_finding(_ev(cfg))["source"] == "mirror"


def test_acknowledge_after_restoring_the_ledger_from_the_mirror(host, s3, tmp_path):
    cfg, path = host
    whole = path.read_bytes()
    path.write_bytes(b"".join(l + b"\n" for l in whole.split(b"\n")[:2]))
    with pytest.raises(LedgerRegression):
        record(cfg, "backup", {"target": "t6"})
    with pytest.raises(LedgerRegression):  # still cut off: acknowledging is refused, the finding stays
        evidence_keys.acknowledge(cfg, "not yet restored")
    assert guard.open_finding(_ev(cfg))
    path.write_bytes(_pull(s3, tmp_path).ledger.read_bytes())
    doc = evidence_keys.acknowledge(cfg, "restored from the WORM mirror")
    assert doc["acknowledged"] and doc["seq"] == 6 and not guard.open_finding(_ev(cfg))
    last = record_format.parse(path.read_bytes().split(b"\n")[-2])
    assert last["kind"] == "ledger-regression" and last["data"]["reason"] == "restored from the WORM mirror"
    assert record(cfg, "backup", {"target": "t7"})["seq"] == 7


def test_daemon_pushes_a_checkpoint_when_due(host, s3, tmp_path, monkeypatch):
    cfg, _ = host
    cfg.evidence = {"mirror": "worm", "checkpoint_period": "1h"}
    assert 3500 < mirror.checkpoint_due(cfg) <= 3600
    old = checkpoint.load_local(_ev(cfg))
    checkpoint.save_local(_ev(cfg), checkpoint.build("tos-01", old["seq"], old["head"],
                                                     keys.load_or_create(cfg.state_dir), "2020-01-01T00:00:00Z"))
    assert mirror.checkpoint_due(cfg) <= 0
    queued = []
    fake = SimpleNamespace(cfg=cfg, _side_thread=object(), _side=SimpleNamespace(put=queued.append),
                           alerts=SimpleNamespace(update=lambda *a: False))
    Service._evidence_health(fake, time.time())
    [push] = queued
    push()
    assert checkpoint.load_local(_ev(cfg))["seq"] == 5 and mirror.checkpoint_due(cfg) > 3500
    assert max(c["seq"] for c in _pull(s3, tmp_path).checkpoints) == 5


def test_signing_key_readable_by_others_is_refused(tmp_path):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})
    key = cfg.state_dir / "keys" / keys.KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o640)
    with pytest.raises(Exception, match="chmod 600"):
        record(cfg, "backup", {})


def test_pull_reports_checkpoints_that_do_not_match_the_mirrored_records(host, s3, tmp_path, monkeypatch):
    from backupd.actions import evidence as action

    cfg, _ = host
    key = keys.load_or_create(cfg.state_dir)
    forked = checkpoint.build("tos-01", 3, "f" * 64, key)  # signed by the host key, but another head
    s3.put_object(Bucket=BUCKET, Key=checkpoint.object_key(mirror.PREFIX, "tos-01", checkpoint.parse(forked)),
                  Body=forked + b"\n")
    ahead = checkpoint.build("tos-01", 9, "0" * 64, key)  # a head the mirrored records never reached
    s3.put_object(Bucket=BUCKET, Key=checkpoint.object_key(mirror.PREFIX, "tos-01", checkpoint.parse(ahead)),
                  Body=ahead + b"\n")
    monkeypatch.setattr(action, "pull_hosts", lambda *a, **k: mirror.pull(s3, BUCKET, tmp_path / "p", "tos-01"))
    monkeypatch.setattr(action, "pulled_bucket", lambda *a: BUCKET)
    doc = action.pull(cfg, None, "worm", tmp_path / "p", "tos-01")
    [got] = doc["hosts"]
    assert not doc["ok"] and got["checkpoints"] == 3 and got["last_checkpoint"] == 9
    assert any("record 3 differs from the signed checkpoint" in p for p in got["problems"])
    assert any("checkpoint of seq 9" in p and "ends at seq 5" in p for p in got["problems"])
