"""One bounded S3 request that tells whether a destination answers at all.

A HEAD of one object key with no retries, a connect timeout and a read timeout: an endpoint that
refuses connections fails in milliseconds, one that accepts and never answers (a black hole, a hung
proxy) fails after `timeout` seconds. Any HTTP answer, even 403 or 404, proves the storage answers.
"""

from __future__ import annotations

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError,
                                 ReadTimeoutError)


def head(endpoint: str | None, region: str, keys: dict[str, str], bucket: str, key: str, *,
         timeout: float) -> str | None:
    """None when the S3 server answered; else why not (host-level only, never a secret)."""
    cfg = BotoConfig(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"},
                     connect_timeout=min(5.0, timeout), read_timeout=timeout)
    # a session per probe: boto3's default session is not safe to share between the daemon's threads
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=cfg,
        aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=keys.get("AWS_SESSION_TOKEN"))
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return None  # an answer: reachable (denied or missing is restic's to report)
    except ReadTimeoutError:
        return f"no answer within {timeout:.0f} s"
    except (ConnectTimeoutError, EndpointConnectionError):
        return "cannot connect"
    except BotoCoreError as exc:
        return exc.__class__.__name__
    finally:
        client.close()
    return None
