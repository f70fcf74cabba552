"""The incident freeze fails closed: markers in the bucket (moto), unreadable local state, unreachable storage.
The cross-role freeze on a real SeaweedFS is in tests/integration/test_incident.py."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from backupd.actions import incident
from backupd.config.loader import Config
from backupd.errors import DependencyError, Finding
from backupd.policy.schema import S3Destination
from backupd.storage import freeze


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="worm", ObjectLockEnabledForBucket=True)
        yield client


UNTIL = (datetime.now(timezone.utc) + timedelta(days=400)).replace(microsecond=0)


def _marker(state: str, ident: str = "INC-1") -> dict:
    return {"id": ident, "state": state, "host": "tos-01", "started": "2026-07-01T00:00:00+00:00"}


def test_open_then_closed_marker_versions(s3):
    written = freeze.write(s3, "worm", "tos-01", _marker("open"), UNTIL)
    assert written["key"] == ".backupd-incident/tos-01.json" and written["version_id"]
    assert written["retain_until"] == UNTIL.isoformat()  # its own lock, not the bucket's (here: no) default
    assert [m["id"] for m in freeze.open_incidents(s3, "worm")] == ["INC-1"]
    freeze.write(s3, "worm", "tos-01", _marker("closed"), UNTIL)
    assert freeze.open_incidents(s3, "worm") == []
    versions = s3.list_object_versions(Bucket="worm", Prefix=freeze.PREFIX)["Versions"]
    assert len(versions) == 2  # closing added a version; nothing was deleted


def test_a_hidden_or_malformed_marker_means_frozen(s3):
    freeze.write(s3, "worm", "tos-01", _marker("open"), UNTIL)
    s3.delete_object(Bucket="worm", Key=freeze.marker_key("tos-01"))  # an attacker hides the incident
    with pytest.raises(freeze.Unreadable, match="delete marker"):
        freeze.open_incidents(s3, "worm")
    freeze.write(s3, "worm", "tos-01", _marker("closed"), UNTIL)  # `incident end` writes a closed version on top
    assert freeze.open_incidents(s3, "worm") == []
    s3.put_object(Bucket="worm", Key=freeze.marker_key("tos-02"), Body=b"{not json")
    with pytest.raises(freeze.Unreadable, match="malformed"):
        freeze.open_incidents(s3, "worm")


def _cfg(tmp_path) -> Config:
    return Config(path=None, state_dir=tmp_path / "state", host="tos-01")


def test_eacces_on_the_local_incident_file_means_frozen(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    state = cfg.state_dir / "incident" / "current.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(_marker("open")))
    real = Path.read_text

    def eacces(self, *args, **kwargs):
        if self == state:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", eacces)
    for operation in ("forget", "prune"):
        with pytest.raises(Finding, match=f"{operation} refused: .*Permission denied.*frozen"):
            incident.guard(cfg, operation)


def test_malformed_local_state_means_frozen_and_no_state_means_open_for_retention(tmp_path):
    cfg = _cfg(tmp_path)
    incident.guard(cfg, "forget")  # no incident ever: allowed
    state = cfg.state_dir / "incident" / "current.json"
    state.parent.mkdir(parents=True)
    state.write_text("[]")
    with pytest.raises(Finding, match="malformed"):
        incident.guard(cfg, "forget")


def test_unreachable_storage_means_frozen_with_exit_3(tmp_path):
    keys = tmp_path / "s3.env"
    keys.write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    dest = S3Destination.model_validate({"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "worm",
                                         "object_lock": True, "credentials_file": str(keys),
                                         "password_file": str(keys)})
    policy_set = SimpleNamespace(destinations={"worm": dest})
    with pytest.raises(DependencyError, match="prune refused: .*unreachable.*frozen") as err:
        incident.guard(_cfg(tmp_path), "prune", policy_set)
    assert err.value.exit_code == 3
