"""A boto3 S3 client for one destination and identity, with transport errors mapped to exit code 3."""

from __future__ import annotations

import contextlib

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from backupd.engine.exitcodes import StorageUnavailable

#: error codes that mean "this identity is not allowed", not "the storage is broken"
DENIED = ("AccessDenied", "AccessDeniedByLock", "Forbidden", "403", "InvalidBucketState",
          "ObjectLocked", "MethodNotAllowed", "NotImplemented")


def make(endpoint: str | None, region: str, keys: dict[str, str], *, timeout: float = 30):
    """Path-style S3 client; keys are the AWS_* variables of a credentials file."""
    cfg = BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                     connect_timeout=5, read_timeout=timeout)
    return boto3.client("s3", endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"),
                        aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"),
                        aws_session_token=keys.get("AWS_SESSION_TOKEN"), config=cfg)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def denied(exc: ClientError) -> bool:
    """True when the server refused the request for lack of permission or because of a lock."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in DENIED or status == 403


@contextlib.contextmanager
def reachable(what: str):
    """Turn connection failures inside the block into StorageUnavailable (exit 3)."""
    try:
        yield
    except (EndpointConnectionError, BotoCoreError) as exc:
        if isinstance(exc, ClientError):  # pragma: no cover - ClientError is not a BotoCoreError
            raise
        raise StorageUnavailable(f"{what}: storage unreachable ({exc.__class__.__name__})") from None
