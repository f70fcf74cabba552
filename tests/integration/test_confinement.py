"""One host, one prefix, on a real SeaweedFS: the shipped per-host writer template cannot write another host's
evidence (the forged-record and planted-key cases), and `backupd audit storage` proves it with a probe write
under another host's prefix: refused is ok, accepted is a finding (exit 1) naming the stray object."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from demo.seaweed import SeaweedFS, host_writer  # noqa: E402

from backupd.storage import confinement  # noqa: E402
from tests.integration.test_storage import Env, _dest  # noqa: E402

pytestmark = pytest.mark.integration
BUCKET = "worm-conf"
HOST = "it-host"  # the host of test_storage.Env's config
#: The shipped per-host writer, and one granted the whole bucket (`Write:<bucket>/*`, the old template).
IDENTITIES = {"host-writer": host_writer(BUCKET, HOST, ["confined"]),
              "open-writer": [f"Read:{BUCKET}", f"List:{BUCKET}", f"Write:{BUCKET}/*"]}


@pytest.fixture(scope="module")
def sw(tmp_path_factory):
    base = tmp_path_factory.mktemp("sw")
    with SeaweedFS(base / "weed", secrets_dir=base / "secrets", buckets=[BUCKET], extra_identities=IDENTITIES) as s:
        s.create_locked_bucket(BUCKET, days=21)
        yield s


def _refused(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "AccessDenied"
    return False


def test_the_host_writer_template_writes_its_own_prefixes_only(sw):
    w = sw.client("host-writer")
    lock = {"ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": datetime.now(timezone.utc) + timedelta(days=400)}
    w.put_object(Bucket=BUCKET, Key="confined/data/00/ab", Body=b"pack")
    w.put_object(Bucket=BUCKET, Key=f"evidence/{HOST}/records/000000000001.json", Body=b"{}", **lock)
    w.put_object(Bucket=BUCKET, Key=f".backupd-incident/{HOST}.json", Body=b"{}", **lock)
    w.put_object(Bucket=BUCKET, Key="confined/.backupd-escrow/worm.json", Body=b"{}", **lock)
    assert w.list_objects_v2(Bucket=BUCKET, Prefix="confined/")["KeyCount"] == 2
    for key in ("evidence/verifier-01/records/000000000002.json",  # the forged next record of the verifier
                "evidence/verifier-01/evidence-ed25519.pub",  # a key planted before it is commissioned
                "evidence/tos-99/records/000000000001.json",  # an invented host
                f"evidence/{HOST}x/records/000000000001.json", ".backupd-incident/verifier-01.json",
                "confined2/data/x", "restic/data/x"):
        assert _refused(lambda: w.put_object(Bucket=BUCKET, Key=key, Body=b"x")), key
    assert _refused(lambda: w.put_object(Bucket=BUCKET, Key="confined/data/00/cd", Body=b"x", **lock))
    assert _refused(lambda: w.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}))


def test_confinement_probe_refused_for_the_host_writer_and_reported_for_an_open_one(sw):
    ok = confinement.confinement_probe(sw.client("host-writer"), BUCKET, HOST)
    assert ok.ok and "AccessDenied" in ok.detail
    bad = confinement.confinement_probe(sw.client("open-writer"), BUCKET, HOST)
    assert not bad.ok and bad.severity == "error" and "NOT CONFINED" in bad.detail
    key = bad.detail.split(f"s3://{BUCKET}/")[1].split(" ")[0]
    assert key.startswith(f"evidence/{confinement.PROBE_HOST}/{HOST}-")
    assert sw.client("admin").head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0  # the stray, reported


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tos")
    for sub in ("programs", "exports", "logs"):
        (root / sub).mkdir()
        (root / sub / "f.bin").write_bytes(os.urandom(2000))
    return root


def test_audit_storage_fails_an_unconfined_writer_and_passes_a_confined_one(sw, data, tmp_path):
    for identity, code in (("open-writer", 1), ("host-writer", 0)):
        dest = _dest(sw, BUCKET, "confined").replace("s3-writer.env", f"s3-{identity}.env")
        (tmp_path / identity).mkdir()
        env = Env(sw, data, tmp_path / identity, {"worm": dest})
        assert env.cli("keys", "init").returncode == 0
        done = env.cli("audit", "storage", "--json")
        entry = next(r for r in json.loads(done.stdout)["destinations"] if r["destination"] == "worm")
        check = next(c for c in entry["checks"] if c["name"] == "writer_confinement")
        assert check["ok"] == (code == 0), check
        if code:
            assert done.returncode == 1 and f"evidence/{confinement.PROBE_HOST}/{HOST}-" in check["detail"]
