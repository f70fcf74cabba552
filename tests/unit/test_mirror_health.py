"""Mirror health: every mirror call ends by one deadline (storage_timeout_seconds, the job's + a grace), the
mirror is resolved once per configuration, and the lag (local state only) reaches status, metrics and one
alert that resolves once."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backupd.config.loader import Config
from backupd.daemon import metrics
from backupd.daemon.service import Service
from backupd.evidence import bounded, checkpoint, lag, mirror, record
from backupd.evidence.ledger import Ledger, evidence_dir
from backupd.notify import Alerts
from backupd.process import execute

BUCKET = "evidence-bkt"
CREDS = "AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=not-a-real-secret\n"


# ---- the deadline arithmetic -------------------------------------------------------------------
def test_the_push_ends_by_the_storage_timeout_and_a_grace_after_the_job_deadline():
    assert bounded.end_of(30, None, 100.0) == 130.0  # no job: storage_timeout_seconds
    assert bounded.end_of(30, 600, 100.0) == 130.0  # a job with time left: still storage_timeout_seconds
    assert bounded.end_of(30, 2, 100.0) == 100.0 + 2 + bounded.GRACE_SECONDS
    assert bounded.end_of(30, -3, 100.0) == 100.0 - 3 + bounded.GRACE_SECONDS  # stopped just now: a short try
    assert bounded.end_of(30, -60, 100.0) < 100.0  # long past: nothing is tried


@pytest.mark.parametrize("left", [0, 1.9, 2, 3, 5.5, 8.9, 9, 10, 29.9, 30, 61, 3600])
def test_each_request_with_its_retries_fits_in_the_time_left(left):
    found = bounded.limits(left)
    if left < bounded.MIN_REQUEST:
        assert found is None
        return
    assert found.connect >= 1 and found.read >= 1 and found.attempts in (1, 2)
    worst = found.attempts * (found.connect + found.read) + (found.attempts - 1) * bounded.RETRY_PAUSE
    assert worst <= left
    assert found.attempts == 2 or left < 2 * bounded.RETRY_FLOOR + bounded.RETRY_PAUSE


def test_a_bounded_client_refuses_calls_once_its_deadline_passed():
    seen = []
    fake = SimpleNamespace(head_object=lambda **kw: "answered", put_object=lambda **kw: "put", meta="meta")

    def client_for(limits):
        seen.append(limits)
        return fake

    s3 = bounded.BoundedS3(client_for, time.monotonic() + 20)
    assert s3.head_object(Bucket="b", Key="k") == "answered"
    assert seen[-1].attempts == 2 and seen[-1].connect + seen[-1].read <= 10  # 20 s left: two attempts
    assert s3.meta == "meta"
    with pytest.raises(bounded.MirrorDeadline, match="records not pushed stay pending"):
        bounded.BoundedS3(client_for, time.monotonic() + 1).put_object(Bucket="b", Key="k")


# ---- a stalled mirror inside a job ---------------------------------------------------------------
class BlackHole:
    """Accepts connections and never answers (a mirror whose gateway hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        for c in self.held:
            c.close()
        self.sock.close()


def test_a_record_written_at_the_job_deadline_waits_for_a_hung_mirror_only_a_grace(tmp_path, monkeypatch):
    hole = BlackHole()
    dest = SimpleNamespace(kind="s3", endpoint=hole.url, region="us-east-1", bucket=BUCKET)
    creds = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}
    remote = mirror.Remote("worm", dest, mirror.client(dest, creds), "tos-01", creds)
    monkeypatch.setattr(mirror, "connect_if_configured", lambda c: remote)
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", storage_timeout_seconds=30)
    try:
        t0 = time.monotonic()
        with execute.deadline(0.5):
            time.sleep(0.5)  # the job's deadline passes (restic was stopped), then its record is written
            rec = record(cfg, "backup", {"target": "t", "status": "unavailable"})
        took = time.monotonic() - t0
    finally:
        hole.close()
    assert rec["seq"] == 1
    assert took < 0.5 + bounded.GRACE_SECONDS + 1, took  # the old client waited 3 x 30 s
    with Ledger(cfg.state_dir) as ledger:
        assert [r[0] for r in ledger.index.unmirrored()] == [1]  # pending: it goes with the next push


def test_a_push_past_its_deadline_leaves_records_pending_and_the_next_one_sends_them(tmp_path, s3, monkeypatch):
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    monkeypatch.setattr(mirror, "connect_if_configured", lambda c: None)
    record(cfg, "backup", {"target": "t"})
    remote = mirror.Remote("worm", SimpleNamespace(bucket=BUCKET), s3, "tos-01")
    key = mirror.keys.load_or_create(cfg.state_dir)
    with execute.deadline(-bounded.GRACE_SECONDS - 1):  # the job ended long ago
        assert mirror.push_and_checkpoint(cfg, remote, key) == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="evidence/tos-01/records/")
    assert mirror.push_and_checkpoint(cfg, remote, key) == 1
    assert s3.head_object(Bucket=BUCKET, Key=mirror.record_key("tos-01", 1))


# ---- resolved once per configuration ------------------------------------------------------------
def test_the_mirror_is_resolved_once_per_configuration(tmp_path, monkeypatch):
    (tmp_path / "p.yaml").write_text("version: 1\n")
    (tmp_path / "s3.env").write_text(CREDS)
    calls = []
    dest = SimpleNamespace(kind="s3", endpoint="http://127.0.0.1:9", region="us-east-1", bucket=BUCKET,
                           credentials_file=tmp_path / "s3.env")

    def destination(cfg, name):
        calls.append(name)
        return dest

    monkeypatch.setattr(mirror, "destination", destination)
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", policies=[str(tmp_path / "*.yaml")],
                 evidence={"mirror": "worm"})
    first = mirror.connect_if_configured(cfg)
    assert mirror.connect_if_configured(cfg) is first and calls == ["worm"]
    assert "not-a-real-secret" not in repr(first)
    (tmp_path / "p.yaml").write_text("version: 1\n# changed\n")  # a policy edit resolves it again
    assert mirror.connect_if_configured(cfg) is not first and calls == ["worm", "worm"]


# ---- the lag ------------------------------------------------------------------------------------
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _iso(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")


def test_lag_counts_pending_records_and_ages_against_twice_the_checkpoint_period():
    hour = timedelta(hours=1)
    fresh = lag.compute("h", "worm", hour, NOW, 0, None, _iso(5), _iso(0.5))
    assert fresh["unmirrored_records"] == 0 and fresh["unmirrored_oldest_age_seconds"] is None
    assert fresh["checkpoint_age_seconds"] == 1800 and not (fresh["unmirrored_stale"] or fresh["checkpoint_stale"])
    assert lag.stale_in(fresh) == 7200 - 1800
    late = lag.compute("h", "worm", hour, NOW, 3, _iso(2.5), _iso(5), _iso(2.5))
    assert late["unmirrored_records"] == 3 and late["unmirrored_oldest_age_seconds"] == 9000
    assert late["unmirrored_stale"] and late["checkpoint_stale"] and lag.stale_in(late) is None
    assert "3 record(s) not mirrored" in lag.summary(late)
    never = lag.compute("h", "worm", hour, NOW, 0, None, _iso(3), None)  # records for 3 h, no checkpoint yet
    assert never["checkpoint_stale"] and never["checkpoint_age_seconds"] is None


def test_lag_of_a_host_reads_its_ledger_index_and_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror, "connect_if_configured", lambda c: None)  # the mirror is down
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01", evidence={"mirror": "worm"})
    assert lag.of(Config(path=None, state_dir=tmp_path / "other")) is None  # no mirror: no lag
    for i in range(3):
        record(cfg, "backup", {"target": f"t{i}"})
    later = datetime.now(timezone.utc) + timedelta(hours=3)
    got = lag.of(cfg, now=later)
    assert got["host"] == "tos-01" and got["unmirrored_records"] == 3
    assert got["unmirrored_oldest_age_seconds"] >= 3 * 3600 - 5 and got["unmirrored_stale"]
    with Ledger(cfg.state_dir) as ledger:
        for seq in (1, 2):
            ledger.index.mark_mirrored(seq)
    assert lag.of(cfg, now=later)["unmirrored_records"] == 1


# ---- status, metrics, alerts --------------------------------------------------------------------
def _stale_host(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror, "connect_if_configured", lambda c: None)
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01",
                 evidence={"mirror": "worm", "checkpoint_period": 1})
    record(cfg, "backup", {"target": "t"})
    time.sleep(2.2)  # pending for more than twice the (1 s) period
    return cfg


def _fake_daemon(cfg, tmp_path, sent):
    return SimpleNamespace(cfg=cfg, _side_thread=None, _next_checkpoint=None, _mirror_lag=None, alerts=Alerts(
        tmp_path / "alerts", SimpleNamespace(rate_limit_per_hour=100), lambda *a, **k: None,
        send_to={"test": sent.append}))


def test_the_daemon_alerts_once_on_a_stale_mirror_and_once_when_it_caught_up(tmp_path, monkeypatch):
    cfg = _stale_host(tmp_path, monkeypatch)
    sent = []
    fake = _fake_daemon(cfg, tmp_path, sent)
    for _ in range(3):
        Service._mirror_health(fake, time.time())
    assert [(m.kind, m.state) for m in sent] == [("evidence_mirror_lag", "firing")]
    assert "1 record(s) not mirrored" in sent[0].summary and sent[0].detail["unmirrored_records"] == 1
    with Ledger(cfg.state_dir) as ledger:  # the mirror is back: the record went, a checkpoint was pushed
        ledger.index.mark_mirrored(1)
    checkpoint.save_local(evidence_dir(cfg.state_dir), checkpoint.build(
        "tos-01", 1, "0" * 64, mirror.keys.load_or_create(cfg.state_dir)))
    for _ in range(2):
        Service._mirror_health(fake, time.time())
    assert [(m.kind, m.state) for m in sent[1:]] == [("evidence_mirror_lag", "resolved")]


def test_metrics_export_the_lag_per_host(tmp_path, monkeypatch):
    cfg = _stale_host(tmp_path, monkeypatch)
    m = metrics.Metrics()
    m.update([], {"evidence_mirror": lag.of(cfg)})
    text = metrics.render(metrics.registry(m))
    assert 'backupd_evidence_unmirrored_records{host="tos-01"} 1.0' in text
    assert 'backupd_evidence_mirror_stale{host="tos-01"} 1.0' in text
    age = next(line for line in text.splitlines() if line.startswith("backupd_evidence_unmirrored_oldest_age_seconds{"))
    assert float(age.split()[-1]) >= 2
    assert "backupd_evidence_checkpoint_age_seconds{" not in text  # no checkpoint yet: no sample


def test_status_shows_the_lag_and_a_stale_mirror_needs_attention(tmp_path, monkeypatch, capsys):
    import json

    from backupd.actions import status as status_action
    from backupd.render import results

    cfg = _stale_host(tmp_path, monkeypatch)
    found = status_action.mirror_lag(cfg)
    assert results.status_rows([], True, None, found) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["evidence_mirror"]["unmirrored_records"] == 1 and doc["evidence_mirror"]["unmirrored_stale"]
    assert results.status_rows([], True, None, None) == 0
