"""The evidence mirror keeps the job's deadline on a distributed SeaweedFS (demo/cluster.py) that lost two of
its three volume servers: writes stall there (replication 001 needs two), restic is stopped at
job_timeout_seconds, and the backup's evidence record gets only a short grace before it stays pending. The
record is mirrored by the next run once the servers are back; `status --json` shows the lag meanwhile."""

from __future__ import annotations

import os
import time

import pytest

from demo.stack import LocalStack
from tests.integration.test_estate_cluster import HOSTS, Host

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
JOB_TIMEOUT = 15
#: The contract: a job never outlives job_timeout_seconds by more than this (mirror grace + process start).
OVERRUN = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("cluster"), containers=50, tree_scale=0.02, lock_days=42,
                    cluster=True) as s:
        yield s


def _wait_writable(stack: LocalStack, bound: float = 120) -> None:
    """Until the cluster takes a write again (the master saw the volume servers return)."""
    s3 = stack.seaweed.client("admin", read_timeout=5)
    end = time.monotonic() + bound
    while time.monotonic() < end:
        try:
            s3.put_object(Bucket=stack.bucket, Key="probe/writable", Body=b"x")
            return
        except Exception:  # noqa: BLE001 - any failure: not yet
            time.sleep(1)
    raise AssertionError("the cluster took no write after its volume servers returned")


def test_a_stalled_mirror_keeps_the_job_deadline_and_the_record_goes_next_time(cluster, tmp_path):
    host = Host(cluster, tmp_path, HOSTS[0])
    host.config.write_text(host.config.read_text() + f"job_timeout_seconds: {JOB_TIMEOUT}\n"
                                                      "storage_timeout_seconds: 30\n")
    assert host.cli("backup", "--target", "files", "--json").code == 0

    (host.tree / "new.bin").write_bytes(os.urandom(3_000_000))  # restic has something to write
    for i in (1, 2):
        cluster.seaweed.kill_volume_server(i)
    t0 = time.monotonic()
    run = host.cli("backup", "--target", "files", "--json")
    took = time.monotonic() - t0
    assert run.code == 3, run.stdout + run.stderr
    assert took < JOB_TIMEOUT + OVERRUN, f"the backup took {took:.0f} s with job_timeout_seconds {JOB_TIMEOUT}"
    lag = host.cli("status", "--json").doc["evidence_mirror"]
    assert lag["host"] == HOSTS[0] and lag["mirror"] == "worm"
    assert lag["unmirrored_records"] >= 1 and lag["unmirrored_oldest_age_seconds"] is not None, lag
    assert not lag["unmirrored_stale"]  # pending for seconds, not for two checkpoint periods

    for i in (1, 2):
        cluster.seaweed.restart_volume_server(i)
    _wait_writable(cluster)
    assert host.cli("backup", "--target", "files", "--json").code == 0
    after = host.cli("status", "--json").doc["evidence_mirror"]
    assert after["unmirrored_records"] == 0 and after["checkpoint_time"], after
    admin = cluster.seaweed.client("admin")
    seqs = [int(o["Key"].rsplit("/", 1)[1].split(".")[0]) for o in admin.list_objects_v2(
        Bucket=cluster.bucket, Prefix=f"evidence/{HOSTS[0]}/records/")["Contents"]]
    ledger = (host.dir / "state" / "evidence" / "ledger.jsonl").read_text().splitlines()
    assert sorted(seqs) == list(range(1, len(ledger) + 1))  # the pending record went with the later run
