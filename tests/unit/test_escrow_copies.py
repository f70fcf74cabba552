"""Escrow copies in the bucket: every version is a candidate, locked ones first, oldest first."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backupd.storage import escrow_copies

BUCKET = "escrow-b"
KEY = "repo/.backupd-escrow/worm.json"


def test_locked_versions_come_first_oldest_first_and_delete_markers_are_noted(s3):
    now = datetime.now(timezone.utc)
    until = now + timedelta(days=30)
    first = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b'{"n": 1}', ObjectLockMode="COMPLIANCE",
                          ObjectLockRetainUntilDate=until)["VersionId"]
    loose = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b"garbage")["VersionId"]
    second = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b'{"n": 2}', ObjectLockMode="COMPLIANCE",
                           ObjectLockRetainUntilDate=until)["VersionId"]
    s3.put_object(Bucket="escrow-b", Key=KEY + ".other", Body=b"{}")
    s3.delete_object(Bucket="escrow-b", Key=KEY)
    found, notes = escrow_copies.copies(s3, "escrow-b", KEY, now)
    assert [c.version_id for c in found] == [first, second, loose]
    assert len(notes) == 1 and notes[0].startswith("delete marker")
    assert escrow_copies.read(s3, "escrow-b", KEY, found[1]) == {"n": 2}
    with pytest.raises(ValueError, match="not JSON"):
        escrow_copies.read(s3, "escrow-b", KEY, found[2])


def test_an_oversized_or_non_object_version_is_not_an_envelope(s3):
    big = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b"[" + b" " * escrow_copies.MAX_BYTES + b"]")["VersionId"]
    arr = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b"[1]")["VersionId"]
    found, _ = escrow_copies.copies(s3, "escrow-b", KEY, datetime.now(timezone.utc))
    by_id = {c.version_id: c for c in found}
    with pytest.raises(ValueError, match="larger"):
        escrow_copies.read(s3, "escrow-b", KEY, by_id[big])
    with pytest.raises(ValueError, match="not a JSON object"):
        escrow_copies.read(s3, "escrow-b", KEY, by_id[arr])


class RefusesHead:
    """The bucket as seen when one version cannot be HEADed (e.g. a writer's SSE-C version: 400 without its key)."""

    def __init__(self, s3, version_id: str):
        self.s3, self.version_id = s3, version_id

    def __getattr__(self, name):
        return getattr(self.s3, name)

    def head_object(self, **kw):
        from botocore.exceptions import ClientError
        if kw.get("VersionId") == self.version_id:
            raise ClientError({"Error": {"Code": "400", "Message": "Bad Request"}}, "HeadObject")
        return self.s3.head_object(**kw)


def test_a_version_that_cannot_be_headed_is_tried_last_and_never_blocks_the_others(s3):
    now = datetime.now(timezone.utc)
    good = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b'{"n": 1}', ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=now + timedelta(days=30))["VersionId"]
    odd = s3.put_object(Bucket="escrow-b", Key=KEY, Body=b"sse-c")["VersionId"]
    found, _ = escrow_copies.copies(RefusesHead(s3, odd), "escrow-b", KEY, now)
    assert [(c.version_id, c.locked_until is not None) for c in found] == [(good, True), (odd, False)]
