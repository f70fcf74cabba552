"""The signed, hash-chained ledger: append, keys, scrubbing, torn tails, concurrency, index."""

from __future__ import annotations

import json
import multiprocessing
import stat

import pytest

from backupd.config.loader import Config
from backupd.evidence import canonical, keys, record
from backupd.evidence.ledger import Ledger
from backupd.evidence.verify import verify_lines


@pytest.fixture
def cfg(tmp_path):
    return Config(path=None, state_dir=tmp_path / "state", host="tos-01")


def public(cfg):
    return keys.read_public(cfg.state_dir / "keys" / keys.PUB_NAME)


def test_records_are_canonical_chained_and_signed(cfg):
    first = record(cfg, "backup", {"target": "tos-db", "duration": 1.25, "files": 3})
    second = record(cfg, "forget", {"target": "tos-db"})
    lines = Ledger(cfg.state_dir).lines()
    assert [json.loads(l)["seq"] for l in lines] == [1, 2]
    assert first["prev"] == "0" * 64
    assert second["prev"] == canonical.sha256(lines[0])
    assert first["data"]["duration"] == "1.25" and first["time"].endswith("Z")
    assert verify_lines(lines, [public(cfg)]).ok


def test_key_is_created_private_and_exported(cfg):
    record(cfg, "backup", {})
    kdir = cfg.state_dir / "keys"
    assert stat.S_IMODE(kdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((kdir / keys.KEY_NAME).stat().st_mode) == 0o600
    assert (kdir / keys.PUB_NAME).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert b"PRIVATE" not in Ledger(cfg.state_dir).path.read_bytes()


def test_secrets_are_scrubbed(cfg):
    rec = record(cfg, "backup", {
        "password": "hunter2hunter2", "nested": {"AWS_SECRET_ACCESS_KEY": "abc", "api_key": "k"},
        "password_file": "/etc/backupd/secrets/restic-password", "items": [{"token": "t"}],
        "note": "env had AWS_SECRET_ACCESS_KEY=abcd1234", "pem": "-----BEGIN PRIVATE KEY-----\nMC4..."})
    text = Ledger(cfg.state_dir).path.read_text()
    for secret in ("hunter2hunter2", "abcd1234", "MC4", '"abc"', '"k"', '"t"'):
        assert secret not in text
    assert rec["data"]["password_file"] == "/etc/backupd/secrets/restic-password"
    assert rec["data"]["nested"]["AWS_SECRET_ACCESS_KEY"] == canonical.REDACTED


def test_torn_tail_is_moved_aside_and_recorded(cfg):
    record(cfg, "backup", {"target": "a"})
    ledger = Ledger(cfg.state_dir)
    with open(ledger.path, "ab") as handle:
        handle.write(b'{"data":{"tar')  # a crash in the middle of a write
    rec = record(cfg, "backup", {"target": "b"})
    lines = ledger.lines()
    kinds = [json.loads(l)["kind"] for l in lines]
    assert kinds == ["backup", "ledger-repair", "backup"] and rec["seq"] == 3
    assert json.loads(lines[1])["data"]["torn_bytes"] == 13
    assert list(ledger.dir.glob("ledger.torn-*"))[0].read_bytes() == b'{"data":{"tar'
    assert verify_lines(lines, [public(cfg)]).ok


def _append_many(state_dir, n):
    cfg = Config(path=None, state_dir=state_dir, host="tos-01")
    for i in range(n):
        record(cfg, "backup", {"target": f"t{i}"})


def test_concurrent_processes_never_break_the_chain(cfg):
    record(cfg, "backup", {})  # create the key first
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(cfg.state_dir, 15)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = Ledger(cfg.state_dir).lines()
    assert len(lines) == 61
    assert verify_lines(lines, [public(cfg)]).ok


def test_index_queries_by_kind_target_and_time_and_rebuilds(cfg):
    for kind, target in (("backup", "a"), ("drill", "a"), ("backup", "b")):
        record(cfg, kind, {"target": target})
    ledger = Ledger(cfg.state_dir)
    assert [r["seq"] for r in ledger.query(kind="backup")] == [1, 3]
    assert [r["seq"] for r in ledger.query(target="a")] == [1, 2]
    t2 = ledger.query(kind="drill")[0]["time"]
    assert [r["seq"] for r in ledger.query(since=t2)] == [2, 3]
    (ledger.dir / "index.sqlite").unlink()
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (ledger.dir / extra).unlink(missing_ok=True)
    assert [r["seq"] for r in Ledger(cfg.state_dir).query(kind="backup")] == [1, 3]


def test_floats_and_times_are_unambiguous():
    from datetime import datetime, timezone

    doc = canonical.normalise({"a": 2.0, "b": 0.1, "c": datetime(2026, 1, 2, tzinfo=timezone.utc), "d": {3, 1}})
    assert doc == {"a": 2, "b": "0.1", "c": "2026-01-02T00:00:00.000000Z", "d": [1, 3]}
    assert canonical.dumps(doc) == b'{"a":2,"b":"0.1","c":"2026-01-02T00:00:00.000000Z","d":[1,3]}'
