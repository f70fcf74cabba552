"""A HEAD the store refuses (403: on AWS, any missing key without s3:ListBucket) is "cannot check", said loudly:
never taken for a missing object, never a bare exception class name in the log."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from backupd.errors import DependencyError
from backupd.evidence import mirror


class RefusingS3:
    """head_object answers 403 as AWS does for a missing key to an identity without s3:ListBucket."""

    def __init__(self):
        self.puts = []

    def head_object(self, **_):
        raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")

    def put_object(self, **kw):
        self.puts.append(kw["Key"])


def test_a_refused_head_is_cannot_check_naming_list_bucket_and_nothing_is_put():
    s3 = RefusingS3()
    with pytest.raises(DependencyError, match="s3:ListBucket") as caught:
        mirror._put_once(s3, "b", "evidence/h/records/000000000001.json", b"x", "d", datetime.now(timezone.utc))
    assert "cannot check s3://b/evidence/h/records/000000000001.json" in str(caught.value)
    assert s3.puts == []  # no blind PUT over an object it could not see
    with pytest.raises(DependencyError, match="403"):
        mirror._head(s3, "b", "evidence/h/evidence-ed25519.pub")


def test_the_probe_before_an_append_says_why_it_cannot_check(tmp_path, caplog):
    remote = mirror.Remote("worm", SimpleNamespace(bucket="b"), RefusingS3(), "h")
    with caplog.at_level(logging.WARNING):
        assert mirror.probe(remote, tmp_path, 1) is False
    assert "cannot check s3://b/evidence/h/records/000000000001.json (403)" in caplog.text
    assert "s3:ListBucket" in caplog.text
