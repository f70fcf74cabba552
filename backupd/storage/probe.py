"""One bounded request that tells whether an S3 destination answers at all.

An unsigned HTTP HEAD of one object key with a timeout: an endpoint that refuses connections fails in
milliseconds, one that accepts and never answers (a black hole, a hung proxy) fails after `timeout`
seconds. Any HTTP answer, even 403 or 404, proves the storage answers; whether the keys are right is
restic's to report. No credentials are sent and no S3 client is loaded (the daemon stays small).
A cancel (SIGTERM) ends the wait at once (execute.interruptible), not when the timeout runs out.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from urllib.parse import quote

from backupd.process import execute

USER_AGENT = "backupd-preflight"  # tells the probe apart from restic in proxy and server logs


def head(endpoint: str | None, region: str, bucket: str, key: str = "", *, timeout: float,
         cancel: execute.Cancel | None = None) -> str | None:
    """None when the S3 server answered; else why not (host-level only; no credentials are involved).
    execute.Interrupted when `cancel` or the thread's cancel (execute.cancelled_by) is set meanwhile."""
    return execute.interruptible(lambda: _head(endpoint, region, bucket, key, timeout), "storage pre-flight",
                                 cancel)


def _head(endpoint: str | None, region: str, bucket: str, key: str, timeout: float) -> str | None:
    base = (endpoint or f"https://s3.{region}.amazonaws.com").rstrip("/")
    request = urllib.request.Request(f"{base}/{quote(bucket)}/{quote(key)}", method="HEAD",
                                     headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # an answer: reachable (denied or missing is restic's to report)
    except urllib.error.URLError as exc:
        return _why(exc.reason, timeout)
    except (socket.timeout, TimeoutError) as exc:
        return _why(exc, timeout)
    except (OSError, ValueError) as exc:
        return exc.__class__.__name__


def _why(reason: object, timeout: float) -> str:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:.0f} s"
    if isinstance(reason, ConnectionRefusedError):
        return "cannot connect"
    if isinstance(reason, socket.gaierror):
        return "cannot resolve the endpoint's host name"
    return f"cannot connect ({reason.__class__.__name__})"
