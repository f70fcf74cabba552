"""Objects another identity plants under a host's evidence prefix (moto): never a head regression, reported
by the host (warning, foreign.json, a mirror-foreign-object record) and by pull, which keeps the versions the
host's key chain signed."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import evidence_keys, evidence_verify
from backupd.config.loader import Config
from backupd.evidence import canonical, foreign, guard, keys, mirror, record, record_format, rotation
from backupd.evidence.guard import LedgerRegression
from backupd.evidence.ledger import Ledger

BUCKET = "evidence-bkt"
DEST = SimpleNamespace(bucket=BUCKET)


@pytest.fixture
def host(tmp_path, s3, monkeypatch):
    """tos-01 with five records mirrored: (cfg, ledger path)."""
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    monkeypatch.setattr(mirror, "connect_if_configured", lambda c: mirror.Remote("worm", DEST, s3, "tos-01"))
    for i in range(1, 6):
        record(cfg, "backup", {"target": f"t{i}"})
    return cfg, Ledger(cfg.state_dir).path


def forged(seq: int, host: str = "tos-01", key=None) -> bytes:
    """A well-formed record for host signed by a key that is not the host's (the planter's)."""
    return record_format.build(seq, record_format.GENESIS, host, "drill", {"verdict": "PASS"},
                               key or Edkey()) + b"\n"


def Edkey():
    return Ed25519PrivateKey.generate()


def versions(s3, key: str) -> list[dict]:
    return [v for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", []) if v["Key"] == key]


def body(s3, key: str, version: str | None = None) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key, **({"VersionId": version} if version else {}))["Body"].read()


def test_a_record_planted_at_the_next_seq_is_reported_and_the_append_goes_on(host, s3, tmp_path):
    cfg, path = host
    plant = forged(6)
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 6), Body=plant)
    assert record(cfg, "backup", {"target": "t6"})["seq"] == 6  # no LedgerRegression
    assert guard.open_finding(cfg.state_dir / "evidence") is None
    lines = path.read_bytes().split(b"\n")[:-1]
    assert len(versions(s3, mirror.record_key("tos-01", 6))) == 2
    assert body(s3, mirror.record_key("tos-01", 6)) == lines[5] + b"\n"  # the host's record beside the plant
    report = record_format.parse(lines[6])
    assert report["kind"] == foreign.KIND
    [obj] = report["data"]["objects"]
    assert obj["object"] == mirror.record_key("tos-01", 6) and obj["sha256"] == canonical.sha256(plant)
    assert obj["size"] == len(plant)
    assert foreign.open_finding(cfg.state_dir / "evidence")["objects"][0]["recorded_seq"] == 7
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled", "tos-01")
    assert got.ledger.read_bytes() == path.read_bytes()  # the genuine version, not the older plant
    assert [(f["key"], f["sha256"]) for f in got.foreign] == [(mirror.record_key("tos-01", 6), obj["sha256"])]
    doc = evidence_verify.verify(path, mirror_copy=got)
    assert not doc["ok"] and any("foreign object" in p for p in doc["problems"])
    assert record(cfg, "backup", {"target": "t8"})["seq"] == 8  # reported once, the ledger goes on
    assert record_format.parse(path.read_bytes().split(b"\n")[-2])["kind"] == "backup"


def test_a_plant_met_by_the_upload_is_written_beside_and_acknowledged(tmp_path, s3):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})  # no mirror configured yet: stays pending
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1), Body=b"planted\n")
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 1
    assert len(versions(s3, mirror.record_key("tos-01", 1))) == 2
    ev = cfg.state_dir / "evidence"
    assert [o["key"] for o in foreign.unrecorded(ev)] == [mirror.record_key("tos-01", 1)]
    doc = evidence_keys.acknowledge(cfg, "the backup host's writer was confined")
    assert [o["object"] for o in doc["foreign_objects"]] == [mirror.record_key("tos-01", 1)]
    assert foreign.open_finding(ev) is None
    kinds = [record_format.parse(l)["kind"] for l in Ledger(cfg.state_dir).path.read_bytes().split(b"\n")[:-1]]
    assert kinds == ["backup", foreign.ACK_KIND]  # no report after the push: the acknowledgement names it


def test_a_rollback_is_still_refused_when_a_plant_covers_the_mirrored_record(host, s3, tmp_path):
    cfg, path = host
    saved = tmp_path / "saved"
    shutil.copytree(cfg.state_dir / "evidence", saved)
    record(cfg, "backup", {"target": "t6"})
    shutil.rmtree(cfg.state_dir / "evidence")
    shutil.copytree(saved, cfg.state_dir / "evidence")  # rolled back as a whole to seq 5
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 6), Body=forged(6))  # newest version: a plant
    with pytest.raises(LedgerRegression, match="signed by this host"):
        record(cfg, "backup", {"target": "t6 again"})


def test_planted_key_files_do_not_stop_the_mirror(tmp_path, s3):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})
    kid = keys.fingerprint(keys.load_or_create(cfg.state_dir).public_key())
    attacker = keys.public_pem(Ed25519PrivateKey.generate().public_key())
    s3.put_object(Bucket=BUCKET, Key=f"evidence/tos-01/keys/{kid}.pub", Body=b"garbage")
    s3.put_object(Bucket=BUCKET, Key=f"evidence/tos-01/{keys.PUB_NAME}", Body=attacker)
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 1
    mine = (cfg.state_dir / "keys" / keys.PUB_NAME).read_bytes()
    assert body(s3, f"evidence/tos-01/{keys.PUB_NAME}") == mine
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled")
    assert got.public_key.read_bytes() == mine and got.records == 1
    assert sorted(f["key"] for f in got.foreign) == [f"evidence/tos-01/{keys.PUB_NAME}",
                                                     f"evidence/tos-01/keys/{kid}.pub"]


def test_planted_key_files_carrying_the_right_digest_on_other_bytes_do_not_pass_for_the_hosts(tmp_path, s3):
    """A key file's content is public: its sha256 metadata can be forged on garbage; the bytes decide."""
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})
    pem = (cfg.state_dir / "keys" / keys.PUB_NAME).read_bytes()
    kid = keys.fingerprint(keys.load_public(pem, "pem"))
    for key in (f"evidence/tos-01/keys/{kid}.pub", f"evidence/tos-01/{keys.PUB_NAME}"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"garbage", Metadata={"sha256": canonical.sha256(pem)})
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 1
    for key in (f"evidence/tos-01/keys/{kid}.pub", f"evidence/tos-01/{keys.PUB_NAME}"):
        assert body(s3, key) == pem, key
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled")
    assert got.public_key.read_bytes() == pem and got.records == 1


def test_a_chain_planted_before_commissioning_is_defeated_by_the_pinned_first_key(tmp_path, s3):
    attacker = Ed25519PrivateKey.generate()
    s3.put_object(Bucket=BUCKET, Key=f"evidence/tos-01/{keys.PUB_NAME}", Body=keys.public_pem(attacker.public_key()))
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1), Body=forged(1, key=attacker))
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    for i in range(2):
        record(cfg, "backup", {"target": f"t{i}"})
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 2
    pub = cfg.state_dir / "keys" / keys.PUB_NAME
    [unpinned] = mirror.pull(s3, BUCKET, tmp_path / "a")  # the oldest anchor signs the oldest record 1: the plant
    assert unpinned.foreign and unpinned.problems
    [got] = mirror.pull(s3, BUCKET, tmp_path / "b", "tos-01", [keys.read_public(pub)])
    assert got.ledger.read_bytes() == Ledger(cfg.state_dir).path.read_bytes()
    assert got.first_key.startswith("--public-key")
    assert sorted(f["key"] for f in got.foreign) == [f"evidence/tos-01/{keys.PUB_NAME}",
                                                     mirror.record_key("tos-01", 1)]
    doc = evidence_verify.verify(Ledger(cfg.state_dir).path, [pub], mirror_copy=got)
    assert not doc["ok"] and sum("foreign object" in p for p in doc["problems"]) == 2


def test_a_fake_host_prefix_is_unverifiable(host, s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("fake-01", 1), Body=forged(1, "fake-01"))
    s3.put_object(Bucket=BUCKET, Key="evidence/tos-01/notes.txt", Body=b"hello")
    fake, real = mirror.pull(s3, BUCKET, tmp_path / "pulled")
    assert fake.host == "fake-01" and fake.ledger is None and fake.records == 0
    assert any("unverifiable host" in p for p in fake.problems)
    assert [f["key"] for f in real.foreign] == ["evidence/tos-01/notes.txt"] and real.records == 5


def test_pull_follows_key_rotations(host, s3, tmp_path):
    cfg, path = host
    rotation.rotate(cfg, "yearly")
    record(cfg, "backup", {"target": "after"})
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 8), Body=forged(8))
    record(cfg, "backup", {"target": "beside a plant"})
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled", "tos-01")
    assert got.ledger.read_bytes() == path.read_bytes()
    assert [f["key"] for f in got.foreign] == [mirror.record_key("tos-01", 8)]


def test_status_shows_planted_objects_until_acknowledged(tmp_path, s3, capsys):
    from backupd.actions import status
    from backupd.render import results

    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})
    assert results.status_rows([], True, None, None, status.foreign_objects(cfg)) == 0
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1), Body=b"planted\n")
    mirror.push_pending(cfg.state_dir, DEST, s3)
    capsys.readouterr()
    assert results.status_rows([], True, None, None, status.foreign_objects(cfg)) == 1
    assert "evidence_foreign_objects" in capsys.readouterr().out
    evidence_keys.acknowledge(cfg, "writers confined")
    assert results.status_rows([], True, None, None, status.foreign_objects(cfg)) == 0


def test_a_copy_of_an_older_host_record_planted_at_the_next_seq_is_foreign_not_a_regression(host, s3, tmp_path):
    """The host's own record 1, copied to records/<next seq>: signed by the host, but not record 6. A signature
    alone would make it a head regression (the ledger blocked for good by anyone who can read and write)."""
    cfg, path = host
    replay = body(s3, mirror.record_key("tos-01", 1))
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 6), Body=replay)
    assert record(cfg, "backup", {"target": "t6"})["seq"] == 6
    assert guard.open_finding(cfg.state_dir / "evidence") is None
    assert [o["key"] for o in foreign.unrecorded(cfg.state_dir / "evidence")] == [] and \
        foreign.open_finding(cfg.state_dir / "evidence")["objects"][0]["key"] == mirror.record_key("tos-01", 6)
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled", "tos-01")
    assert got.ledger.read_bytes() == path.read_bytes()  # the genuine record 6, not the older replayed copy
    assert [(f["key"], f["sha256"]) for f in got.foreign] == [(mirror.record_key("tos-01", 6),
                                                               canonical.sha256(replay))]


def test_a_key_file_holding_another_key_of_the_host_is_foreign(tmp_path, s3):
    """keys/<kid>.pub with the host's other (older) key: not a conflict that blocks the mirror."""
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    record(cfg, "backup", {})
    mirror.push_pending(cfg.state_dir, DEST, s3)
    old = (cfg.state_dir / "keys" / keys.PUB_NAME).read_bytes()
    rotation.rotate(cfg, "yearly")
    kid = keys.fingerprint(keys.load_or_create(cfg.state_dir).public_key())
    s3.put_object(Bucket=BUCKET, Key=f"evidence/tos-01/keys/{kid}.pub", Body=old)
    assert mirror.push_pending(cfg.state_dir, DEST, s3) == 1
    assert guard.open_finding(cfg.state_dir / "evidence") is None
    assert body(s3, f"evidence/tos-01/keys/{kid}.pub") == (cfg.state_dir / "keys" / keys.PUB_NAME).read_bytes()


def test_a_plant_met_while_acknowledging_stays_open(host, s3):
    """The acknowledgement's own record meets a new plant: that one was not acknowledged and stays a finding."""
    cfg, _ = host
    ev = cfg.state_dir / "evidence"
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 6), Body=forged(6))
    record(cfg, "backup", {"target": "t6"})  # 6, and 7 reports the plant
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 8), Body=forged(8))
    doc = evidence_keys.acknowledge(cfg, "confined")  # record 8 meets the second plant
    assert [o["object"] for o in doc["foreign_objects"]] == [mirror.record_key("tos-01", 6)]
    assert [o["key"] for o in foreign.open_finding(ev)["objects"]] == [mirror.record_key("tos-01", 8)]
    record(cfg, "backup", {"target": "t9"})
    assert record_format.parse(Ledger(cfg.state_dir).path.read_bytes().split(b"\n")[-2])["kind"] == foreign.KIND


def test_the_daemon_alerts_once_on_planted_objects_and_once_when_acknowledged(host, s3, tmp_path):
    import time

    from backupd.daemon.service import Service
    from backupd.notify import Alerts

    cfg, _ = host
    sent = []
    fake = SimpleNamespace(cfg=cfg, alerts=Alerts(tmp_path / "alerts", SimpleNamespace(rate_limit_per_hour=100),
                                                  lambda *a, **k: None, send_to={"test": sent.append}))
    Service._foreign_health(fake, time.time())
    assert sent == []
    s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 6), Body=forged(6))
    record(cfg, "backup", {"target": "t6"})
    for _ in range(2):
        Service._foreign_health(fake, time.time())
    assert [(m.kind, m.state) for m in sent] == [("evidence_foreign_objects", "firing")]
    assert mirror.record_key("tos-01", 6) in sent[0].summary
    evidence_keys.acknowledge(cfg, "writers confined")
    Service._foreign_health(fake, time.time())
    assert [(m.kind, m.state) for m in sent[1:]] == [("evidence_foreign_objects", "resolved")]


def test_pull_does_not_hold_every_planted_version_of_record_1_in_memory(host, s3, tmp_path, monkeypatch):
    """Versions of record 1 are attacker input (each up to 16 MiB read): the first key is found reading them
    one at a time, never all kept together."""
    live = [0, 0]  # bodies read and not yet freed, the most at once

    class Body(bytes):
        def __del__(self):
            live[0] -= 1

    read = foreign.read

    def counted(*args, **kwargs):
        got = read(*args, **kwargs)
        if got is None:
            return None
        live[0] += 1
        live[1] = max(live)
        return Body(got)

    monkeypatch.setattr(foreign, "read", counted)
    for i in range(12):
        s3.put_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1), Body=bytes([65 + i]) * 1000)
    [got] = mirror.pull(s3, BUCKET, tmp_path / "pulled", "tos-01")
    assert got.records == 5 and len(got.foreign) == 12
    assert live[1] <= 3
