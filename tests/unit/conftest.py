"""Fixtures shared by the unit tests."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws


@pytest.fixture
def s3(request):
    """moto S3 with one bucket, the test module's BUCKET: Object Lock enabled, no default retention rule,
    so only an object's own retain-until locks it. A module needing another layout defines its own s3."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=request.module.BUCKET, ObjectLockEnabledForBucket=True)
        yield client
