"""A boto3 S3 client for one destination and identity, with transport errors mapped to exit code 3."""

from __future__ import annotations

import contextlib

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from backupd.engine.exitcodes import StorageUnavailable

#: error codes that mean "this identity is not allowed" (by IAM or by a lock), not "the storage is broken"
DENIED = ("AccessDenied", "AccessDeniedByLock", "Forbidden", "403", "InvalidBucketState", "ObjectLocked")
#: error codes that mean "this server does not do that": never proof of a refusal
UNSUPPORTED = ("NotImplemented", "MethodNotAllowed", "501", "405")


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


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _status(exc: ClientError):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def denied(exc: ClientError) -> bool:
    """True when the server refused the request for lack of permission or because of a lock."""
    return error_code(exc) in DENIED or _status(exc) == 403


def unsupported(exc: ClientError) -> bool:
    """True when the server does not implement the call (NotImplemented, MethodNotAllowed)."""
    return error_code(exc) in UNSUPPORTED or _status(exc) in (405, 501)


@contextlib.contextmanager
def reachable(what: str):
    """Turn connection failures inside the block into StorageUnavailable (exit 3)."""
    try:
        yield
    except (EndpointConnectionError, BotoCoreError) as exc:
        if isinstance(exc, ClientError):  # pragma: no cover - ClientError is not a BotoCoreError
            raise
        raise StorageUnavailable(f"{what}: storage unreachable ({exc.__class__.__name__})") from None
